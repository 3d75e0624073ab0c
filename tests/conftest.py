import os
import zlib

import jax
import numpy as np
import pytest

jax.config.update("jax_numpy_rank_promotion", "raise")

DATA_DIR = os.environ.get("HMLJAX_DATA")
HAVE_DATA = bool(DATA_DIR) and os.path.isdir(os.path.join(DATA_DIR or "", "hmc"))
needs_data = pytest.mark.skipif(
    not HAVE_DATA, reason="real datasets absent: set HMLJAX_DATA to a folder holding hmc/ and mulan/ (../shared/data)"
)

FUN = ["cellcycle_FUN", "derisi_FUN", "eisen_FUN", "gasch2_FUN", "seq_FUN", "spo_FUN"]
GO = ["cellcycle_GO", "derisi_GO", "eisen_GO", "gasch2_GO", "seq_GO", "spo_GO"]


def pytest_xdist_auto_num_workers(config):
    """``-n auto``: one worker per core, at most four.

    Each worker holds its own JAX runtime and compile caches (up to ~2 GB):
    more than four buys little on the suite's small programs.
    """
    return max(1, min(os.cpu_count() or 1, 4))


@pytest.fixture(autouse=True, scope="session")
def _cache_dir(tmp_path_factory):
    # Tests share one throwaway cache: never touch the user's ~/.cache/hmljax.
    os.environ["HMLJAX_CACHE"] = str(tmp_path_factory.mktemp("hmljax-cache"))
    yield


def _test_seed(request) -> int:
    # crc32, not hash(): str hashes are salted per process (PYTHONHASHSEED), which made every draw, and so
    # every failure, unrepeatable.
    return zlib.crc32(request.node.nodeid.encode()) % (2**31)


@pytest.fixture
def key(request):
    seed = _test_seed(request)
    print(f"key seed: {seed}")
    return jax.random.key(seed)


@pytest.fixture
def rng(request):
    return np.random.default_rng(_test_seed(request))


def load(name):
    from hmljax.data import load_dataset

    return load_dataset(name, data_dir=DATA_DIR)


def write_mulan(folder, stem, *, n_train=96, n_test=48, num_features=6, num_labels=4, seed=0):
    """A MULAN dataset (ARFF + XML) with labels that depend on the features."""
    rng = np.random.default_rng(seed)
    n = n_train + n_test
    X = rng.normal(size=(n, num_features))
    Y = (X @ rng.normal(size=(num_features, num_labels)) + 0.5 * rng.normal(size=(n, num_labels)) > 0.3).astype(int)
    assert Y[:n_train].any(0).all() and Y[n_train:].any(0).all() and not Y[n_train:].all(0).any()
    labels = [f"L{j}" for j in range(num_labels)]
    head = (f"@relation {stem}\n" + "".join(f"@attribute f{j} numeric\n" for j in range(num_features))
            + "".join(f"@attribute {name} {{0,1}}\n" for name in labels) + "@data\n")
    os.makedirs(folder, exist_ok=True)
    for split, rows in (("train", slice(0, n_train)), ("test", slice(n_train, n))):
        body = "".join(",".join([*(f"{v:.5f}" for v in x), *(str(v) for v in y)]) + "\n"
                       for x, y in zip(X[rows], Y[rows], strict=True))
        with open(os.path.join(folder, f"{stem}-{split}.arff"), "w") as fh:
            fh.write(head + body)
    xml = "".join(f'<label name="{name}"></label>\n' for name in labels)
    with open(os.path.join(folder, f"{stem}.xml"), "w") as fh:
        fh.write(f'<?xml version="1.0" encoding="utf-8"?>\n<labels xmlns="http://mulan.sourceforge.net/labels">\n'
                 f"{xml}</labels>\n")
    return folder
