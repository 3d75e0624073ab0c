"""Data: ARFF reading (HMC, MULAN, MEKA), preprocessing, cached memmaps, the dataset
registry, samplers, label-imbalance statistics, stratified splits, and long-tailed
subsets with head/middle/tail class groups.

Numpy only: nothing here imports jax.
"""

from hmljax.data._arff import ArffData, ArffError, Attribute, read_arff, read_arff_header, read_mulan_xml
from hmljax.data._cache import atomic_write_bytes, atomic_write_text, cache_dir, cached_arrays, hash_files
from hmljax.data._image_dataset import (
    IMAGE_SIZE,
    TFDS_PREFIX,
    image_spec,
    is_image_dataset,
    load_image_dataset,
    parse_image_dataset,
)
from hmljax.data._images import (
    IMAGE_DATASETS,
    RESIZE_MODES,
    ImageSet,
    augment,
    cache_features,
    eval_transform,
    load_tfds_images,
    tfds_data_dir,
    tfds_prepared_folder,
)
from hmljax.data._imbalance import (
    imbalance_summary,
    irlbl,
    label_cardinality,
    label_density,
    mean_ir,
    minority_labels,
)
from hmljax.data._longtail import (
    class_groups,
    cooccurrence_order,
    group_summary,
    longtail_subset,
    pareto_profile,
)
from hmljax.data._preprocess import PREPROCESSING_MODES, apply_preprocessing, preprocess
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
from hmljax.data._resampling import HROS_RULES, LPROS_ROUNDINGS, Resampled, hierarchy_paths, hros_pd, lpros
from hmljax.data._samplers import ClassAwareSampler, EpochBatches, EpochSampler, Sampler
from hmljax.data._stratify import iterative_stratification, kfold_splits
from hmljax.data._synthetic import make_synthetic
from hmljax.data._views import dataset_view

__all__ = [
    "tfds_data_dir",
    "tfds_prepared_folder",
    "IMAGE_DATASETS",
    "RESIZE_MODES",
    "ImageSet",
    "augment",
    "cache_features",
    "eval_transform",
    "load_tfds_images",
    "ArffData",
    "ArffError",
    "Attribute",
    "DataError",
    "Dataset",
    "DatasetSpec",
    "EpochBatches",
    "EpochSampler",
    "ClassAwareSampler",
    "PREPROCESSING_MODES",
    "LPROS_ROUNDINGS",
    "HROS_RULES",
    "Resampled",
    "hros_pd",
    "hierarchy_paths",
    "lpros",
    "REGISTRY",
    "Sampler",
    "atomic_write_bytes",
    "atomic_write_text",
    "cache_dir",
    "cached_arrays",
    "class_groups",
    "cooccurrence_order",
    "get_spec",
    "group_summary",
    "hash_files",
    "imbalance_summary",
    "irlbl",
    "iterative_stratification",
    "kfold_splits",
    "label_cardinality",
    "label_density",
    "list_datasets",
    "load_dataset",
    "longtail_subset",
    "make_synthetic",
    "dataset_view",
    "mean_ir",
    "minority_labels",
    "pareto_profile",
    "preprocess",
    "apply_preprocessing",
    "read_arff",
    "read_arff_header",
    "read_mulan_xml",
    "resolve_data_dir",
    "IMAGE_SIZE",
    "TFDS_PREFIX",
    "image_spec",
    "is_image_dataset",
    "load_image_dataset",
    "parse_image_dataset",
]
