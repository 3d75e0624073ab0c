import os

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


@pytest.fixture(autouse=True, scope="session")
def _cache_dir(tmp_path_factory):
    # Tests share one throwaway cache: never touch the user's ~/.cache/hmljax.
    os.environ["HMLJAX_CACHE"] = str(tmp_path_factory.mktemp("hmljax-cache"))
    yield


@pytest.fixture
def key(request):
    seed = abs(hash(request.node.nodeid)) % (2**31)
    print(f"key seed: {seed}")
    return jax.random.key(seed)


@pytest.fixture
def rng(request):
    return np.random.default_rng(abs(hash(request.node.nodeid)) % (2**31))


def load(name):
    from hmljax.data import load_dataset

    return load_dataset(name, data_dir=DATA_DIR)
