"""The experiment runners: resumable runs, tables with > 2 sigma bolding, figures; the benchmarks' torch twin."""

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "experiments"))


def test_chmcnn_reproduction_runs_skips_finished_seeds_and_names_the_whole_table_command(tmp_path):
    import reproduce_chmcnn

    out = tmp_path / "res" / "t.md"
    argv = ["--datasets", "synthetic", "--seeds", "1", "--runs", str(tmp_path / "runs"), "--out", str(out),
            "epochs=2", "hidden=16", "batch_size=64"]
    assert reproduce_chmcnn.main(argv) == 0
    md = out.read_text()
    # The header's command makes the whole table (every default dataset), whatever this sitting ran.
    assert "Command: `python experiments/reproduce_chmcnn.py --data-dir $HMLJAX_DATA --seeds 1 epochs=2 " in md
    assert "--datasets" not in md
    row = next(line for line in md.splitlines() if line.startswith("| synthetic | 1 | "))
    saved = json.loads((tmp_path / "res" / "t.json").read_text())["synthetic"]
    assert row.startswith(f"| synthetic | 1 | {saved['auprc'][0]:.3f} | ")  # one seed: no std
    mtime = (tmp_path / "runs" / "synthetic" / "s0" / "results.json").stat().st_mtime_ns
    assert reproduce_chmcnn.main([*argv[:3], "2", *argv[4:]]) == 0  # seed 0 is skipped, seed 1 trained
    assert (tmp_path / "runs" / "synthetic" / "s0" / "results.json").stat().st_mtime_ns == mtime
    two = json.loads((tmp_path / "res" / "t.json").read_text())["synthetic"]["auprc"]
    assert f"| synthetic | 2 | {np.mean(two):.3f} ± {np.std(two, ddof=1):.3f} |" in out.read_text()


def test_two_sigma_rule():
    import rare

    assert rare.significantly_greater((5.0, 0.1, 3), (4.0, 0.2, 3))  # 1.0 > 2 * 0.2
    assert not rare.significantly_greater((5.0, 0.6, 3), (4.0, 0.2, 3))  # 1.0 < 2 * 0.6
    assert not rare.significantly_greater((5.0, 0.0, 1), (4.0, 0.0, 3))  # one seed: no claim
    # A one-seed rival has no spread: held against the claimant's own (it used to veto every bold).
    assert rare.significantly_greater((5.0, 0.3, 3), (4.0, 0.0, 1))  # 1.0 > 2 * 0.3
    assert not rare.significantly_greater((5.0, 0.6, 3), (4.0, 0.0, 1))  # 1.0 < 2 * 0.6


def test_beats_baseline_counts_datasets_with_both_runs():
    import rare

    summary = {"a": {"Baseline": {"F1": (4.0, 0.1, 3)}, "GMU": {"F1": (5.0, 0.1, 3)}, "bBMA": {"F1": (3.0, 0.1, 3)}},
               "b": {"Baseline": {"F1": (4.0, 0.1, 1)}, "GMU": {"F1": (4.5, 0.0, 1)}, "bBMA": {"F1": None}},
               "c": {"Baseline": {"F1": None}, "GMU": {"F1": (9.0, 0.1, 3)}, "bBMA": {"F1": None}}}
    assert sorted(rare.beats_baseline(summary)) == [("GMU", 2, 1, 2), ("bBMA", 0, 0, 1)]


@pytest.mark.slow  # ~1 min: the runner's skip/resume logic is covered by the reproduction and runner tests
def test_rare_table1_runs_resumes_and_writes_outputs(tmp_path):
    cmd = [sys.executable, os.path.join(ROOT, "experiments", "rare.py"), "table1", "--datasets", "synthetic",
           "--seeds", "1", "--override", "epochs=1", "hidden=16", "batch_size=64",
           "--runs", str(tmp_path / "runs"), "--results", str(tmp_path / "res"), "--workers", "1",
           "--other-runs", str(tmp_path / "other")]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "10 runs to do" in out.stdout
    # --override makes its own experiment: its table is named after the overrides.
    tag = "__epochs=1_hidden=16_batch_size=64"
    assert (tmp_path / "runs" / f"table1{tag}" / "synthetic" / "None" / "s0" / "results.json").exists()
    md = (tmp_path / "res" / f"rare_table1{tag}.md").read_text()
    for method in ("None", "LPROS", "HROS-PD", "LPROS (train rows, code)", "HROS-PD (train rows, code)",
                   "w0=0.25 (code)", "w0=0.50 (paper)"):
        assert f"| synthetic | {method} | 1 |" in md
    summary = json.loads((tmp_path / "res" / f"rare_table1{tag}.json").read_text())
    assert summary["synthetic"]["None"]["n"] == 1
    assert (tmp_path / "res" / f"rare_table1{tag}.png").exists()
    again = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert "0 runs to do" in again.stdout  # finished runs are skipped
    # Table 7 shares Table 1's None, LPROS and w0 = 0.25 (code) runs: only its two LPROS + weights rows are new.
    t7 = subprocess.run([*cmd[:2], "table7", *cmd[3:]], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert t7.returncode == 0, t7.stderr[-3000:]
    assert "table7: 2 runs to do" in t7.stdout
    md7 = (tmp_path / "res" / f"rare_table7{tag}.md").read_text()
    for method in ("None", "LPROS", "w0=0.25 (code)", "LPROS + w0=0.25 (code, weights from train)",
                   "LPROS + w0=0.25 (code, weights on resampled rows)"):
        assert f"| synthetic | {method} | 1 |" in md7


def test_torch_reference_matches_hmljax():
    torch = pytest.importorskip("torch", reason="torch is a benchmark-only dependency: pip install -e '.[bench]'")
    import jax
    import jax.numpy as jnp

    sys.path.insert(0, ROOT)
    from benchmarks import _torch_ref as T
    from hmljax.constraints import constraint_graph
    from hmljax.data import load_dataset
    from hmljax.losses import mc_loss
    from hmljax.models import ChmcnnMLP

    h = load_dataset("synthetic").hierarchy
    rng = np.random.default_rng(0)
    Y = (rng.random((6, h.num_nodes)) < 0.3).astype(np.float32)
    Y = (Y @ np.asarray(h.ancestry, np.float32).T > 0).astype(np.float32)  # close under ancestors
    x = rng.standard_normal((6, 5)).astype(np.float32)
    model = ChmcnnMLP(hidden=8, num_outputs=h.num_nodes, dropout=0.0)
    params = model.init({"params": jax.random.key(0)}, jnp.asarray(x), train=False)["params"]
    tm = T.mlp(5, 8, h.num_nodes, 0.0)
    T.load_flax_params(tm, params)
    # Against torch's float32: on GPU and TPU, JAX's default precision would make the matmuls TF32 or bf16.
    with jax.default_matmul_precision("highest"):
        logits = model.apply({"params": params}, jnp.asarray(x), train=False)
        mask = np.asarray(h.evaluated)
        ours = float(mc_loss(logits, jnp.asarray(Y), constraint_graph(h), where=mask).sum() / (6 * mask.sum()))
    np.testing.assert_allclose(tm(torch.from_numpy(x)).detach().numpy(), logits, rtol=1e-5, atol=1e-6)
    theirs = float(T.mc_loss(tm(torch.from_numpy(x)), torch.from_numpy(Y),
                             torch.from_numpy(np.asarray(h.ancestry, np.float32)), torch.from_numpy(mask)))
    assert ours == pytest.approx(theirs, rel=1e-5)


@pytest.mark.slow  # the profiler's grouping; CI time goes to behaviour the default run must cover
def test_step_profile_groups_ops_by_scope():
    """The profile behind the benchmark targets: every op of a real train step lands in a named group."""
    import jax
    import jax.numpy as jnp

    sys.path.insert(0, ROOT)
    from benchmarks.profile_step import GROUPS, entry_ops, group_of, jax_profile
    from hmljax.constraints import constraint_graph
    from hmljax.data import load_dataset
    from hmljax.models import ChmcnnMLP
    from hmljax.training import init_state, make_optimizer, make_train_step

    ds = load_dataset("synthetic")
    h = ds.hierarchy
    X, Y = ds.split("train")
    x, y = jnp.asarray(X[:4], jnp.float32), jnp.asarray(Y[:4], jnp.float32)
    opt = make_optimizer(lr=1e-3, weight_decay=1e-5)
    model = ChmcnnMLP(hidden=16, num_outputs=h.num_nodes, dropout=0.5)
    state = init_state(model, opt, x.shape[1], key=jax.random.key(0))
    step = jax.jit(make_train_step(model, opt, ancestry=constraint_graph(h), evaluated=h.evaluated))
    rest = (x, y, jnp.ones(4, bool), jax.random.key(1))
    ops = entry_ops(step.lower(state, *rest).compile().as_text())
    groups = {group_of(n, m) for n, m in ops.items()}
    # The train step's named scopes reach XLA's metadata: the update and both passes are told apart.
    assert {"optimizer", "forward", "backward", "loss"} <= groups, groups
    assert group_of("fusion.1", "jit(step)/transpose(jvp(loss))/vmap()/mul") == "loss"
    assert group_of("fusion.2", "jit(step)/jvp(loss)/vmap()/max") == "loss"
    assert group_of("fusion.3", "jit(step)/optimizer/add") == "optimizer"
    assert group_of("fusion.4", "jit(step)/transpose(jvp(ChmcnnMLP))/dense_1/dot_general") == "backward"
    assert group_of("while.1", "jit(step)/jvp(ChmcnnMLP)/Dropout_0/jit(_bernoulli)/while") == "dropout rng"
    prof = jax_profile(step, (state, *rest), steps=3)
    assert set(prof["groups_us"]) == set(GROUPS) == set(prof["groups_us_range"])
    assert all(lo <= hi for lo, hi in prof["groups_us_range"].values())
    assert prof["profiled_us"] > 0 and prof["groups_us"]["optimizer"] > 0
    assert prof["top_ops"] and all(t["group"] in GROUPS for t in prof["top_ops"])


def test_methods_filter_orders_runs_but_not_the_table():
    """``--methods`` picks and orders the runs to train; the table still has every method and dataset."""
    import argparse

    import rare

    args = argparse.Namespace(datasets=["spo_FUN"], methods=["GMU", "Baseline"], ensemble=10, sizes=[1])
    exp = rare.experiment("table2", args)
    assert list(exp) == ["spo_FUN"] and list(exp["spo_FUN"]) == ["GMU", "Baseline"]
    cells = rare._table_cells("table2", args)
    assert list(cells) == rare.FUN and len(cells["cellcycle_FUN"]) == 5
    with pytest.raises(SystemExit, match="not in table2"):
        rare.experiment("table2", argparse.Namespace(**{**vars(args), "methods": ["GMU", "Focal"]}))


def test_parallel_runner_trains_reports_failures_and_counts_epochs(tmp_path, capsys, monkeypatch):
    """Two worker processes: every good run finishes (on_done called), a bad one is reported, not fatal."""
    monkeypatch.delenv("XLA_PYTHON_CLIENT_PREALLOCATE", raising=False)  # restored after the test

    import _runner

    from hmljax.training import TrainConfig

    good = [(TrainConfig(dataset="synthetic", seed=s, epochs=2, hidden=16, batch_size=64).to_dict(),
             str(tmp_path / f"s{s}")) for s in range(2)]
    bad = ({**good[0][0], "dataset": "spo_FUN", "epochs": 2, "data_dir": str(tmp_path / "no-data")},
           str(tmp_path / "bad"))
    seen = []
    failures = _runner.run_tasks([*good, bad], workers=2, on_done=seen.append, poll_s=0.2)
    assert sorted(seen) == sorted(d for _, d in good)
    assert [d for d, _ in failures] == [bad[1]]
    for _, d in good:
        assert _runner._epochs_logged(d) == 2 and os.path.exists(os.path.join(d, "results.json"))
    assert _runner._epochs_logged(str(tmp_path / "nowhere")) == 0
    assert "6/6" in capsys.readouterr().err  # the bar ends at every planned epoch, the bad run's included
    # The workers inherit this: on one GPU, each would otherwise preallocate 75% of its memory.
    assert os.environ["XLA_PYTHON_CLIENT_PREALLOCATE"] == "false"


def test_cpu_slots_split_the_usable_cpus_into_disjoint_equal_sets():
    import _runner

    assert _runner.cpu_slots(2, cpus={0, 1}) == [[0], [1]]
    assert _runner.cpu_slots(3, cpus=range(8)) == [[0, 1], [2, 3], [4, 5]]  # the remainder is left out
    assert _runner.cpu_slots(8, cpus={4, 2, 6, 0, 1, 3, 5, 7}) == [[i] for i in range(8)]
    assert _runner.cpu_slots(1, cpus={0, 1}) is None  # one run gets every core
    assert _runner.cpu_slots(3, cpus={0, 1}) is None  # more workers than CPUs: no pinning


def _affinity_of_every_thread(alive_dir, _):
    """A task: the (pid, thread affinities) of the worker running it. The first two tasks each wait until two
    workers are alive at once, so that they must hold different slots (a pool under load may otherwise run the
    tasks one worker after another, each taking the slot the last one freed)."""
    import time

    import jax.numpy as jnp

    float(jnp.ones((256, 256)).sum())  # jax's CPU client and its thread pool exist from here on
    open(os.path.join(alive_dir, str(os.getpid())), "w").close()
    deadline = time.monotonic() + 120
    while len(os.listdir(alive_dir)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    return os.getpid(), sorted({frozenset(os.sched_getaffinity(int(t))) for t in os.listdir("/proc/self/task")},
                               key=sorted)


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2,
                    reason="needs Linux and at least 2 usable CPUs")
def test_pinned_workers_each_run_every_thread_on_their_own_cpus(tmp_path):
    """What run_tasks does with workers=2: each worker claims a slot, and every thread it has, jax's pool
    included, runs on that slot's CPUs only; two workers alive at once hold different slots; a worker started
    in place of a finished one takes a free slot."""
    import concurrent.futures as cf
    import functools
    import multiprocessing

    import _runner

    slots = _runner.cpu_slots(2)
    (tmp_path / "slots").mkdir()
    (tmp_path / "alive").mkdir()
    ctx = multiprocessing.get_context("spawn")
    seen = []
    with cf.ProcessPoolExecutor(2, mp_context=ctx, max_tasks_per_child=1, initializer=_runner.pin_worker,
                                initargs=(str(tmp_path / "slots"), slots)) as pool:
        task = functools.partial(_affinity_of_every_thread, str(tmp_path / "alive"))
        for pid, masks in pool.map(task, range(4)):
            assert len(masks) == 1, masks  # one mask for all of the worker's threads
            seen.append((pid, sorted(masks[0])))
    assert len({pid for pid, _ in seen}) == 4  # a fresh process per task
    assert all(cpus in slots for _, cpus in seen)
    assert seen[0][1] != seen[1][1]  # the first two ran at the same time, so on different slots


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="needs Linux")
def test_a_worker_finding_every_slot_taken_runs_unpinned_and_says_so(tmp_path, capsys):
    import fcntl

    import _runner

    before = os.sched_getaffinity(0)
    with open(tmp_path / "0", "a") as held:  # another worker's claim on the only slot
        fcntl.flock(held, fcntl.LOCK_EX)
        assert _runner.pin_worker(str(tmp_path), [sorted(before)[:1]], wait_s=0.2) is None
    assert os.sched_getaffinity(0) == before
    assert "no CPU slot came free in 0.2 s; running unpinned" in capsys.readouterr().out


def test_a_run_another_process_trains_is_skipped_not_failed(tmp_path, capsys):
    """The same command started again (to use another core) leaves the locked run to its owner and
    trains the next; neither a failure nor a finished run (on_done) is reported for it."""
    import _runner

    from hmljax.training import TrainConfig, run_lock

    tasks = [(TrainConfig(dataset="synthetic", seed=s, epochs=1, hidden=8, batch_size=64).to_dict(),
              str(tmp_path / f"s{s}")) for s in range(2)]
    os.makedirs(tasks[0][1])
    seen = []
    with run_lock(tasks[0][1]):  # as if the first command held it
        failures = _runner.run_tasks(tasks, on_done=seen.append)
    assert failures == [] and seen == [tasks[1][1]]
    assert not os.path.exists(os.path.join(tasks[0][1], "metrics.jsonl"))
    assert f"skipped {tasks[0][1]}: another process is training it" in capsys.readouterr().out


def test_a_run_paused_at_its_deadline_is_reported_not_failed_and_the_same_command_finishes_it(
        tmp_path, capsys, monkeypatch):
    import _runner

    from hmljax.training import STOP_BY_ENV, TrainConfig

    task = (TrainConfig(dataset="synthetic", epochs=2, hidden=8, batch_size=64).to_dict(), str(tmp_path / "r"))
    seen = []
    monkeypatch.setenv(STOP_BY_ENV, "1")  # long past
    assert _runner.run_tasks([task], on_done=seen.append) == [] and seen == []
    assert (f"paused {task[1]} at epoch 1 of 2, before its deadline; the same command resumes it"
            in capsys.readouterr().out)
    monkeypatch.delenv(STOP_BY_ENV)
    assert _runner.run_tasks([task], on_done=seen.append) == [] and seen == [task[1]]
    assert os.path.exists(os.path.join(task[1], "results.json"))


RUNNER_SCRIPT = """
import sys
sys.path.insert(0, {experiments!r})
import _runner
from hmljax.training import TrainConfig


def main():
    tasks = [(TrainConfig(dataset="synthetic", seed=s, epochs=100000, hidden=8, batch_size=64,
                          checkpoint_every=100000, checkpoint_minutes=0).to_dict(), {root!r} + f"/r{{s}}")
             for s in range(3)]
    print("failures", _runner.run_tasks(tasks, workers=2, poll_s=0.2), flush=True)


if __name__ == "__main__":
    main()
"""


@pytest.mark.skipif(sys.platform == "win32", reason="SIGTERM")
def test_sigterm_to_a_parallel_table_pauses_its_runs_and_starts_no_other(tmp_path):
    """``kill PID`` of a table's runner (not its process group): the workers get it too, their runs stop at a
    checkpoint after the epoch in flight, the third run never starts, and the runner returns, leaving no
    worker behind."""
    import signal

    script = tmp_path / "table.py"
    script.write_text(RUNNER_SCRIPT.format(experiments=os.path.join(ROOT, "experiments"), root=str(tmp_path)))
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    logs = [tmp_path / f"r{s}" / "metrics.jsonl" for s in range(2)]
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if all(p.exists() and len(p.read_text().splitlines()) >= 2 for p in logs):
            break
        time.sleep(0.1)
    assert proc.poll() is None, proc.stdout.read().decode()[-2000:]
    proc.send_signal(signal.SIGTERM)
    out = proc.communicate(timeout=120)[0].decode()
    assert proc.returncode == 0, out[-2000:]
    for s in range(2):
        steps = os.listdir(tmp_path / f"r{s}" / "checkpoints")
        assert len(steps) == 1 and f"paused {tmp_path / f'r{s}'} at epoch {steps[0]} of 100000, on SIGTERM" in out
        assert not (tmp_path / f"r{s}" / "results.json").exists()
    assert f"not started {tmp_path / 'r2'}: stopped on SIGTERM" in out and not (tmp_path / "r2").exists()
    assert "failures []" in out
    gone = time.time() + 20  # the group empties: no orphaned worker (multiprocessing's tracker exits last)
    while time.time() < gone:
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.2)
    with pytest.raises(ProcessLookupError):
        os.killpg(proc.pid, 0)


def test_run_dir_of_another_config_is_refused_and_overrides_get_their_own_dirs(tmp_path):
    import argparse

    import rare

    args = argparse.Namespace(runs=str(tmp_path / "rare"), override=[], datasets=None, methods=None, ensemble=10,
                              data_dir=None, sizes=[1], other_runs=[str(tmp_path / "chmcnn")])
    # A finished run of the same config in another folder (C-HMCNN's reproduction) is used, not retrained;
    # one still training there is not. The finished one was trained on another machine: its data_dir is
    # missing here, and where the data lives is no part of a run's identity.
    plain = rare._config("spo_GO", [], 0, args)
    for seed, files in ((0, ("config.json", "results.json")), (1, ("config.json",))):
        done = tmp_path / "chmcnn" / "spo_GO" / f"s{seed}"
        done.mkdir(parents=True)
        saved = plain.replace(seed=seed, data_dir=str(tmp_path / "another_machine" / "data"))
        for f in files:
            (done / f).write_text(json.dumps({"config": saved.to_dict()}))
    assert rare.run_dir_for("table5", "spo_GO", "None", 0, plain, args) == str(tmp_path / "chmcnn" / "spo_GO" / "s0")
    plain1 = plain.replace(seed=1)
    assert rare.run_dir_for("table5", "spo_GO", "None", 1, plain1, args) == os.path.join(
        str(tmp_path / "rare"), "table5", "spo_GO", "None", "s1")
    cfg = rare._config("spo_FUN", ["weights=code", "w0=0.25", "reduction=sum", "ensemble=10"], 0, args)
    own = os.path.join(str(tmp_path / "rare"), "table2", "spo_FUN", "Baseline", "s0")
    os.makedirs(own)
    old = cfg.replace(reduction="mean").to_dict()
    with open(os.path.join(own, "config.json"), "w") as fh:
        json.dump({"config": old}, fh)
    with pytest.raises(SystemExit, match="reduction: saved 'mean', wanted 'sum'"):
        rare.run_dir_for("table2", "spo_FUN", "Baseline", 0, cfg, args)
    # With --override the experiment is another one: its runs and table live apart.
    args.override = ["reduction=mean"]
    assert rare._tag("table2", args) == "table2__reduction=mean"
    mean_cfg = rare._config("spo_FUN", ["weights=code", "w0=0.25", "reduction=sum", "ensemble=10"], 0, args)
    assert mean_cfg.reduction == "mean"
    assert "table2__reduction=mean" in rare.run_dir_for("table2", "spo_FUN", "Baseline", 0, mean_cfg, args)


@pytest.mark.parametrize("name", ["fig3", "fig6", "table8", "appg", "table6"])
def test_figure_experiments_render_partial_results(name, tmp_path, monkeypatch):
    """Tables and figures come out of partly run experiments: missing cells read n = 0, never a fake value."""
    import argparse

    import rare

    pytest.importorskip("matplotlib")
    args = argparse.Namespace(datasets=None, methods=None, ensemble=10, sizes=[1, 2, 3], override=[], seeds=1,
                              runs=str(tmp_path / "runs"), results=str(tmp_path / "res"), data_dir=None)
    cells = rare._table_cells(name, args)
    first_d = next(iter(cells))
    done = list(cells[first_d])[::2]  # every other setting of the first dataset has one finished run

    def row(i):
        # Settings 0, 4, ... were trained with jit_train (their config records compiler options), 2, 6, ... before.
        return {"test": {key: 0.01 * (i + 1) for _, key in rare.METRICS}, "median_epoch_seconds": 0.5 + i,
                "peak_memory_bytes": {"host_max_rss": (100 + i) * 2**20},
                "machine": {"compiler_options": {}} if i % 4 == 0 else {}}

    monkeypatch.setattr(rare, "collect", lambda n, a: {d: {m: [row(i)] if d == first_d and m in done else []
                                                           for i, m in enumerate(ms)} for d, ms in cells.items()})
    rare.write_outputs(name, args, echo=False)
    md = (tmp_path / "res" / f"rare_{name}.md").read_text()
    assert (tmp_path / "res" / f"rare_{name}.png").stat().st_size > 0
    summary = json.loads((tmp_path / "res" / f"rare_{name}.json").read_text())
    for i, m in enumerate(cells[first_d]):
        assert summary[first_d][m]["n"] == (1 if m in done else 0)
        assert f"| {first_d} | {m} | {summary[first_d][m]['n']} |" in md
        if m in done:
            assert summary[first_d][m]["F1"][0] == pytest.approx(i + 1)
    if name == "table6":  # the paper's GO values sit beside ours, as a row of their own
        assert f"| {first_d} | GMU (paper, E = 10, 3 seeds) | | 3.79 | 5.04 | 3.69 | 18.89 | 39.56 |" in md
    if name == "table8":
        assert summary[first_d][done[0]]["median_epoch_s"] == pytest.approx(0.5)
        assert "| 0.500 | 100 |" in md
        assert "| 2.500 † | 102 |" in md and "† Trained before commit 70ad98c" in md  # timed with plain jax.jit


def test_focal_tables_with_mc_dropout_in_place_of_the_ensemble_are_their_own_experiment():
    import argparse

    import rare

    args = argparse.Namespace(datasets=["eisen_GO"], methods=None, ensemble=10, override=[], mc_passes=10)
    rows = rare.experiment("table6", args)["eisen_GO"]
    assert list(rows) == ["Baseline", "bBMA", "GMU", "Epistemic JS", "Epistemic KL"]
    assert all("mc_passes=10" in o and not any(x.startswith("ensemble=") for x in o) for o in rows.values())
    assert rare._tag("table6", args) == "table6__mc_passes=10"
    assert "HROS-PD" in rare.experiment("table5", args)["eisen_GO"]  # on GO over the DAG's paths


def test_adaptive_hierarchy_table_from_partial_runs(tmp_path, monkeypatch):
    """The adaptive sampler on hierarchies: C-HMCNN's protocol (seeds, no folds), rows per arm, a sign count."""
    import argparse

    import adaptive_batch as ab

    args = argparse.Namespace(experiment="hierarchy", datasets=["cellcycle_FUN", "spo_FUN"], models=None, folds=5,
                              seeds=2, seed=0, epochs=100, clean=False, runs=str(tmp_path / "runs"),
                              results=str(tmp_path), override=[], data_dir=None)
    cells = ab.cells("hierarchy", args)
    assert len(cells) == 8 and {c[2] for c in cells} == {"uniform", "adaptive"}
    cfg = ab.config("spo_FUN", cells[-1][3], cells[-1][4], args)
    assert (cfg.method, cfg.sampler, cfg.seed, cfg.folds) == ("chmcnn", "adaptive", 1, 0)
    assert ab.run_dir("spo_FUN", "chmcnn", "adaptive", 1, args).endswith("hierarchy/spo_FUN/adaptive-s1")

    def res(v):
        return {"test": {k: v for k, _ in ab.HIER_METRICS}, "median_epoch_seconds": 1.0, "machine": {}}

    monkeypatch.setattr(ab, "collect", lambda n, a: {
        ("cellcycle_FUN", "chmcnn"): {"uniform": [res(0.01), res(0.03)], "adaptive": [res(0.05), res(0.05)]},
        ("spo_FUN", "chmcnn"): {"uniform": [res(0.02)]}})
    md = ab.write_hierarchy(args)
    assert "hierarchy --data-dir ../shared/data --datasets cellcycle_FUN spo_FUN --seeds 2`" in md
    assert "| cellcycle_FUN | uniform | 2 | 2.00 ± 1.41 |" in md and "| spo_FUN | uniform | 1 | 2.00 |" in md
    assert "| F1 | 1/1 | +3.00 |" in md  # only datasets with both arms are compared
    assert (tmp_path / "adaptive_hierarchy.md").exists()


def test_adaptive_tables_keep_the_rows_of_earlier_commands(tmp_path):
    """A table2 command on one dataset rebuilds the outputs with every finished run of the experiment (the
    default datasets and the one named), so it adds its rows instead of replacing the table; its header
    names the command that makes them all."""
    import json

    import adaptive_batch as ab

    base = ["--runs", str(tmp_path / "runs"), "--results", str(tmp_path), "--models", "mlp", "--folds", "2"]
    finished = {"emotions": ab.build_parser().parse_args(["table2", *base]),
                "flags": ab.build_parser().parse_args(["table2", "--datasets", "flags", *base])}
    for d, args in finished.items():
        for arm in ("random", "adaptive"):
            for k in range(2):
                rd = ab.run_dir(d, "mlp", arm, k, args)
                os.makedirs(rd)
                for name, body in (("results.json", {"test": {m: 0.5 for m, _, _ in ab.METRICS}, "best_epoch": 3,
                                                      "median_epoch_seconds": 0.1}),
                                   ("config.json", {"machine": {}})):
                    with open(os.path.join(rd, name), "w") as fh:
                        json.dump(body, fh)
                open(os.path.join(rd, "metrics.jsonl"), "w").close()
    args = ab.build_parser().parse_args(["table2", "--datasets", "yeast", *base])  # no yeast run has finished
    assert sorted(ab.collect("table2", args)) == [("emotions", "mlp")]  # a default dataset's rows stay
    named = ab.build_parser().parse_args(["table2", "--datasets", "flags", *base])
    assert sorted(ab.collect("table2", named)) == [("emotions", "mlp"), ("flags", "mlp")]
    assert ab.full_command(named, ["emotions", "flags"]).startswith(
        "python experiments/adaptive_batch.py table2 --data-dir ../shared/data --datasets emotions flags --models mlp")
    assert " --datasets " not in ab.full_command(named, ab.DEFAULT)
    # hierarchy: seeds, no folds; a command with fewer seeds keeps the rows of every seed found
    h3 = ab.build_parser().parse_args(["hierarchy", "--seeds", "3", *base])
    for k in range(3):
        rd = ab.run_dir("spo_FUN", "chmcnn", "uniform", k, h3)
        os.makedirs(rd)
        for name in ("results.json", "config.json", "metrics.jsonl"):
            with open(os.path.join(rd, name), "w") as fh:
                fh.write("{}" if name.endswith(".json") else "")
    h1 = ab.build_parser().parse_args(["hierarchy", "--datasets", "cellcycle_FUN", *base])
    assert [len(rs) for rs in ab.collect("hierarchy", h1)[("spo_FUN", "chmcnn")].values()] == [3]


def test_dropout_savings_against_the_ensemble():
    import rare

    def cell(f1, s, rss, n=1):
        return {"F1": (f1, 0.0, n), "median_epoch_s": s, "host_max_rss_MiB": rss, "device_peak_MiB": None, "n": n}

    summary = {"a": {"Ensemble E=10": cell(8.0, 4.0, 800.0), "MC dropout (10 passes)": cell(6.0, 1.0, 200.0)},
               "b": {"Ensemble E=10": cell(8.0, 4.0, 800.0), "MC dropout (10 passes)": {"n": 0, "F1": None}}}
    cut = rare.dropout_savings(summary, 10)
    assert list(cut) == ["a"]  # b's dropout run is not finished
    assert cut["a"] == pytest.approx({"time": 75.0, "memory": 75.0, "F1": 25.0})


def test_appg_bolds_focal_rows_above_both_baselines(tmp_path, monkeypatch):
    """Table 9's rule: a focal method is bold when > 2 sigma above "No weighting" and "Baseline", whatever the
    other focal rows do; the baselines themselves are never bold."""
    import argparse

    import rare

    args = argparse.Namespace(datasets=["Enron_corr"], methods=None, ensemble=10, sizes=[], override=[], seeds=3,
                              runs=str(tmp_path / "runs"), results=str(tmp_path / "res"), data_dir=None)
    f1 = {"No weighting": 10.0, "Baseline": 12.0, "bBMA": 15.0, "GMU": 16.0, "Epistemic JS": 12.01,
          "Epistemic KL": 12.0}

    def rows(v):
        return [{"test": {key: (v + 0.01 * i) / 100 for _, key in rare.METRICS}, "median_epoch_seconds": 1.0,
                 "peak_memory_bytes": {}} for i in range(3)]

    cells = rare._table_cells("appg", args)
    monkeypatch.setattr(rare, "collect", lambda n, a: {d: {m: rows(f1[m]) if d == "Enron_corr" else []
                                                           for m in ms} for d, ms in cells.items()})
    rare.write_outputs("appg", args, echo=False)
    md = (tmp_path / "res" / "rare_appg.md").read_text()
    bold = {m for m in f1 if f"| Enron_corr | {m} | 3 | **" in md}
    assert bold == {"bBMA", "GMU"}  # bBMA is below GMU but above both baselines


def test_plan_reports_resume_points_and_estimates_from_logged_epoch_times(tmp_path):
    from _runner import plan

    from hmljax.training import TrainConfig

    def cfg(**kw):
        return TrainConfig(dataset="synthetic", epochs=50, **kw).to_dict()

    here = {"backend": "cpu", "cpus": 2, "compiler_options": {"some_option": True}}

    def finished(name, epoch_s, **machine):
        run = tmp_path / "runs" / name
        run.mkdir(parents=True)
        # weights do not change the cost
        (run / "config.json").write_text(json.dumps({"config": cfg(weights="code", w0=0.25), "machine": machine}))
        (run / "metrics.jsonl").write_text("".join(json.dumps({"epoch": i + 1, "epoch_s": t}) + "\n"
                                                   for i, t in enumerate(epoch_s)))

    # The first epoch includes compilation and is left out: the median of 2, 2 and 4 s is 2 s.
    finished("done", [30.0, 2.0, 2.0, 4.0], **here)
    # Runs by older code (no compiler options recorded) or on another machine are ignored while the
    # kind has runs from this one.
    finished("old", [30.0, 9.0, 9.0, 9.0, 9.0], backend="cpu", cpus=2)
    finished("bigger", [30.0, 7.0, 7.0, 7.0, 7.0], **{**here, "cpus": 16})
    half = tmp_path / "runs" / "half"
    (half / "checkpoints" / "20").mkdir(parents=True)
    (half / "checkpoints" / "30.orbax-checkpoint-tmp-1").mkdir()  # an unfinished save does not count
    new, mc = tmp_path / "runs" / "new", tmp_path / "runs" / "mc"
    tasks = [(cfg(), str(half)), (cfg(ensemble=10), str(new)), (cfg(mc_passes=10), str(mc))]
    text = plan(tasks, timing_roots=[str(tmp_path / "runs")], finished=3, workers=2, machine=here)
    assert text.startswith("3 runs finished, 3 to do")
    assert f"| {half} | 20 | 30 | 2.00 | 0.02 |" in text  # resumes at its checkpoint: 30 epochs x 2 s
    # No E = 10 run measured yet: 10 x the one network's 2 s, for 50 epochs
    assert f"| {new} | 0 | 50 | 20.00 (from E=1) | 0.28 |" in text
    assert f"| {mc} | 0 | 50 | ? | ? |" in text  # MC dropout is another kind, not scaled from anything
    assert ("Estimated 0.3 hours for 2 runs (1 scaled in proportion to E from another ensemble size of their "
            "kind); 1 runs have no measured epoch time") in text
    # With no run from this machine, every run's times count: the median of 2, 2, 4, 4 x 7 and 4 x 9 s
    other = plan(tasks[:1], timing_roots=[str(tmp_path / "runs")], machine={**here, "cpus": 4})
    assert f"| {half} | 20 | 30 | 7.00 | 0.06 |" in other
    # A started run is priced by its own latest RECENT_EPOCHS epochs: early ones spent paused or beside a
    # benchmark (100 s) do not price the rest, which will run as the latest did (3 s).
    from _runner import RECENT_EPOCHS

    secs = [30.0] + [100.0] * 2 * RECENT_EPOCHS + [3.0] * RECENT_EPOCHS
    (half / "metrics.jsonl").write_text("".join(json.dumps({"epoch": i + 1, "epoch_s": t}) + "\n"
                                                for i, t in enumerate(secs)))
    assert f"| {half} | 20 | 30 | 3.00 | 0.03 |" in plan(tasks[:1], timing_roots=[str(tmp_path / "runs")], machine=here)


def _timed_run(root, name, saved, epoch_s, machine):
    """A finished run under ``root`` with a saved config and its epoch log (the first epoch, the compile, 99 s)."""
    run = root / name
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"config": saved, "machine": machine}))
    (run / "metrics.jsonl").write_text("".join(json.dumps({"epoch": i + 1, "epoch_s": t}) + "\n"
                                               for i, t in enumerate([99.0] + epoch_s)))


def test_plan_keeps_hros_rules_apart_and_reads_old_runs_as_the_paths_rule(tmp_path):
    from _runner import plan

    from hmljax.training import TrainConfig

    here = {"backend": "cpu", "cpus": 2, "compiler_options": {}}

    def timed(name, saved, epoch_s):
        _timed_run(tmp_path / "runs", name, saved, epoch_s, here)

    base = TrainConfig(dataset="synthetic", epochs=10, resample="hros_pd")
    code = base.resolved().to_dict()
    assert code["hros_rule"] == "code"
    timed("code", code, [3.0, 3.0])
    # saved before the key existed: HROS-PD then was the paths rule (its copies: 2-3x the code rule's on GO)
    timed("old", {k: v for k, v in code.items() if k != "hros_rule"}, [7.0, 7.0])
    tasks = [(base.to_dict(), str(tmp_path / "new_code")),
             (TrainConfig(dataset="synthetic", epochs=10, resample="hros_pd", hros_rule="paths").to_dict(),
              str(tmp_path / "new_paths"))]
    text = plan(tasks, timing_roots=[str(tmp_path / "runs")], machine=here, ratios={})
    assert f"| {tasks[0][1]} | 0 | 10 | 3.00 | 0.01 |" in text
    assert f"| {tasks[1][1]} | 0 | 10 | 7.00 | 0.02 |" in text


def test_plan_prefers_runs_from_the_same_cpu_model(tmp_path):
    from _runner import plan

    from hmljax.training import TrainConfig

    c = TrainConfig(dataset="synthetic", epochs=10).to_dict()
    keys = {"backend": "cpu", "cpus": 2, "compiler_options": {}}
    _timed_run(tmp_path / "runs", "epyc", c, [8.0, 8.0], {**keys, "cpu_model": "AMD EPYC"})
    _timed_run(tmp_path / "runs", "older", c, [6.0, 6.0], keys)  # recorded before runs named their CPU
    _timed_run(tmp_path / "runs", "xeon", c, [3.0, 3.0], {**keys, "cpu_model": "Intel Xeon"})
    task = [(c, str(tmp_path / "new"))]

    def per_epoch(machine):
        row = next(ln for ln in plan(task, timing_roots=[str(tmp_path / "runs")], machine=machine,
                                     ratios={}).splitlines() if ln.startswith(f"| {task[0][1]} |"))
        return row.split(" | ")[3]

    assert per_epoch({**keys, "cpu_model": "Intel Xeon"}) == "3.00"
    assert per_epoch({**keys, "cpu_model": "AMD EPYC"}) == "8.00"
    assert per_epoch({**keys, "cpu_model": "Other"}) == "6.00"  # no run of its model: its machine's, all of them
    assert per_epoch({**keys, "cpus": 16, "cpu_model": "Intel Xeon"}) == "6.00"  # another machine: every run
    # A GPU run's epochs (300x faster on seq_GO) never price a CPU run, nor the reverse.
    _timed_run(tmp_path / "runs", "h200", c, [0.01, 0.01], {**keys, "backend": "gpu", "cpus": 16})
    assert per_epoch({**keys, "cpus": 16, "cpu_model": "Intel Xeon"}) == "6.00"
    assert per_epoch({**keys, "backend": "gpu", "cpus": 16}) == "0.01"


def test_plan_scales_an_untimed_dataset_by_chmcnn_ratio_within_its_family(tmp_path):
    from _runner import plan

    from hmljax.training import TrainConfig

    here = {"backend": "cpu", "cpus": 2, "compiler_options": {}}

    def cfg(dataset, **kw):
        return TrainConfig(dataset=dataset, epochs=10, **kw).to_dict()

    def timed(name, c, epoch_s):
        _timed_run(tmp_path / "runs", name, c, epoch_s, here)

    timed("a", cfg("a_FUN", method="hlstm"), [10.0, 10.0])
    timed("b", cfg("b_FUN", method="hlstm"), [30.0, 30.0])
    ratios = {"a_FUN": 1.0, "b_FUN": 2.0, "c_FUN": 4.0, "c_GO": 40.0}
    todo = {d: (cfg(d, method="hlstm"), str(tmp_path / "runs" / f"new_{d}")) for d in ("c_FUN", "c_GO", "d_FUN")}
    text = plan(list(todo.values()), timing_roots=[str(tmp_path / "runs")], machine=here, ratios=ratios)
    # c_FUN costs 4x a_FUN and 2x b_FUN in C-HMCNN: median(10 x 4, 30 x 2) = 50 s over 10 epochs
    assert f"| {todo['c_FUN'][1]} | 0 | 10 | 50.00 (from a_FUN, b_FUN) | 0.14 |" in text
    # no GO dataset of the kind was timed (FUN's ratio does not carry to GO), and d_FUN has no C-HMCNN time
    assert f"| {todo['c_GO'][1]} | 0 | 10 | ? | ? |" in text
    assert f"| {todo['d_FUN'][1]} | 0 | 10 | ? | ? |" in text
    assert "(1 scaled from the datasets their kind was timed on" in text
    assert "2 runs have no measured epoch time" in text
    # Plain C-HMCNN never timed here takes the reproduction table's own time for it (ratios are those times).
    plain = {d: (cfg(d), str(tmp_path / "runs" / f"plain_{d}")) for d in ("c_GO", "d_FUN")}
    text = plan(list(plain.values()), timing_roots=[str(tmp_path / "runs")], machine=here, ratios=ratios)
    assert f"| {plain['c_GO'][1]} | 0 | 10 | 40.00 (the C-HMCNN reproduction's) | 0.11 |" in text
    assert f"| {plain['d_FUN'][1]} | 0 | 10 | ? | ? |" in text
    assert "(1 plain C-HMCNN timed by that table itself)" in text


def test_plan_scales_an_untimed_dataset_by_how_much_faster_its_network_grows(tmp_path):
    # seq_GO's case: C-HMCNN's epoch-time ratio carries the rows over, but an LSTM's network grows 2x faster
    # with the hidden width than C-HMCNN's, and a batch-4 step costs in proportion to the parameters.
    from _runner import plan

    from hmljax.training import TrainConfig

    here = {"backend": "cpu", "cpus": 2, "compiler_options": {}}
    params = {("a_GO", "hlstm"): 20, ("a_GO", None): 10, ("c_GO", "hlstm"): 400, ("c_GO", None): 50}

    def sizes(c):
        return params.get((c["dataset"], c.get("method")))

    _timed_run(tmp_path / "runs", "a", TrainConfig(dataset="a_GO", epochs=10, method="hlstm").to_dict(),
               [10.0, 10.0], here)
    task = (TrainConfig(dataset="c_GO", epochs=10, method="hlstm").to_dict(), str(tmp_path / "runs" / "new"))
    text = plan([task], timing_roots=[str(tmp_path / "runs")], machine=here, ratios={"a_GO": 1.0, "c_GO": 3.0},
                sizes=sizes)
    # 10 s x C-HMCNN's 3x x (400 / 50) / (20 / 10) = 120 s an epoch
    assert f"| {task[1]} | 0 | 10 | 120.00 (from a_GO; x4.00 for the network's size) | 0.33 |" in text
    params[("c_GO", None)] = None  # a count missing: C-HMCNN's ratio alone, said without a factor
    text = plan([task], timing_roots=[str(tmp_path / "runs")], machine=here, ratios={"a_GO": 1.0, "c_GO": 3.0},
                sizes=sizes)
    assert f"| {task[1]} | 0 | 10 | 30.00 (from a_GO) | 0.08 |" in text


def test_parameter_count_counts_the_network_from_shapes():
    from _runner import parameter_count

    # synthetic's C-HMCNN: 48 features, two hidden layers of 256, 493 nodes; weights and biases
    assert parameter_count({"dataset": "synthetic"}) == 48 * 256 + 256 + 256 * 256 + 256 + 256 * 493 + 493
    assert parameter_count({"dataset": "no_such_dataset"}) is None


def test_traffic_counts_a_runs_step_from_shapes_alone():
    # How seq_GO's 903M-parameter HLSTM step gets its XLA byte count without 10.8 GB of state: the state is
    # jax.eval_shape's, and the count must still see every parameter (and more bytes than one read of each).
    from benchmarks.bench_traffic import run_case

    row = run_case("synthetic", "chmcnn", None)
    assert row["params"] == 48 * 256 + 256 + 256 * 256 + 256 + 256 * 493 + 493
    assert row["B"] == 32 and row["case"] == "run: chmcnn"
    assert row["bytes_per_step_xla"] > 4 * row["params"]


def test_tables_say_where_their_runs_were_trained():
    import rare

    gpu = {"backend": "gpu", "devices": ["cuda:0"], "device_kind": "NVIDIA H100 80GB HBM3", "jax": "0.11.2"}
    cpu = {"backend": "cpu", "devices": ["TFRT_CPU_0"], "device_kind": "cpu", "cpus": 2, "jax": "0.10.2"}
    assert rare.where_trained(gpu) == "gpu (NVIDIA H100 80GB HBM3), jax 0.11.2"
    assert rare.where_trained(cpu) == "cpu (2 CPUs), jax 0.10.2"
    assert rare.where_trained({**cpu, "cpu_model": "Intel(R) Xeon(R) Processor"}) == (
        "cpu (2 CPUs, Intel(R) Xeon(R) Processor), jax 0.10.2")
    assert rare.where_trained({}) == "unrecorded"
    summary = {"d": {"A": {"n": 2, "trained_on": {rare.where_trained(gpu): 2}},
                     "B": {"n": 2, "trained_on": {rare.where_trained(cpu): 1, rare.where_trained({}): 1}}}}
    assert rare._trained_on(summary) == ["Runs trained on: gpu (NVIDIA H100 80GB HBM3), jax 0.11.2: 2 runs; "
                                         "cpu (2 CPUs), jax 0.10.2: 1 run; unrecorded: 1 run.", ""]
    assert rare._trained_on({"d": {"A": {"n": 0, "trained_on": {}}}}) == []
    # A carried cell keeps the committed table's count (rebuilding used to drop it from the line), or says it
    # was not recorded; the runs found here for a cell it replaces are not counted twice.
    summary["d"]["C"] = {"n": 3, "carried": True}
    summary["d"]["A"] = {"n": 3, "carried": True, "trained_on": {rare.where_trained(gpu): 3}}
    assert rare._trained_on(summary)[0] == ("Runs trained on: gpu (NVIDIA H100 80GB HBM3), jax 0.11.2: 3 runs; "
                                            f"{rare.NOT_RECORDED}: 3 runs; cpu (2 CPUs), jax 0.10.2: 1 run; "
                                            "unrecorded: 1 run.")


@pytest.mark.parametrize("script, experiment", [("rare", "fig5"), ("hlstm", "tables"), ("adaptive_batch", "table2"),
                                                ("longtail", "tables"), ("reproduce_chmcnn", None),
                                                ("flat_baseline", None)])
def test_a_mistyped_dataset_stops_the_script_before_any_run(tmp_path, capsys, monkeypatch, script, experiment):
    import importlib

    monkeypatch.delenv("HMLJAX_DATA", raising=False)
    mod = importlib.import_module(script)
    argv = ([experiment] if experiment else []) + ["--datasets", "synthetic_dagg", "--runs", str(tmp_path / "r"),
                                                    "--plan"]
    with pytest.raises(SystemExit) as exit_:
        mod.main(argv)
    assert exit_.value.code == 2  # argparse's usage error, not a traceback or a plan of runs that cannot start
    err = capsys.readouterr().err
    assert "--datasets: unknown dataset 'synthetic_dagg' (did you mean 'synthetic_dag'?)" in err
    assert not (tmp_path / "r").exists()


def test_carry_committed_runs_fills_only_cells_with_fewer_runs_here(tmp_path):
    from _runner import carry_committed_runs

    path = tmp_path / "t.json"
    path.write_text(json.dumps({"command": "x", "rows": {
        "scene/mlp": {"random": {"macro_auc": [0.9, 0.8], "best_epoch": [3, 4], "median_epoch_seconds": 0.5},
                      "adaptive": {"macro_auc": [0.7], "best_epoch": [5], "median_epoch_seconds": 0.6}}}}))
    here = {"test": {"macro_auc": 0.1}, "best_epoch": 1, "machine": {}}
    found = {("scene", "mlp"): {"adaptive": [here]}}
    carried = carry_committed_runs(found, str(path), key_of=lambda g: tuple(g.split("/")))
    assert carried == ["scene/mlp / random"]  # adaptive has as many runs here (1) as committed: kept as found
    assert found[("scene", "mlp")]["adaptive"] == [here]
    rs = found[("scene", "mlp")]["random"]
    assert [r["test"]["macro_auc"] for r in rs] == [0.9, 0.8] and [r["best_epoch"] for r in rs] == [3, 4]
    assert all(r["carried"] and r["median_epoch_seconds"] == 0.5 and "curve" not in r for r in rs)
    assert carry_committed_runs(found, str(tmp_path / "missing.json")) == []


def test_rebuilding_a_table_whose_runs_are_gone_keeps_its_rows(tmp_path):
    # A table made before runs were recorded (its run folders gone): --table-only used to rewrite it empty.
    import adaptive_batch

    res = tmp_path / "res"
    res.mkdir()
    vals = {"macro_f1": [0.5, 0.6], "micro_f1": [0.5, 0.6], "macro_auc": [0.9, 0.92], "ranking_loss": [0.1, 0.1],
            "hamming_loss": [0.1, 0.1], "one_error": [0.2, 0.2], "best_epoch": [9, 10], "median_epoch_seconds": 0.1}
    committed = {"command": "c", "rows": {"scene/mlp": {"s_e=2": vals, "s_e=8": vals}}}
    (res / "adaptive_pressure.json").write_text(json.dumps(committed))
    (res / "adaptive_pressure.png").write_bytes(b"committed figure")
    argv = ["pressure", "--table-only", "--runs", str(tmp_path / "runs"), "--results", str(res)]
    assert adaptive_batch.main(argv) == 0
    md = (res / "adaptive_pressure.md").read_text()
    assert "| scene | MLP | s_e=2 | 2 ‡ | 0.5500 ± 0.0707 |" in md and "| scene | MLP | s_e=8 | 2 ‡ |" in md
    assert "‡ carried from the committed table" in md and "runs trained on: carried from the committed table" in md
    assert json.loads((res / "adaptive_pressure.json").read_text())["rows"] == committed["rows"]
    assert (res / "adaptive_pressure.png").read_bytes() == b"committed figure"  # no curves to redraw it from


def test_longtail_rebuild_keeps_committed_rows_without_runs(tmp_path):
    import argparse

    import longtail

    res = tmp_path / "res"
    res.mkdir()
    row = {"map_head": [0.5, 0.7], "map_middle": [0.4, 0.4], "map_tail": [0.1, 0.3], "map": [0.3, 0.5],
           "macro_auc": [0.8, 0.8], "median_epoch_seconds": 1.0}
    (res / "longtail_lambda.json").write_text(json.dumps({"command": "c", "rows": {"bibtex": {"lambda=0.0": row}}}))
    args = argparse.Namespace(datasets=None, seeds=1, runs=str(tmp_path / "runs"), results=str(res), override=[],
                              data_dir=None)
    md = longtail.write("lambda", args, "python experiments/longtail.py lambda")
    assert "| lambda=0.0 | 2 ‡ | **60.00 ± 14.14** | **40.00 ± 0.00** | **20.00 ± 14.14** | **40.00 ± 14.14** |" in md
    assert "## bibtex: train rows ‡" in md and "‡ carried from the committed table" in md
    assert json.loads((res / "longtail_lambda.json").read_text())["rows"]["bibtex"]["lambda=0.0"] == row


def test_chmcnn_table_keeps_committed_datasets_whose_runs_are_not_here(tmp_path):
    import reproduce_chmcnn

    out = tmp_path / "chmcnn_reproduction.md"
    row = {"seeds": [0, 1], "auprc": [0.256, 0.258], "published": 0.255, "rerun_auprc": None,
           "node_f1": [0.02, 0.03], "median_epoch_seconds": 0.5, "trained_on": {"cpu": 2}}
    (tmp_path / "chmcnn_reproduction.json").write_text(json.dumps({"cellcycle_FUN": row}))
    md = reproduce_chmcnn.write_table(str(tmp_path / "no_runs"), str(out), "cmd")
    assert "| cellcycle_FUN | 2 ‡ | 0.257 ± 0.001 | 0.255 | +0.002 |" in md and "‡ carried" in md
    saved = json.loads((tmp_path / "chmcnn_reproduction.json").read_text())["cellcycle_FUN"]
    assert saved["auprc"] == row["auprc"] and saved["seeds"] == [0, 1] and saved["trained_on"] == {"cpu": 2}


def test_flat_baseline_table_keeps_committed_datasets_whose_runs_are_not_here(tmp_path):
    import argparse

    import flat_baseline

    keys = [k for k, _, _ in flat_baseline.METRICS]
    row = {"folds": 2, **{k: [0.5, 0.7] for k in keys}, "train_seconds": [3.0, 5.0], "best_epoch": [9, 11],
           "trained_on": ["cpu (2 CPUs), jax 0.10.2"]}
    (tmp_path / "flat_baseline.json").write_text(json.dumps({"command": "c", "rows": {"scene": row}}))
    args = argparse.Namespace(datasets=["yeast"], folds=5, seed=0, runs=str(tmp_path / "no_runs"),
                              results=str(tmp_path), epochs=100)
    md = flat_baseline.write_table(args, "cmd")
    assert "| scene | 2 ‡ | 0.6000 ± 0.1414 |" in md and "| 10 | 4.0 | cpu (2 CPUs), jax 0.10.2 |" in md
    assert json.loads((tmp_path / "flat_baseline.json").read_text())["rows"]["scene"] == row


def test_plan_says_which_runs_only_replace_carried_rows(tmp_path):
    from _runner import plan

    from hmljax.training import TrainConfig

    tasks = [(TrainConfig(dataset="synthetic", epochs=5).to_dict(), str(tmp_path / f"r{k}")) for k in range(3)]
    some = plan(tasks, timing_roots=[], machine={}, ratios={}, replacing_carried=2).splitlines()[0]
    assert some == ("0 runs finished, 3 to do (2 of them would retrain rows the committed table already shows, "
                    "carried ‡ from runs not in this checkout; the rest are new)")
    assert "(all of them would retrain" in plan(tasks, timing_roots=[], machine={}, ratios={}, replacing_carried=3)
    assert plan(tasks, timing_roots=[], machine={}, ratios={}).splitlines()[0] == "0 runs finished, 3 to do"


def test_status_reads_each_plan_and_writes_one_table(tmp_path, monkeypatch, capsys):
    import status

    text = ("3 runs finished, 5 to do (2 of them would retrain rows the committed table already shows, carried ‡ "
            "from runs not in this checkout; the rest are new)\n\n| run |\n"
            "| runs/a/x-s0 | 0 | 13 | 132.68 (from b, c) | 0.48 |\n| runs/a/y-s0 | 40 | 60 | 100.0 | 1.67 |\n"
            "| runs/a/z-s0 | 0 | 62 | ? | ? |\n\nEstimated 1.5 hours for 4 runs; 1 runs have no measured epoch time "
            "of their kind (dataset) yet.")
    assert status.parse_plan(text) == {"finished": 3, "todo": 5, "carried": 2, "hours": 1.5, "untimed": 1,
                                       "longest_h": 1.67}
    assert status.parse_plan("0 runs finished, 2 to do (all of them would retrain ...)\nEstimated 0.0 hours for 0 "
                             "runs.")["carried"] == 2
    with pytest.raises(ValueError, match="not a --plan report"):
        status.parse_plan("Traceback ...")
    grid = [("C-HMCNN", "synthetic", f"reproduce_chmcnn.py --datasets synthetic --seeds 2 --runs {tmp_path / 'r'}"),
            ("C-HMCNN", "broken", "reproduce_chmcnn.py --datasets no_such_data")]
    monkeypatch.setattr(status, "GRID", grid)
    out = tmp_path / "STATUS.md"
    assert status.main(["--write", "--out", str(out)]) == 1  # one row could not plan: the exit status says so
    md = out.read_text()
    assert "| C-HMCNN | synthetic | 0 | 2 |  |" in md and "no plan: exit 2" in md
    assert status.render([{"paper": "P", "item": "i", "command": "c", "finished": 0, "todo": 2, "carried": 0,
                           "hours": 6.0, "untimed": 0, "longest_h": 3.0}], when="w", machine="m").splitlines()[-3] \
        == "| P | i | 0 | 2 |  | 6.0 | **3.0** |  | `python experiments/c` |"  # over one sitting: bold
    assert json.loads((tmp_path / "STATUS.json").read_text())["rows"][0]["todo"] == 2
    # Every row failing (an empty data folder) leaves the written table alone; a missing data folder is one
    # error up front (it was one failed row per command, then a table of "?" rows written over the good one).
    monkeypatch.setattr(status, "GRID", grid[1:])
    assert status.main(["--write", "--out", str(out)]) == 1 and out.read_text() == md
    with pytest.raises(SystemExit):
        status.main(["--data-dir", str(tmp_path / "nowhere"), "--write", "--out", str(out)])
    assert "--data-dir: data directory" in capsys.readouterr().err and out.read_text() == md


def test_rare_tables_keep_the_datasets_earlier_commands_added(tmp_path):
    # Fig. 5's GO datasets are not among its defaults: each was made by its own --datasets command, and a
    # later command on another one must keep them (it used to rebuild the table without them).
    import argparse

    import rare

    (tmp_path / "rare_fig5.json").write_text(json.dumps({"cellcycle_FUN": {}, "derisi_GO": {}}))
    args = argparse.Namespace(datasets=["spo_GO"], methods=None, ensemble=10, sizes=[1], results=str(tmp_path),
                              override=[], data_dir="D", seeds=1)
    cells = rare._table_cells("fig5", args)
    assert list(cells) == [*rare.FUN, "derisi_GO", "spo_GO"]  # the paper's order
    assert "--datasets " + " ".join([*rare.FUN, "derisi_GO", "spo_GO"]) in rare._header("fig5", args)[0]


def test_wilcoxon_pairs_only_datasets_with_every_fold_of_both_arms(tmp_path):
    # A dataset still training (random's 5 folds done, adaptive's 2) paired means over different folds.
    import adaptive_batch

    res = tmp_path / "res"
    res.mkdir()

    def arm(v, n):
        return {k: [v + 0.01 * i for i in range(n)] for k in ("macro_f1", "micro_f1", "macro_auc", "ranking_loss",
                                                              "hamming_loss", "one_error")} | {
            "best_epoch": [9] * n, "median_epoch_seconds": 0.1}

    rows = {f"{d}/mlp": {"random": arm(0.5, 5), "adaptive": arm(0.6, 5)} for d in ("yeast", "scene", "emotions")}
    rows["emotions/mlp"]["adaptive"] = arm(0.6, 2)
    (res / "adaptive_table2_mlp.json").write_text(json.dumps({"command": "c", "rows": rows}))
    argv = ["table2", "--models", "mlp", "--datasets", "yeast", "scene", "emotions", "--table-only",
            "--runs", str(tmp_path / "runs"), "--results", str(res)]
    assert adaptive_batch.main(argv) == 0
    md = (res / "adaptive_table2_mlp.md").read_text()
    assert "| emotions | MLP | adaptive | 2 ‡ |" in md and "both arms finished on all 5 folds" in md
    assert "| MLP | 2 | " in md  # yeast and scene only


def test_table2_on_several_models_writes_each_models_table(tmp_path):
    import adaptive_batch

    res = tmp_path / "res"
    res.mkdir()
    vals = {k: [0.5, 0.6] for k in ("macro_f1", "micro_f1", "macro_auc", "ranking_loss", "hamming_loss",
                                     "one_error")} | {"best_epoch": [9, 10], "median_epoch_seconds": 0.1}
    for m in ("mlp", "c2ae"):
        (res / f"adaptive_table2_{m}.json").write_text(json.dumps({"command": "c", "rows": {
            f"scene/{m}": {"random": vals, "adaptive": vals}}}))
    argv = ["table2", "--models", "mlp", "c2ae", "--datasets", "scene", "--table-only", "--runs",
            str(tmp_path / "runs"), "--results", str(res)]
    assert adaptive_batch.main(argv) == 0
    assert "| scene | MLP | random | 2 ‡ |" in (res / "adaptive_table2_mlp.md").read_text()
    assert "| scene | C2AE | random | 2 ‡ |" in (res / "adaptive_table2_c2ae.md").read_text()
    assert not list(res.glob("adaptive_table2_mlp_c2ae*"))


def test_bad_counts_and_overrides_stop_a_script_before_it_trains_or_writes(tmp_path, capsys):
    # `--seeds 0` planned nothing and exited as if done; `--override lr=-1` failed in every run, one FAILED line
    # each, then wrote a table of no runs; a key of another method was a traceback.
    import hlstm

    base = ["tables", "--datasets", "synthetic", "--runs", str(tmp_path / "runs"), "--results", str(tmp_path / "res")]
    for flag in ("--seeds", "--seeds-fun", "--workers"):
        with pytest.raises(SystemExit) as e:
            hlstm.main([*base, flag, "0"])
        assert e.value.code == 2 and f"argument {flag}: must be at least 1, got 0" in capsys.readouterr().err
    for override, says in (("lr=-1", "HLSTM-s0: bad value for lr: -1.0 (a finite number > 0)"),
                           ("beta=2", "error: config key 'beta' belongs to method dela / mpvae, not to method=hlstm"),
                           ("lr=x", "error: bad value for lr: 'x' is not a float")):
        for plan in ([], ["--plan"]):
            with pytest.raises(SystemExit) as e:
                hlstm.main([*base, "--override", override, *plan])
            assert says in str(e.value.code), e.value.code
    made = [os.path.relpath(os.path.join(d, f), tmp_path) for d, _, fs in os.walk(tmp_path) for f in fs]
    assert made == [], made


def test_fig7_takes_b_r_0p5_from_the_tables_finished_hlstm_run(tmp_path, capsys):
    """Fig. 7's b_r = 0.5 cell is Tables II-V's HLSTM: the same config, so it is not trained twice."""
    import hlstm
    from _runner import adopt_twins

    from hmljax.training import TrainConfig

    runs, res = tmp_path / "runs", tmp_path / "res"
    common = ["--datasets", "synthetic", "--runs", str(runs), "--results", str(res), "--override", "epochs=2"]
    assert hlstm.main(["tables", "--labels", "HLSTM", *common]) == 0
    twin = runs / "tables__epochs=2" / "synthetic" / "HLSTM-s0"
    capsys.readouterr()
    assert hlstm.main(["br", "--plan", *common]) == 0
    out = capsys.readouterr().out
    adopted = runs / "br__epochs=2" / "synthetic" / "b_r0p5-s0"
    assert f"{adopted}: the finished {twin} (same config)" in out
    assert "1 runs finished, 4 to do" in out and "b_r0p5" not in out.split("to do")[1]
    for name in ("results.json", "metrics.jsonl", "config.json"):
        assert (adopted / name).read_bytes() == (twin / name).read_bytes()
    assert (res / "runs" / "runs" / "br__epochs=2" / "synthetic" / "b_r0p5-s0" / "results.json").exists()  # recorded
    # Never from a twin of another config.
    other = TrainConfig(dataset="synthetic", method="hlstm", b_r=0.3, epochs=2)
    assert adopt_twins([(other, str(tmp_path / "x"))], {str(tmp_path / "x"): str(twin)}) == []
    assert not (tmp_path / "x").exists()


def test_parallel_runner_bar_starts_at_the_resumed_epochs(tmp_path, capsys, monkeypatch):
    """A resumed table's bar starts where its runs resume, so its rate and time left count this sitting's epochs."""
    monkeypatch.delenv("XLA_PYTHON_CLIENT_PREALLOCATE", raising=False)

    import _runner

    from hmljax.training import TrainConfig

    cfg = TrainConfig(dataset="spo_FUN", seed=0, epochs=4, hidden=16, data_dir=str(tmp_path / "no-data")).to_dict()
    run_dir = tmp_path / "resumed"
    (run_dir / "checkpoints" / "3").mkdir(parents=True)  # fails on its missing data before it reads this
    failures = _runner.run_tasks([(cfg, str(run_dir))], workers=2, poll_s=0.2)
    assert [d for d, _ in failures] == [str(run_dir)]
    first = next(seg for seg in capsys.readouterr().err.split("\r") if "/4 " in seg)  # the bar as first drawn
    assert " 3/4 " in first, first
