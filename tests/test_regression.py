"""Bitwise regression: the parameters a config and seed train to on the synthetic data never change by accident.

``tests/regression_hashes.json`` holds, per jax/jaxlib version and machine, a SHA-256 of the parameters
each config below ends with (and its test AUPRC). They were first recorded before the engine was reshaped
to take any method (issue 17); a refactor that changes one bit of any run fails here. A change that
*means* to change results regenerates the file (``python tests/test_regression.py``) and says why in its
commit. On another jax version or machine the recorded hashes do not apply (XLA's CPU code differs), and
the test records nothing and skips with that reason.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import sys

import jax
import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
HASHES = os.path.join(HERE, "regression_hashes.json")

# Each config trains 3 epochs on the synthetic tree (hidden 256 unless said otherwise).
CASES = {
    "chmcnn": [],
    "weights_code": ["weights=code", "w0=0.25"],
    "gmu_ensemble_E10": ["weights=code", "w0=0.25", "ensemble=10", "focal=gmu", "reduction=sum", "hidden=64"],
    "mc_dropout": ["weights=code", "w0=0.25", "mc_passes=10", "focal=gmu", "hidden=64"],
    "lpros": ["resample=lpros"],
    "schedule_linear": ["weights=paper", "schedule=linear", "hidden=64"],
    "dense_early_stopping": ["constraint=dense", "protocol=early_stopping", "patience=2", "hidden=64"],
}


def _cpu_tag() -> str:
    """The CPU's vendor and widest vector ISA: XLA compiles for the host CPU, so an AVX-512 Xeon and an
    AVX2 EPYC reduce in other orders and train to other bits (seen: gmu_ensemble_E10's AUPRC moved in the
    11th digit between the two)."""
    try:
        with open("/proc/cpuinfo") as fh:
            info = fh.read()
    except OSError:
        return platform.processor() or "unknown-cpu"
    vendor = next((ln.split(":", 1)[1].strip() for ln in info.splitlines() if ln.startswith("vendor_id")), "?")
    flags = set(next((ln.split(":", 1)[1].split() for ln in info.splitlines() if ln.startswith("flags")), []))
    isa = "avx512" if "avx512f" in flags else "avx2" if "avx2" in flags else "sse"
    return f"{vendor} {isa}"


# The hashes first recorded (2026-11) named no CPU; they were made on an AMD EPYC, whose ISA was not noted.
LEGACY_CPU = "AuthenticAMD (isa not recorded)"


def _env_key(cpu: str | None = None) -> str:
    import jaxlib

    return (f"jax={jax.__version__} jaxlib={jaxlib.__version__} {platform.machine()} {jax.default_backend()} "
            f"{cpu or _cpu_tag()}")


def params_hash(params) -> str:
    """SHA-256 over every parameter leaf's bytes, dtype and shape, in the pytree's key order."""
    h = hashlib.sha256()
    for path, leaf in sorted(jax.tree_util.tree_flatten_with_path(params)[0], key=lambda kv: str(kv[0])):
        a = np.asarray(leaf)
        h.update(f"{jax.tree_util.keystr(path)}:{a.dtype}:{a.shape};".encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def run_case(name: str, run_dir: str) -> dict:
    from hmljax.training import TrainConfig, train_and_evaluate

    cfg = TrainConfig(dataset="synthetic", seed=0, epochs=3).override(CASES[name])
    out = train_and_evaluate(cfg, run_dir, progress=False)
    return {"params_sha256": params_hash(out["params"]), "test_auprc": out["results"]["test"]["auprc"]}


def _recorded() -> dict:
    """This machine's recorded hashes; an AVX2 AMD machine with none of its own uses the first recording's
    (an AVX-512 EPYC trains gmu_ensemble_E10 to other bits than that recording, at the commit that made it)."""
    if not os.path.exists(HASHES):
        return {}
    with open(HASHES) as fh:
        rec = json.load(fh)
    if _env_key() in rec or _cpu_tag() != "AuthenticAMD avx2":
        return rec.get(_env_key(), {})
    return rec.get(_env_key(LEGACY_CPU), {})


# CI runs the E = 10 GMU ensemble with RARE's weights (the most of the engine in one config); the rest with
# -m slow (plain C-HMCNN's determinism is also checked by tests/test_training.py in every run).
FAST = ("gmu_ensemble_E10",)


@pytest.mark.parametrize("name", [n if n in FAST else pytest.param(n, marks=pytest.mark.slow) for n in sorted(CASES)])
def test_params_bitwise_as_recorded(name, tmp_path):
    want = _recorded().get(name)
    if want is None:
        pytest.skip(f"no recorded hash for {name!r} on {_env_key()} (recorded on another jax version or machine)")
    got = run_case(name, str(tmp_path / name))
    assert got == want, f"{name}: trains to other parameters than recorded ({got} != {want})"


def test_recorded_hashes_are_looked_up_by_cpu(monkeypatch):
    """Each CPU kind uses its own hashes; an AVX2 AMD machine without its own falls back to the first recording
    (made on an AMD EPYC); another ISA has none (the test then skips, never compares across)."""
    with open(HASHES) as fh:
        rec = json.load(fh)
    if _env_key(LEGACY_CPU) not in rec:
        pytest.skip(f"the first recording was made with another jax than {jax.__version__}")
    monkeypatch.setattr(sys.modules[__name__], "_cpu_tag", lambda: "AuthenticAMD avx2")
    assert _recorded() == rec[_env_key(LEGACY_CPU)]
    monkeypatch.setattr(sys.modules[__name__], "_cpu_tag", lambda: "GenuineIntel sse")
    assert _recorded() == {}
    monkeypatch.setattr(sys.modules[__name__], "_cpu_tag", lambda: "AuthenticAMD avx512")  # its own, or none
    assert _recorded() == rec.get(_env_key("AuthenticAMD avx512"), {}) != rec[_env_key(LEGACY_CPU)]


if __name__ == "__main__":  # regenerate: python tests/test_regression.py [names...]
    import tempfile

    sys.path.insert(0, os.path.dirname(HERE))
    names = sys.argv[1:] or sorted(CASES)
    allrec = json.load(open(HASHES)) if os.path.exists(HASHES) else {}
    rec = allrec.setdefault(_env_key(), {})
    with tempfile.TemporaryDirectory() as tmp:
        for n in names:
            rec[n] = run_case(n, os.path.join(tmp, n))
            print(n, rec[n], flush=True)
    with open(HASHES + ".tmp", "w") as fh:
        json.dump(allrec, fh, indent=2, sort_keys=True)
        fh.write("\n")
    os.replace(HASHES + ".tmp", HASHES)
