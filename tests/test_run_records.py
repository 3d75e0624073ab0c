"""Run records: a finished run's small files kept beside the tables, restored in a fresh checkout."""

import json
import os
import shutil
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "experiments"))

from _runner import RunRecords, pending  # noqa: E402
from conftest import DATA_DIR, needs_data  # noqa: E402

from hmljax.training import TrainConfig  # noqa: E402


def _fake_run(run_dir, cfg: TrainConfig, auprc: float, *, finished: bool = True, checkpoints: bool = True):
    os.makedirs(run_dir, exist_ok=True)
    with open(os.path.join(run_dir, "config.json"), "w") as fh:
        json.dump({"config": cfg.to_dict(), "machine": {"backend": "cpu", "cpus": 2}}, fh)
    with open(os.path.join(run_dir, "metrics.jsonl"), "w") as fh:
        fh.write(json.dumps({"epoch": 1, "epoch_s": 1.5}) + "\n")
    if checkpoints:
        os.makedirs(os.path.join(run_dir, "checkpoints", "1"), exist_ok=True)
        with open(os.path.join(run_dir, "checkpoints", "1", "blob"), "wb") as fh:
            fh.write(b"\0" * 64)
    if finished:
        with open(os.path.join(run_dir, "results.json"), "w") as fh:
            json.dump({"test": {"auprc": auprc}}, fh)


def _cfg(seed=0, **kw):
    return TrainConfig(dataset="synthetic", seed=seed).override([f"{k}={v}" for k, v in kw.items()])


def test_saved_runs_come_back_in_a_fresh_checkout_and_are_not_trained_again(tmp_path):
    runs, results = tmp_path / "a" / "runs" / "exp", tmp_path / "a" / "results"
    cfgs = [_cfg(s, epochs=2) for s in range(3)]
    dirs = [str(runs / "synthetic" / f"s{s}") for s in range(3)]
    _fake_run(dirs[0], cfgs[0], 0.5)
    _fake_run(dirs[1], cfgs[1], 0.6)
    _fake_run(dirs[2], cfgs[2], 0.0, finished=False)  # in flight: not recorded
    rec = RunRecords(str(runs), str(results))
    assert rec.sync() == (0, 2)
    kept = sorted(os.path.relpath(os.path.join(d, f), results) for d, _, fs in os.walk(results) for f in fs)
    assert kept == [f"runs/exp/synthetic/s{s}/{f}" for s in (0, 1)
                    for f in ("config.json", "metrics.jsonl", "results.json")]  # no checkpoints
    # A fresh checkout: the records came with it (copied here), the runs did not.
    fresh = tmp_path / "b"
    shutil.copytree(results, fresh / "results")
    rec2 = RunRecords(str(fresh / "runs" / "exp"), str(fresh / "results"))
    assert rec2.sync() == (2, 0)
    assert rec2.sync() == (0, 0)  # idempotent
    moved = [os.path.join(fresh, os.path.relpath(d, tmp_path / "a")) for d in dirs]
    todo, done = pending(list(zip(cfgs, moved, strict=True)))
    assert done == 2 and [os.path.basename(rd) for _, rd in todo] == ["s2"]
    got = json.loads((fresh / "runs" / "exp" / "synthetic" / "s1" / "results.json").read_text())
    assert got == {"test": {"auprc": 0.6}}


def test_a_record_finishes_a_local_partial_run_of_its_config_and_leaves_another_config_alone(tmp_path, capsys):
    runs, results = tmp_path / "runs" / "exp", tmp_path / "results"
    rec = RunRecords(str(runs), str(results))
    # Recorded elsewhere: s0 and s1 finished.
    other = tmp_path / "elsewhere" / "exp"
    for s in (0, 1):
        _fake_run(str(other / f"s{s}"), _cfg(s, epochs=2), 0.1 * (s + 1))
    assert RunRecords(str(other), str(results)).sync() == (0, 2)
    # Here: s0 half done with the same config, s1 a run of another config.
    _fake_run(str(runs / "s0"), _cfg(0, epochs=2), 0.0, finished=False)
    _fake_run(str(runs / "s1"), _cfg(1, epochs=5), 0.0, finished=False)
    assert rec.sync() == (1, 0)
    assert json.loads((runs / "s0" / "results.json").read_text())["test"]["auprc"] == 0.1
    assert not (runs / "s1" / "results.json").exists()
    assert "holds another config" in capsys.readouterr().out


def test_a_torn_file_is_never_recorded(tmp_path):
    runs = tmp_path / "runs" / "exp"
    _fake_run(str(runs / "s0"), _cfg(0), 0.5)
    (runs / "s0" / "metrics.jsonl").write_text('{"epoch": 1}\n{"epoch": 2, "epo')
    with pytest.raises(ValueError, match=r"metrics\.jsonl: not valid JSON"):
        RunRecords(str(runs), str(tmp_path / "results")).save(str(runs / "s0"))
    assert not (tmp_path / "results" / "runs" / "exp" / "s0" / "results.json").exists()


def test_chmcnn_reproduction_table_survives_a_fresh_checkout(tmp_path):
    """End to end: the runs directory is lost, the records rebuild the table and nothing is retrained."""
    import reproduce_chmcnn

    out = tmp_path / "res" / "t.md"
    argv = ["--datasets", "synthetic", "--seeds", "2", "--runs", str(tmp_path / "runs"), "--out", str(out),
            "epochs=2", "hidden=16", "batch_size=64"]
    assert reproduce_chmcnn.main(argv) == 0
    before = json.loads((tmp_path / "res" / "t.json").read_text())["synthetic"]["auprc"]
    assert len(before) == 2 and (tmp_path / "res" / "runs" / "runs" / "synthetic" / "s1" / "results.json").exists()
    shutil.rmtree(tmp_path / "runs")
    assert reproduce_chmcnn.main(argv) == 0
    assert not (tmp_path / "runs" / "synthetic" / "s0" / "checkpoints").exists()  # restored, not retrained
    after = json.loads((tmp_path / "res" / "t.json").read_text())["synthetic"]["auprc"]
    np.testing.assert_array_equal(after, before)


@needs_data
def test_every_committed_table_rebuilds_from_its_records():
    """The records committed for the tables made before runs were recorded give back every row exactly."""
    import records_from_tables

    assert records_from_tables.check(DATA_DIR) == []


@needs_data
def test_a_partial_hlstm_command_never_shrinks_its_table(tmp_path):
    """Runs made by other commands (other datasets, more seeds) all stay in the table; the header names the
    command that makes all of it; a run of another config is refused, not mixed in."""
    import hlstm

    args = hlstm.build_parser().parse_args(["tables", "--data-dir", DATA_DIR, "--runs", str(tmp_path / "runs"),
                                            "--results", str(tmp_path / "res")])
    made = {("spo_FUN", 0): 0.2, ("spo_FUN", 1): 0.3, ("Diatoms", 0): 0.7}
    for (d, s), v in made.items():
        for label, keys in hlstm.METHODS.items():
            rd = hlstm.run_dir("tables", d, label, s, args)
            _fake_run(rd, hlstm.config(d, keys, s, args), v, checkpoints=False)
            with open(os.path.join(rd, "results.json"), "w") as fh:
                json.dump({"test": {"auprc": v}, "median_epoch_seconds": 1.0}, fh)
    argv = ["tables", "--data-dir", DATA_DIR, "--runs", str(tmp_path / "runs"), "--results", str(tmp_path / "res"),
            "--datasets", "spo_FUN", "--seeds-fun", "1", "--table-only"]
    assert hlstm.main(argv) == 0
    md = (tmp_path / "res" / "hlstm_tables.md").read_text()
    assert "Command: `python experiments/hlstm.py tables --data-dir ../shared/data --seeds-fun 2 --seeds 1`" in md
    assert "| spo_FUN | 2 | 0.250 ± 0.071 |" in md and "| Diatoms | 1 | 0.700 |" in md
    saved = json.loads((tmp_path / "res" / "hlstm_tables.json").read_text())["rows"]
    assert saved["spo_FUN"]["auprc"]["HLSTM"] == [0.2, 0.3]
    assert "**" not in md and "HLSTM above CHMC-LSTM by > 2σ on 0 (none)" in md  # equal cells: nothing bold
    # HLSTM 0.5 and 0.51 against 0.2 and 0.3 (std 0.071): above both others by > 2σ, so bold and counted.
    for s, v in ((0, 0.5), (1, 0.51)):
        with open(os.path.join(hlstm.run_dir("tables", "spo_FUN", "HLSTM", s, args), "results.json"), "w") as fh:
            json.dump({"test": {"auprc": v}, "median_epoch_seconds": 1.0}, fh)
    assert hlstm.main(argv) == 0
    md = (tmp_path / "res" / "hlstm_tables.md").read_text()
    assert "| spo_FUN | 2 | **0.505 ± 0.007** | 0.250 ± 0.071 |" in md
    assert "HLSTM above CHMC-LSTM by > 2σ on 1 (spo_FUN)" in md
    # Another config under a cell's name: refused with the folder named.
    rd = hlstm.run_dir("tables", "spo_FUN", "HLSTM", 1, args)
    _fake_run(rd, hlstm.config("spo_FUN", "method=hlstm b_r=0.9", 1, args), 0.9, checkpoints=False)
    with pytest.raises(SystemExit, match="HLSTM-s1 holds a run of another config"):
        hlstm.main(argv)


def test_hlstm_labels_pick_cells_in_the_order_given(tmp_path):
    import hlstm

    base = ["init", "--data-dir", "unused", "--runs", str(tmp_path / "runs"), "--seeds", "2"]
    args = hlstm.build_parser().parse_args([*base, "--labels", "xavier", "constant 0.1"])
    todo, done = hlstm.tasks("init", args)
    assert done == 0
    assert [os.path.basename(rd) for _, rd in todo] == ["xavier-s0", "xavier-s1", "constant_0p1-s0", "constant_0p1-s1"]
    assert todo[0][0]["local_init"] == "xavier" and todo[2][0]["local_init_value"] == 0.1
    with pytest.raises(SystemExit, match=r"no cell named 'constant 0.3' in init \(its labels: 'constant 0.1'"):
        hlstm.tasks("init", hlstm.build_parser().parse_args([*base, "--labels", "constant 0.3"]))


def test_an_override_is_another_experiment_with_its_own_runs_and_outputs(tmp_path):
    """``--override`` (HLSTM under early stopping, MPVAE at its own lr) neither refuses nor overwrites the
    plain experiment's runs and tables: its runs, records and outputs carry the override in their names."""
    import adaptive_batch
    import hlstm
    from _runner import variant_suffix

    assert variant_suffix([]) == "" and variant_suffix(["lr=0.001", "a b"]) == "__lr=0.001_a_b"
    # bookkeeping (where data is read, how often checkpoints go out) changes no result: the same experiment
    assert variant_suffix(["checkpoint_every=1000", "checkpoint_minutes=0"]) == ""
    assert variant_suffix(["checkpoint_every=1000", "lr=0.001"]) == "__lr=0.001"
    ckpt = hlstm.build_parser().parse_args(["tables", "--data-dir", DATA_DIR, "--override", "checkpoint_every=1000"])
    assert hlstm.tag("tables", ckpt) == "tables"
    base = ["--data-dir", DATA_DIR, "--runs", str(tmp_path / "runs"), "--results", str(tmp_path / "res")]
    plain = hlstm.build_parser().parse_args(["tables", *base])
    es = hlstm.build_parser().parse_args(["tables", *base, "--override", "protocol=early_stopping"])
    for args, v in ((plain, 0.2), (es, 0.25)):
        for label, keys in hlstm.METHODS.items():
            rd = hlstm.run_dir("tables", "spo_FUN", label, 0, args)
            _fake_run(rd, hlstm.config("spo_FUN", keys, 0, args), v, checkpoints=False)
            with open(os.path.join(rd, "results.json"), "w") as fh:
                json.dump({"test": {"auprc": v}, "median_epoch_seconds": 1.0}, fh)
    assert "tables__protocol=early_stopping" in hlstm.run_dir("tables", "spo_FUN", "HLSTM", 0, es)
    for extra in ([], ["--override", "protocol=early_stopping"]):
        assert hlstm.main(["tables", *base, "--datasets", "spo_FUN", "--seeds-fun", "1", "--table-only", *extra]) == 0
    plain_md = (tmp_path / "res" / "hlstm_tables.md").read_text()
    es_md = (tmp_path / "res" / "hlstm_tables__protocol=early_stopping.md").read_text()
    assert "| spo_FUN | 1 | 0.200 |" in plain_md and "early_stopping" not in plain_md
    assert "| spo_FUN | 1 | 0.250 |" in es_md and "--override protocol=early_stopping`" in es_md
    assert list((tmp_path / "res" / "runs").glob("*/tables__protocol=early_stopping/spo_FUN/HLSTM-s0/results.json"))
    ab = adaptive_batch.build_parser().parse_args(["table2", *base, "--models", "mpvae", "--override", "lr=0.001"])
    assert adaptive_batch.run_dir("emotions", "mpvae", "adaptive", 0, ab).endswith(
        os.path.join("emotions", "mpvae__lr=0.001", "adaptive-fold0-s0"))
    assert adaptive_batch._stem("table2", ab) == "adaptive_table2_mpvae__lr=0.001"


def test_rare_tables_carry_committed_rows_their_checkout_cannot_rebuild(tmp_path):
    """A RARE table made before run records keeps its rows when extended: a cell with fewer runs here than
    the committed table had is carried (marked), one with as many or more comes from the runs here."""
    import rare

    old = {"a": {"GMU": {"F1": [5.0, 0.1, 3], "n": 3}, "bBMA": {"F1": [4.0, 0.0, 1], "n": 1}},
           "b": {"GMU": {"F1": [7.0, 0.0, 1], "n": 1}}}
    (tmp_path / "t.json").write_text(json.dumps(old))
    fresh = {"F1": (6.0, 0.2, 3), "n": 3}
    summary = {"a": {"GMU": {"F1": None, "n": 0}, "bBMA": dict(fresh)}, "b": {"GMU": {"F1": (8.0, 0.0, 1), "n": 1}},
               "c": {"GMU": {"F1": None, "n": 0}}}
    assert rare.carry_committed(summary, str(tmp_path / "t.json")) == [("a", "GMU")]
    assert summary["a"]["GMU"] == {"F1": [5.0, 0.1, 3], "n": 3, "carried": True}
    assert rare._n(summary["a"]["GMU"]) == "3 ‡"
    assert summary["a"]["bBMA"] == fresh and summary["b"]["GMU"]["F1"] == (8.0, 0.0, 1)
    assert rare.carry_committed(summary, str(tmp_path / "absent.json")) == []


def test_source_commit_is_the_one_the_process_started_with(tmp_path, monkeypatch):
    # A process's tables and runs name the code it imported, even after the checkout moves on.
    import subprocess

    from hmljax.training import source_commit

    first = source_commit()
    calls = []
    monkeypatch.setattr(subprocess, "check_output", lambda *a, **k: calls.append(a) or "feedbee\n")
    monkeypatch.setattr(subprocess, "check_call", lambda *a, **k: calls.append(a) or 0)
    assert source_commit() == first and calls == []  # asked once per process, then kept


def test_a_copy_pip_installed_from_git_names_its_commit(tmp_path):
    # Outside a git checkout runs said hmljax_commit "unknown", even for `pip install git+https://...@<rev>`,
    # whose commit pip records in the install's direct_url.json (PEP 610).
    import subprocess

    import hmljax

    site = tmp_path / "site"
    shutil.copytree(os.path.dirname(hmljax.__file__), site / "hmljax", ignore=shutil.ignore_patterns("__pycache__"))
    probe = [sys.executable, "-c", "from hmljax.training import source_commit; print(source_commit())"]
    env = {**os.environ, "PYTHONPATH": str(site)}
    assert subprocess.check_output(probe, cwd=tmp_path, env=env, text=True).strip() == "unknown"  # no record
    info = site / "hmljax-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: hmljax\nVersion: 0.1.0\n")
    (info / "direct_url.json").write_text(json.dumps({"url": "https://github.com/o/hmljax.git", "vcs_info": {
        "vcs": "git", "requested_revision": "main", "commit_id": "0123456789abcdef0123456789abcdef01234567"}}))
    assert subprocess.check_output(probe, cwd=tmp_path, env=env, text=True).strip() == "0123456"


def _log(run_dir, secs):
    with open(os.path.join(run_dir, "metrics.jsonl"), "w") as fh:
        fh.writelines(json.dumps({"epoch": e + 1, "epoch_s": s}) + "\n" for e, s in enumerate(secs))


def test_unfinished_runs_leave_timing_records_that_plans_read_in_a_fresh_checkout(tmp_path):
    """A run longer than one sitting never finishes here; its timed epochs must still reach --plan."""
    from _runner import _cost_key, measured_epoch_seconds

    runs, results = tmp_path / "a" / "runs" / "exp", tmp_path / "a" / "results"
    cfg = _cfg(0, epochs=50)
    run = runs / "synthetic" / "s0"
    _fake_run(str(run), cfg, 0.0, finished=False)
    _log(run, [9.0, 2.0, 3.0, 4.0])  # the first epoch compiles: not a timing
    rec = RunRecords(str(runs), str(results))
    assert rec.sync() == (0, 0)  # not a finished run ...
    timing = results / "timings" / "exp" / "synthetic" / "s0"
    assert sorted(os.listdir(timing)) == ["config.json", "metrics.jsonl"]  # ... but timed, and no checkpoints
    assert not (results / "runs").exists()
    key = _cost_key(cfg.to_dict())
    # Here the run and its timing record are one log: counted once.
    assert measured_epoch_seconds([str(runs), rec.timings]) == {key: 3.0}
    # A fresh checkout: only the records came; the plan still times the kind.
    fresh = tmp_path / "b"
    shutil.copytree(results, fresh / "results")
    rec2 = RunRecords(str(fresh / "runs" / "exp"), str(fresh / "results"))
    assert rec2.sync() == (0, 0) and not (fresh / "runs").exists()  # a timing is never restored as a run
    assert measured_epoch_seconds([str(fresh / "runs" / "exp"), rec2.timings]) == {key: 3.0}
    # Restarted there, its shorter log does not replace the record; a longer one does.
    run2 = fresh / "runs" / "exp" / "synthetic" / "s0"
    _fake_run(str(run2), cfg, 0.0, finished=False)
    _log(run2, [8.0, 5.0])
    rec2.sync()
    assert json.loads((fresh / "results" / "timings" / "exp" / "synthetic" / "s0" / "metrics.jsonl")
                      .read_text().splitlines()[-1])["epoch"] == 4
    _log(run2, [8.0, 5.0, 5.0, 5.0, 5.0, 5.0])
    rec2.sync()
    assert measured_epoch_seconds([rec2.timings]) == {key: 5.0}
    # A torn last line (a log being written) is skipped, not an error.
    _log(run, [9.0, 2.0, 3.0, 4.0, 4.0])
    with open(run / "metrics.jsonl", "a") as fh:
        fh.write('{"epoch": 6, "epo')
    assert rec.sync() == (0, 0)
    # Once the run finishes, its record replaces its timing.
    _log(run, [9.0, 2.0, 3.0, 4.0, 4.0, 4.0])
    with open(run / "results.json", "w") as fh:
        json.dump({"test": {"auprc": 0.5}}, fh)
    assert rec.sync() == (0, 1)
    assert not timing.exists() and (results / "runs" / "exp" / "synthetic" / "s0" / "results.json").exists()
    # A timing left behind for a recorded run (written by older code) goes at the next sync.
    shutil.copytree(results / "runs" / "exp" / "synthetic" / "s0", timing)
    os.remove(timing / "results.json")
    rec.sync()
    assert not timing.exists()


def test_a_run_that_starts_behind_its_timing_record_says_what_was_lost(tmp_path, capsys):
    """A fresh checkout lost runs/ (checkpoints included) but kept the timing record: the runner says the run
    starts again behind where an earlier sitting took it, instead of restarting it silently."""
    from _runner import run_tasks

    runs, results = tmp_path / "runs" / "exp", tmp_path / "results"
    run = runs / "synthetic" / "s0"
    cfg = _cfg(0, epochs=50)
    rec = RunRecords(str(runs), str(results))
    timing = results / "timings" / "exp" / "synthetic" / "s0"
    _fake_run(str(timing), cfg, 0.0, finished=False, checkpoints=False)
    _log(timing, [9.0] + [2.0] * 73)  # an earlier sitting reached epoch 74
    assert rec.lost_progress(str(run)) == (
        f"{run}: starts at epoch 0, but a sitting before this checkout took it to epoch 74 "
        "(experiments/results/timings); its checkpoints are not here, so those epochs train again")
    _fake_run(str(run), cfg, 0.0, finished=False)  # a checkpoint at epoch 1 here: still behind
    assert "starts at epoch 1, but" in rec.lost_progress(str(run))
    os.makedirs(run / "checkpoints" / "80")
    assert rec.lost_progress(str(run)) is None  # ahead of the record: nothing lost
    assert rec.lost_progress(str(tmp_path / "elsewhere")) is None  # not under the runs root
    shutil.rmtree(run / "checkpoints" / "80")
    # Same checkout, stopped between checkpoints: its own log reached the record, only epochs 71-74 are lost.
    os.makedirs(run / "checkpoints" / "70")
    _log(run, [9.0] + [2.0] * 73)
    assert rec.lost_progress(str(run)) == (
        f"{run}: resumes from its checkpoint at epoch 70; epochs 71-74, trained after it before the last stop, "
        "train again")
    shutil.rmtree(run / "checkpoints" / "70")
    _log(run, [9.0])
    # run_tasks prints it before training (here the run fails at once: its dataset cannot be built)
    run_tasks([({"dataset": "no-such-dataset", "epochs": 50}, str(run))], records=rec)
    assert "took it to epoch 74" in capsys.readouterr().out
