"""Bad input and faults: each malformed file, misused flag or damaged cache/checkpoint gives one clear, specific
error, and leaves no partial output behind (issue 18's fuzz suite; more cases are added as formats land)."""

from __future__ import annotations

import gzip
import json
import os

import numpy as np
import pytest

from hmljax.cli import main
from hmljax.data import ArffError, DataError, load_dataset, read_arff

GOOD = """@relation toy
@attribute a numeric
@attribute b numeric
@attribute colour {red,green}
@attribute class hierarchical A,A/1,A/2,B
@data
0.5,1.0,red,A/1
-1.0,?,green,B
2.0,0.25,red,A/1@B
0.0,3.0,green,A/2
"""

# (case id, how to turn GOOD into bad text, a phrase the error must contain)
ARFF_CASES = [
    ("empty", lambda t: "", "empty"),
    ("no-data-section", lambda t: t.split("@data")[0], "@data"),
    ("inf", lambda t: t.replace("0.5,1.0", "inf,1.0"), "not a finite number"),
    ("minus-inf", lambda t: t.replace("0.5,1.0", "-inf,1.0"), "not a finite number"),
    ("nan-literal", lambda t: t.replace("0.5,1.0", "nan,1.0"), "not a finite number"),
    ("overflow", lambda t: t.replace("0.5,1.0", "1e400,1.0"), "not a finite number"),
    ("not-a-number", lambda t: t.replace("0.5,1.0", "zero,1.0"), "is not a number"),
    ("too-few-fields", lambda t: t.replace("0.5,1.0,red,A/1", "0.5,red,A/1"), "field"),
    ("too-many-fields", lambda t: t.replace("0.5,1.0,red,A/1", "0.5,1.0,1.0,red,A/1"), "field"),
    ("nominal-outside-set", lambda t: t.replace("0.5,1.0,red", "0.5,1.0,blue"), "blue"),
    ("unknown-label", lambda t: t.replace("0.0,3.0,green,A/2", "0.0,3.0,green,C/9"), "C/9"),
    ("no-label", lambda t: t.replace("0.0,3.0,green,A/2", "0.0,3.0,green,"), "label"),
    ("bad-attribute-type", lambda t: t.replace("@attribute b numeric", "@attribute b complex"), "complex"),
    ("unterminated-quote", lambda t: t.replace("@attribute a numeric", "@attribute 'a numeric"), "quote"),
    ("bad-hierarchy-entry", lambda t: t.replace("A,A/1,A/2,B", "A,A/1,A/2,B,B//x"), "hierarch"),
]


def _case_file(tmp_path, text, name="toy.arff"):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


@pytest.mark.parametrize("case,mutate,says", ARFF_CASES, ids=[c[0] for c in ARFF_CASES])
def test_malformed_arff_is_one_clear_error_and_no_cache(tmp_path, monkeypatch, case, mutate, says):
    cache = tmp_path / "cache"
    monkeypatch.setenv("HMLJAX_CACHE", str(cache))
    d = tmp_path / "data"
    d.mkdir()
    bad = _case_file(d, mutate(GOOD), "toy.train.arff")
    # The test split is good, except that it declares the same hierarchy (else that mismatch is the error).
    _case_file(d, mutate(GOOD) if case == "bad-hierarchy-entry" else GOOD, "toy.test.arff")
    with pytest.raises(ArffError) as err:
        load_dataset("toy", data_dir=str(d))
    assert bad in str(err.value) and says.lower() in str(err.value).lower(), str(err.value)
    assert not cache.exists() or not os.listdir(cache)  # nothing half-written


@pytest.mark.parametrize("case", ["truncated", "corrupt-deflate", "not-gzip"])
def test_damaged_gzip_is_an_arff_error(tmp_path, case):
    raw = gzip.compress(GOOD.encode())
    data = {"truncated": raw[: len(raw) // 2],
            "corrupt-deflate": raw[:12] + bytes(b ^ 0xFF for b in raw[12:40]) + raw[40:],
            "not-gzip": b"\x1f\x8b" + b"garbage" * 10}[case]
    p = tmp_path / "toy.arff.gz"
    p.write_bytes(data)
    with pytest.raises(ArffError, match="toy.arff.gz"):
        read_arff(str(p))


def test_meka_label_count_beyond_the_attributes(tmp_path):
    text = "@relation 'x: -C -50'\n@attribute a numeric\n@attribute l {0,1}\n@data\n1,0\n"
    with pytest.raises(ArffError, match="x.arff"):
        read_arff(_case_file(tmp_path, text, "x.arff"))


def test_a_bad_split_writes_no_cache(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("HMLJAX_CACHE", str(cache))
    d = tmp_path / "data"
    d.mkdir()
    (d / "toy.train.arff").write_text(GOOD)
    (d / "toy.test.arff").write_text(GOOD.replace("0.5,1.0", "inf,1.0"))
    with pytest.raises(ArffError, match="toy.test.arff"):
        load_dataset("toy", data_dir=str(d))
    assert not cache.exists() or not [e for e in os.listdir(cache) if not e.startswith(".")], os.listdir(cache)


# ---------------------------------------------------------------- the CLI: a bad flag is refused before any write
CLI_CASES = [
    (["seed=-1"], "bad value for seed: -1"),  # numpy's seeding said "expected non-negative integer", unnamed
    (["folds=3", "fold=0", "fold_seed=-2"], "bad value for fold_seed"),
    (["lr=inf"], "bad value for lr"),
    (["lr=-1"], "bad value for lr"),
    (["lr=nan"], "bad value for lr"),
    (["threshold=5"], "bad value for threshold"),
    (["hidden=0"], "bad value for hidden"),
    (["hidden=big"], "not an int"),
    (["dropout=1.5"], "bad value for dropout"),
    (["batch_size=0"], "bad value for batch_size"),
    (["weight_decay=-1"], "bad value for weight_decay"),
    (["method=nope"], "unknown method 'nope'"),
    (["sampler=nope"], "unknown sampler 'nope'"),
    (["focal=bogus", "ensemble=2"], "bad value for focal"),
    (["focal=gmu"], "needs ensemble >= 1 or mc_passes >= 1"),
    (["w0=0.1"], "applies only with weights"),
    (["u0=0.1"], "applies only with a focal term"),
    (["weights=code", "w0=-1"], "bad value for w0"),
    (["weights=code", "w0=inf"], "bad value for w0"),
    (["weights=inverse"], "bad value for weights"),
    (["momentum=0.9"], "applies only with optimizer=sgd"),
    (["optimizer=rmsprop"], "bad value for optimizer"),
    (["patience=3"], "applies only with protocol=early_stopping"),
    (["protocol=magic"], "bad value for protocol"),
    (["fold=1"], "applies only with folds"),
    (["folds=1"], "bad value for folds"),
    (["folds=3", "fold=3"], "bad value for fold"),
    (["feature_fraction=0"], "bad value for feature_fraction"),
    (["preprocessing=bogus"], "bad value for preprocessing"),
    (["matmul_precision=tf32"], "bad value for matmul_precision"),
    (["mc_passes=2", "ensemble=2"], "not both"),
    (["schedule=linear"], "needs weights"),
    (["resample=smote"], "bad value for resample"),
    (["noequals"], "is not key=value"),
    (["nosuchkey=1"], "unknown config key 'nosuchkey'"),
    (["ema=0.5"], "config key 'ema'"),  # unknown, or another method's when the test method is registered
    (["shard=pipeline"], "bad value for shard"),
    (["devices=2"], "applies only with shard"),
    (["epochs=0"], "bad value for epochs"),
    (["checkpoint_every=-1"], "bad value for checkpoint_every"),
    (["checkpoint_minutes=-1"], "bad value for checkpoint_minutes"),
]


@pytest.mark.parametrize("keys,says", CLI_CASES, ids=[" ".join(k) for k, _ in CLI_CASES])
def test_cli_refuses_bad_keys_before_writing(tmp_path, capsys, keys, says):
    out = tmp_path / "run"
    assert main(["train", "--dataset", "synthetic", "--out", str(out), "--no-progress", *keys]) == 2
    err = capsys.readouterr().err
    assert says in err and err.startswith("hmljax: error:"), err
    assert not out.exists()  # nothing written for a refused config


@pytest.mark.parametrize("argv,says", [
    (["train", "--resume"], "--resume needs --out"),
    (["train", "--out", "x", "--extend"], "--extend trains a saved run further"),
    (["train", "--dataset", "no_such_dataset"], "unknown dataset"),
    (["evaluate", "/nonexistent/run"], "not a run directory"),
    (["predict", "/nonexistent/run", "--input", "x.arff", "--out", "p.npy"], "not a run directory"),
], ids=["resume-no-out", "extend-no-resume", "unknown-dataset", "evaluate-missing", "predict-missing"])
def test_cli_misuse(tmp_path, capsys, monkeypatch, argv, says):
    monkeypatch.delenv("HMLJAX_DATA", raising=False)  # none of these needs data (and a relative one breaks here)
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    assert says in capsys.readouterr().err


# ------------------------------------------------------------------ damaged caches and checkpoints are found
@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("HMLJAX_CACHE", str(cache))
    ds = load_dataset("synthetic")
    return ds.cache_path


@pytest.mark.parametrize("target", ["X_train.npy", "Y_test.npy", "R_valid.npy"])
def test_flipped_byte_in_a_cache_file_is_found(fresh_cache, target):
    p = os.path.join(fresh_cache, target)
    data = bytearray(open(p, "rb").read())
    data[-7] ^= 0x01
    open(p, "wb").write(bytes(data))
    with pytest.raises(DataError, match=rf"{target} is damaged.*delete"):
        load_dataset("synthetic")


def test_cache_file_cut_short_or_meta_garbled(fresh_cache):
    p = os.path.join(fresh_cache, "X_train.npy")
    a = np.load(p)
    np.save(p, a[:10])  # a valid .npy, 10 rows: the checksum and the row counts both catch it
    with pytest.raises(DataError, match="X_train.npy"):
        load_dataset("synthetic")
    open(os.path.join(fresh_cache, "meta.json"), "w").write("{not json")
    with pytest.raises(DataError, match="meta.json .* unreadable"):
        load_dataset("synthetic")


def test_stale_temporary_cache_folders_are_removed(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    stale, fresh = cache / ".tmp-old-build", cache / ".tmp-building-now"
    for d in (stale, fresh):
        d.mkdir(parents=True)
    os.utime(stale, (0, 0))
    monkeypatch.setenv("HMLJAX_CACHE", str(cache))
    load_dataset("synthetic")
    assert not stale.exists() and fresh.exists()


def test_flipped_byte_in_a_checkpoint_is_found_on_resume(tmp_path, capsys):
    run = tmp_path / "run"
    args = ["train", "--out", str(run), "--no-progress", "--epochs", "2", "hidden=8", "batch_size=128",
            "checkpoint_every=1"]
    assert main(args) == 0
    step = run / "checkpoints" / "2"
    files = sorted(p for p in step.rglob("*") if p.is_file() and p.stat().st_size > 64)
    data = bytearray(files[0].read_bytes())
    data[len(data) // 2] ^= 0x10
    files[0].write_bytes(bytes(data))
    capsys.readouterr()
    assert main([*args, "--resume"]) == 2
    err = capsys.readouterr().err
    assert "checkpoint 2" in err and "damaged" in err and "resume from checkpoint 1" in err, err
    (tmp_path / "run" / "checkpoints.sha256.json").write_text('{"2": {"a": ')  # the record itself cut short
    assert main([*args, "--resume"]) == 2
    err = capsys.readouterr().err
    assert "checkpoints.sha256.json: the checkpoints' checksum record is unreadable" in err, err


def test_two_trainings_into_one_folder(tmp_path):
    from hmljax.training import TrainConfig, run_lock, train_and_evaluate

    run = tmp_path / "run"
    run.mkdir()
    with run_lock(str(run)):  # as if another training held it
        with pytest.raises(ValueError, match="in use by another training"):
            train_and_evaluate(TrainConfig(epochs=1, hidden=8), str(run), progress=False)
    assert not (run / "metrics.jsonl").exists()


def test_nan_predictions_are_refused_not_scored():
    from hmljax.metrics import flat_suite, hierarchical_suite

    h = load_dataset("synthetic").hierarchy
    y = np.zeros((3, h.num_nodes), np.uint8)
    p = np.full((3, h.num_nodes), 0.5)
    p[1, 4] = np.nan
    for suite in (hierarchical_suite(h), flat_suite()):
        with pytest.raises(ValueError, match="non-finite"):
            suite.evaluate(y, p)
        with pytest.raises(ValueError, match=r"in \[0, 1\]"):
            suite.evaluate(y, np.full_like(p, 1.5))


def test_run_directory_blocked_by_a_file_is_one_line(tmp_path, capsys):
    # (A read-only parent gives the same OSError path; CI runs as root, which ignores permissions.)
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert main(["train", "--out", str(blocker / "run"), "--no-progress", "--epochs", "1"]) == 2
    assert "cannot create the run directory" in capsys.readouterr().err


def test_full_disk_is_one_line_and_leaves_no_partial_file(tmp_path, capsys, monkeypatch):
    """ENOSPC while writing a run's files: one clear line, exit 2, no temporary or half-written file."""
    import errno

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    run = tmp_path / "run"
    monkeypatch.setattr(os, "fsync", full)
    assert main(["train", "--out", str(run), "--no-progress", "--epochs", "1"]) == 2
    err = capsys.readouterr().err
    assert "No space left on device" in err and "(errno 28)" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    left = [p.name for p in run.rglob("*") if p.is_file()] if run.exists() else []
    assert not [n for n in left if n.startswith(".tmp-") or n in ("config.json", "results.json")], left


def test_cli_out_of_memory_is_one_line_naming_the_batch(tmp_path, capsys, monkeypatch):
    # XLA's allocation failure used to end `hmljax train` in a long JaxRuntimeError traceback.
    import hmljax.training

    class JaxRuntimeError(RuntimeError):  # matched by name, as the CLI does not import jax to catch it
        pass

    def oom(cfg, run_dir, **kw):
        raise JaxRuntimeError("INTERNAL: Error dispatching computation: Out of memory allocating 36654096448 bytes.")

    monkeypatch.setattr(hmljax.training, "train_and_evaluate", oom)
    assert main(["train", "--out", str(tmp_path / "r"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("hmljax: error: the device ran out of memory (Error dispatching computation: Out of memory "
                          "allocating 36654096448 bytes.). Lower batch_size") and "--resume" in err

    def other(cfg, run_dir, **kw):
        raise JaxRuntimeError("INTERNAL: something else")

    monkeypatch.setattr(hmljax.training, "train_and_evaluate", other)
    with pytest.raises(JaxRuntimeError):  # anything else still surfaces whole
        main(["train", "--out", str(tmp_path / "s"), "--no-progress"])


def test_load_dataset_says_what_is_wrong_with_its_arguments(tmp_path):
    f = tmp_path / "file.txt"
    f.write_text("x")
    with pytest.raises(DataError, match=r"\(given as --data-dir / data_dir\) is a file, not a directory"):
        load_dataset("cellcycle_FUN", data_dir=str(f))
    with pytest.raises(DataError, match="does not exist"):
        load_dataset("cellcycle_FUN", data_dir=str(tmp_path / "absent"))
    with pytest.raises(DataError, match="a dataset name is a non-empty string.*got None"):  # was an AttributeError
        load_dataset(None)


def test_cli_prints_an_empty_groups_map_as_not_applicable(tmp_path, capsys, monkeypatch):
    # emotions' six labels are all 'head': its middle and tail mAPs are NaN, which the table printed as 'nan'.
    import hmljax.training

    def fake(cfg, run_dir, **kw):
        return {"results": {"test": {"macro_f1": 0.5, "map": 0.42, "map_head": 0.42, "map_middle": float("nan"),
                                     "map_tail": float("nan")}}}

    monkeypatch.setattr(hmljax.training, "train_and_evaluate", fake)
    assert main(["train", "--out", str(tmp_path / "r"), "--no-progress"]) == 0
    lines = {ln.split()[0]: ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("map")}
    assert lines["map_head"].split()[1] == "0.4200"
    assert lines["map_middle"].split()[1:] == ["n/a", "no", "labels", "in", "this", "group"]
    assert "nan" not in lines["map_tail"]
    # and `hmljax evaluate --json` prints strict JSON (null, not Python's NaN, which jq rejects)
    monkeypatch.setattr(hmljax.training, "evaluate_run", lambda run_dir, **kw: fake(None, None)["results"]["test"])
    assert main(["evaluate", str(tmp_path / "r"), "--json"]) == 0
    out = capsys.readouterr().out
    assert json.loads(out, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))["map_tail"] is None


def test_cli_config_keys_may_sit_among_the_flags(tmp_path, capsys):
    # argparse gives a positional list one run of the command line: keys after a flag were "unrecognized".
    out = tmp_path / "r"
    assert main(["train", "hidden=8", "--epochs", "1", "--out", str(out), "batch_size=64", "--no-progress",
                 "dropout=0.5"]) == 0
    saved = json.loads((out / "config.json").read_text())["config"]
    assert (saved["hidden"], saved["batch_size"], saved["dropout"]) == (8, 64, 0.5)
    with pytest.raises(SystemExit):  # a stray word or flag among them is still refused
        main(["train", "hidden=8", "--epochs", "1", "--out", str(tmp_path / "s"), "oops", "--no-progress"])
    assert "unrecognized arguments: oops" in capsys.readouterr().err and not (tmp_path / "s").exists()
    assert main(["train", "--epochs", "1", "--out", str(tmp_path / "s"), "oops", "--no-progress"]) == 2
    assert "override 'oops' is not key=value" in capsys.readouterr().err and not (tmp_path / "s").exists()


def test_early_stopping_without_a_validation_split_is_refused_not_run_on_test(tmp_path, capsys):
    # With no valid split, protocol=early_stopping chose its epoch on the test split, then scored that split.
    from conftest import write_mulan

    write_mulan(str(tmp_path / "data" / "novalid"), "novalid")
    args = ["train", "--dataset", "novalid", "--data-dir", str(tmp_path / "data"), "--epochs", "2", "--no-progress",
            "method=mlp", "hidden=8", "protocol=early_stopping"]
    assert main([*args, "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "protocol=early_stopping chooses the epoch on a validation split and novalid has none" in err
    assert "folds=K fold_valid=true" in err and not (tmp_path / "r" / "config.json").exists()
    assert main([*args, "--out", str(tmp_path / "s"), "folds=3", "fold_valid=true"]) == 0  # a held-out valid: runs
    first = json.loads((tmp_path / "s" / "metrics.jsonl").read_text().splitlines()[0])
    assert any(k.startswith("valid_") for k in first)


def test_evaluating_on_a_split_the_run_trained_on_says_so(tmp_path, capsys):
    # protocol=chmcnn trains on train+valid: `evaluate --split valid` scored training rows without a word.
    run = str(tmp_path / "run")
    assert main(["train", "--out", run, "--no-progress", "--epochs", "1", "hidden=8", "batch_size=128"]) == 0
    capsys.readouterr()
    assert main(["evaluate", run, "--split", "valid"]) == 0
    assert "hmljax: note: " in (err := capsys.readouterr().err) and "trained on train+valid" in err, err
    assert main(["evaluate", run]) == 0 and "note" not in capsys.readouterr().err  # the test split: held out
