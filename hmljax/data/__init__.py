"""Data: ARFF reading, preprocessing, cached memmaps, the dataset registry and samplers.

Numpy only: nothing here imports jax.
"""

from hmljax.data._arff import ArffData, ArffError, Attribute, read_arff
from hmljax.data._cache import atomic_write_text, cache_dir, cached_arrays, hash_files
from hmljax.data._preprocess import PREPROCESSING_MODES, preprocess
from hmljax.data._registry import (
    REGISTRY,
    DataError,
    Dataset,
    DatasetSpec,
    get_spec,
    list_datasets,
    load_dataset,
    resolve_data_dir,
)
from hmljax.data._resampling import LPROS_ROUNDINGS, Resampled, hros_pd, lpros
from hmljax.data._samplers import EpochBatches, EpochSampler, Sampler
from hmljax.data._synthetic import make_synthetic

__all__ = [
    "ArffData",
    "ArffError",
    "Attribute",
    "DataError",
    "Dataset",
    "DatasetSpec",
    "EpochBatches",
    "EpochSampler",
    "PREPROCESSING_MODES",
    "LPROS_ROUNDINGS",
    "Resampled",
    "hros_pd",
    "lpros",
    "REGISTRY",
    "Sampler",
    "atomic_write_text",
    "cache_dir",
    "cached_arrays",
    "get_spec",
    "hash_files",
    "list_datasets",
    "load_dataset",
    "make_synthetic",
    "preprocess",
    "read_arff",
    "resolve_data_dir",
]
