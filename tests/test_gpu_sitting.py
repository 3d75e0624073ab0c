"""The GPU sitting driver: jobs under a budget, the pack that comes back, and unpacking it here."""

import io
import json
import os
import sys
import tarfile
import textwrap
import time

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "experiments"))
import gpu_sitting  # noqa: E402

# A job that trains "runs": run a finishes (checkpoints too), run b is cut off before its results.
TRAINER = textwrap.dedent("""
    import json, os, sys, time
    data = sys.argv[sys.argv.index("--data-dir") + 1]
    for name, finish in (("a", True), ("b", False)):
        d = os.path.join("runs", "exp", "ds", name)
        os.makedirs(os.path.join(d, "checkpoints", "5"), exist_ok=True)
        open(os.path.join(d, "checkpoints", "5", "state"), "wb").write(b"x" * 1000)
        open(os.path.join(d, ".lock"), "w").close()
        cfg = {"config": {"data_dir": data}, "machine": {"backend": "gpu"}}
        json.dump(cfg, open(os.path.join(d, "config.json"), "w"))
        open(os.path.join(d, "metrics.jsonl"), "w").write('{"epoch": 1, "epoch_s": 0.5}\\n')
        if finish:
            json.dump({"auprc": 0.4}, open(os.path.join(d, "results.json"), "w"))
    print("trained", flush=True)
    time.sleep(float(sys.argv[1]))
""")


def test_sitting_stops_jobs_at_their_limit_and_packs_runs_without_checkpoints(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(gpu_sitting, "MIN_JOB_S", 1.0)
    monkeypatch.setattr(gpu_sitting, "PACK_RESERVE_S", 1.0)
    root = tmp_path / "device"
    (root / "experiments").mkdir(parents=True)
    (root / "experiments" / "trainer.py").write_text(TRAINER)
    (root / ".gpu_data").mkdir()
    out = tmp_path / "out"
    gpu_sitting.main(["run", "--out", str(out), "--data-dir", ".gpu_data", "--budget-s", "20",
                      "--job", "20", "experiments/trainer.py 0", "--job", "4", "experiments/trainer.py 600",
                      "--job", "20", "experiments/trainer.py 0",
                      "--root", str(root)])
    manifest = json.loads((root / "sitting" / "manifest.json").read_text())
    # the third job would outlast the budget (20 s less the reserve): it gets what is left
    assert [j["status"] for j in manifest["jobs"]][:2] == ["ok", "stopped at its limit (4 s)"]
    assert manifest["jobs"][2]["status"] == "ok" and manifest["jobs"][2]["limit_s"] < 20
    assert manifest["jobs"][0]["argv"][-2:] == ["--data-dir", ".gpu_data"]  # the carried data, given to the job
    with tarfile.open(out / gpu_sitting.PACK_NAME) as tar:
        names = set(tar.getnames())
    assert {"runs/exp/ds/a/results.json", "runs/exp/ds/a/config.json", "runs/exp/ds/b/metrics.jsonl",
            "sitting/manifest.json", "sitting/00_trainer_0.log"} <= names
    assert not any("checkpoints" in n or n.endswith(".lock") for n in names)
    # each job's last log lines end the output, the run tool's short tail: enough to decide the next call
    assert "[sitting] job 1 trainer_600 | trained" in capsys.readouterr().out


def test_each_job_gets_a_deadline_before_its_limit_for_its_runs_to_pause_at(tmp_path):
    """The job's training runs stop at a checkpoint STOP_MARGIN_S before the job's limit (or the budget's end),
    where the run tool's next call on the warm machine resumes them."""
    from hmljax.training import STOP_BY_ENV

    assert gpu_sitting.STOP_BY_ENV == STOP_BY_ENV  # the driver names it without importing jax
    (tmp_path / "show.py").write_text("import os; print('deadline', os.environ['HMLJAX_STOP_BY'])")
    t0 = time.time()
    records = gpu_sitting.run_jobs([(300.0, "show.py"), (900.0, "show.py")], root=str(tmp_path), data_dir=None,
                                   budget_s=500.0)
    assert [r["status"] for r in records] == ["ok", "ok"]
    deadlines = [float((tmp_path / r["log"]).read_text().split()[-1]) for r in records]
    # the first job's own limit; the second one's is the budget left (less the pack's reserve). The driver
    # writes the deadline to the millisecond, so rounding may put it up to 0.5 ms either side of the clock.
    ms = 1e-3
    assert (t0 + 300 - gpu_sitting.STOP_MARGIN_S - ms <= deadlines[0]
            <= time.time() + 300 - gpu_sitting.STOP_MARGIN_S + ms)
    assert abs(deadlines[1] - (t0 + 500 - gpu_sitting.PACK_RESERVE_S - gpu_sitting.STOP_MARGIN_S)) < 2


def test_log_tail_splits_progress_bars(tmp_path):
    log = tmp_path / "job.log"
    log.write_text("start\nrun:  50%| 1/2 [00:06, 6.1s/epoch]\rrun: 100%| 2/2 [00:12, 6.1s/epoch]\n\n")
    assert gpu_sitting.log_tail(str(log), 2) == ["run:  50%| 1/2 [00:06, 6.1s/epoch]",
                                                 "run: 100%| 2/2 [00:12, 6.1s/epoch]"]
    assert gpu_sitting.log_tail(str(tmp_path / "missing.log")) == []


def test_a_sitting_with_a_wrong_argument_runs_nothing_and_says_every_problem(tmp_path, capsys):
    # A mistyped job used to be found at its turn (after the jobs before it had spent the minutes), a budget
    # below the pack's reserve skipped every job, and a data folder not carried failed inside each job.
    root = tmp_path / "device"
    (root / "experiments").mkdir(parents=True)
    (root / "experiments" / "trainer.py").write_text(TRAINER)
    (root / "benchmarks").mkdir()
    (root / "benchmarks" / "bench_x.py").write_text("")
    ok = [(60.0, "experiments/trainer.py 0"), (60.0, "-m benchmarks.bench_x"), (60.0, "-m json.tool")]
    assert gpu_sitting.check_sitting(ok, root=str(root), data_dir=None, budget_s=200) == []
    bad = [(5.0, "experiments/trainer.py 0"), (60.0, "experiments/trainr.py"), (60.0, "-m benchmarks.bench_y")]
    problems = gpu_sitting.check_sitting(bad, root=str(root), data_dir=".gpu_data", budget_s=10)
    assert [p.split(":")[0] for p in problems] == [
        "--budget-s 10", "--data-dir .gpu_data", "--job 5 'experiments/trainer.py 0'", "--job 'experiments/trainr.py'",
        "--job '-m benchmarks.bench_y'"]
    out = tmp_path / "out"
    with pytest.raises(SystemExit, match="nothing was run"):
        gpu_sitting.main(["run", "--out", str(out), "--budget-s", "200", "--job", "60", "experiments/trainr.py",
                          "--root", str(root)])
    assert not out.exists() and not (root / "sitting").exists()


def test_job_specs_resolve_modules_scripts_and_benchmark_outputs():
    argv, label = gpu_sitting.job_argv("-m benchmarks.bench_train --repeats 5", data_dir="D")
    assert label == "bench_train"
    assert argv == ["-m", "benchmarks.bench_train", "--repeats", "5",
                    "--out", "benchmarks/results/gpu/train.json", "--data-dir", "D"]
    argv, label = gpu_sitting.job_argv("experiments/hlstm.py tables --data-dir X --seeds 1", data_dir="D")
    assert label == "hlstm_tables" and argv.count("--data-dir") == 1 and argv[-1] == "1"


def _pack(path, files: dict):
    with tarfile.open(path, "w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_unpack_adds_only_runs_finished_there_and_not_here(tmp_path):
    run = "runs/exp/ds/{}/{}"
    pack = tmp_path / "sitting.tar.gz"
    _pack(pack, {run.format("new", "config.json"): "{}", run.format("new", "results.json"): '{"auprc": 1}',
                 run.format("new", "metrics.jsonl"): "", run.format("dup", "results.json"): '{"auprc": 2}',
                 run.format("partial", "config.json"): "{}", run.format("partial", "results.json"): '{"auprc": 3}',
                 run.format("cut", "config.json"): "{}",
                 "benchmarks/results/gpu/bench_train.json": "{}", "sitting/manifest.json": "{}"})
    root = tmp_path / "here"
    (root / "runs/exp/ds/dup").mkdir(parents=True)
    (root / "runs/exp/ds/dup/results.json").write_text('{"auprc": 0}')  # finished here: kept as it is
    (root / "runs/exp/ds/partial/checkpoints/3").mkdir(parents=True)  # started here, finished there
    rep = gpu_sitting.unpack(str(pack), root=str(root), stamp="T")
    assert rep["added"] == ["runs/exp/ds/new", "runs/exp/ds/partial"]
    assert rep["skipped"] == ["runs/exp/ds/dup"] and rep["unfinished"] == ["runs/exp/ds/cut"]
    assert rep["moved"] == ["runs/exp/ds/partial.cpu-partial"]
    assert (root / "runs/exp/ds/partial.cpu-partial/checkpoints/3").is_dir()  # nothing lost
    assert json.loads((root / "runs/exp/ds/partial/results.json").read_text()) == {"auprc": 3}
    assert json.loads((root / "runs/exp/ds/dup/results.json").read_text()) == {"auprc": 0}
    assert not (root / "runs/exp/ds/cut").exists()
    assert (root / "benchmarks/results/gpu/bench_train.json").exists() and (root / "sitting/T/manifest.json").exists()


@pytest.mark.parametrize("name", ["../evil.py", "/etc/passwd", "hmljax/__init__.py", "runs/x/checkpoints/1/s"])
def test_unpack_refuses_a_member_outside_its_folders_before_writing_anything(tmp_path, name):
    pack = tmp_path / "p.tar.gz"
    _pack(pack, {"runs/exp/ds/ok/results.json": "{}", name: "x"})
    with pytest.raises(SystemExit, match="refusing member"):
        gpu_sitting.unpack(str(pack), root=str(tmp_path / "here"))
    assert not (tmp_path / "here").exists()


def test_unpack_names_a_file_that_is_not_a_pack(tmp_path):
    bad = tmp_path / "sitting.tar.gz"
    bad.write_bytes(b"not a tar")
    with pytest.raises(SystemExit, match="sitting.tar.gz: not a readable sitting pack"):
        gpu_sitting.unpack(str(bad), root=str(tmp_path))
