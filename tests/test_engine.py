"""The engine takes any method: one defined here, outside ``hmljax/``, trains, checkpoints, dies, resumes, evaluates.

The toy method (tests/methods/toy_method.py) has model state (a running mean, like BatchNorm's) and a
device-side, loss-driven sampler whose state rides in the scan carry; everything goes through public
names only.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import hmljax
import hmljax.engine as E
from hmljax.training import TrainConfig, evaluate_run, load_run, train_and_evaluate

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from methods import toy_method  # noqa: E402  (registers method=toy and sampler=loss_proportional)

TOY = dict(dataset="synthetic", method="toy", sampler="loss_proportional", batch_size=64, lr=0.01)


def _leaves_equal(a, b) -> bool:
    pairs = zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    return all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in pairs)


def test_toy_method_trains_and_its_sampler_follows_the_loss(tmp_path):
    out = train_and_evaluate(TrainConfig(epochs=4, **TOY), str(tmp_path / "a"), progress=False)
    res = json.loads((tmp_path / "a" / "results.json").read_text())
    assert res["method"] == "toy" and res["test"]["auprc"] > 0.3  # learned something (chance is ~0.1)
    sampler_state = out["state"].sampler_state
    draws, losses = np.asarray(sampler_state["draws"]), np.asarray(sampler_state["loss"])
    assert draws.sum() == 4 * 64 * -(-res["train_rows"]["rows"] // 64)  # every step drew B rows on the device
    # Each drawn row's weight is now the loss the step measured on it (rows never drawn keep the initial 1).
    seen = draws > 0
    assert seen.mean() > 0.9 and np.all(losses[seen] != 1.0) and np.all(losses[~seen] == 1.0)
    # And the draws follow those weights: rows with a large last loss are drawn far more often.
    sampler = toy_method.loss_proportional(1000, 10, floor=0.05)
    state = {"loss": jnp.where(jnp.arange(1000) < 20, 10.0, 0.0), "draws": jnp.zeros(1000, jnp.int32)}
    for t in range(50):
        _, _, state = sampler.select(state, jax.random.key(t), t)
    d = np.asarray(state["draws"])
    assert d[:20].mean() > 20 * d[20:].mean()
    # The model state (the running mean) was updated by training and saved with the run.
    assert float(jnp.abs(out["model_state"]["mean"]).sum()) > 0
    run = load_run(str(tmp_path / "a"))
    chex.assert_trees_all_equal(run.model_state, out["model_state"])
    chex.assert_trees_all_equal(run.params, out["params"])
    assert json.loads(json.dumps(evaluate_run(str(tmp_path / "a")))) == res["test"]


def test_checkpoint_every_0_writes_no_checkpoint_and_the_same_run(tmp_path):
    # A GPU sitting's run: its checkpoints never come back, so it writes none, not even the last. What it
    # trains and reports is the checkpointed run's, bit for bit (the key is bookkeeping, not identity).
    a = train_and_evaluate(TrainConfig(epochs=2, checkpoint_every=1, **TOY), str(tmp_path / "a"), progress=False)
    b = train_and_evaluate(TrainConfig(epochs=2, checkpoint_every=0, checkpoint_minutes=0, **TOY),
                           str(tmp_path / "b"), progress=False)
    assert _leaves_equal(a["state"], b["state"])
    ra, rb = (json.loads((tmp_path / d / "results.json").read_text()) for d in "ab")
    assert ra["test"] == rb["test"]
    assert os.listdir(tmp_path / "a" / "checkpoints") and not os.listdir(tmp_path / "b" / "checkpoints")
    with pytest.raises(ValueError, match="no checkpoint to load"):
        load_run(str(tmp_path / "b"))


def test_a_run_pauses_at_a_checkpoint_before_its_deadline_and_resumes_to_the_same_bits(tmp_path, monkeypatch):
    """A deadline (a scheduler's limit, a GPU sitting's job) stops the run at a checkpoint, even with
    checkpoint_every=0, with nothing evaluated; the same call resumes it to an uninterrupted run's bits."""
    from hmljax.training import STOP_BY_ENV, TrainingPaused

    cfg = TrainConfig(epochs=3, checkpoint_every=0, checkpoint_minutes=0, **TOY)
    full = train_and_evaluate(cfg, str(tmp_path / "full"), progress=False)
    run_dir = tmp_path / "paused"
    monkeypatch.setenv(STOP_BY_ENV, f"{time.time():.3f}")  # already due: no second epoch fits
    with pytest.raises(TrainingPaused, match="paused at epoch 1 of 3") as paused:
        train_and_evaluate(cfg, str(run_dir), progress=False)
    assert (paused.value.epoch, paused.value.epochs) == (1, 3)
    assert os.listdir(run_dir / "checkpoints") == ["1"] and not (run_dir / "results.json").exists()
    # A deadline an hour away lets it finish, from its checkpoint.
    resumed = train_and_evaluate(cfg, str(run_dir), resume=True, progress=False, stop_by=time.time() + 3600)
    assert _leaves_equal(full["state"], resumed["state"])
    assert resumed["results"]["test"] == full["results"]["test"]
    history = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in history] == [1, 2, 3]
    # The last epoch is never a pause: past the deadline, a run with nothing left to train finishes.
    last = train_and_evaluate(cfg.replace(epochs=1), str(tmp_path / "one"), progress=False, stop_by=time.time())
    assert last["results"]["epochs_run"] == 1
    monkeypatch.setenv(STOP_BY_ENV, "in an hour")
    with pytest.raises(ValueError, match="HMLJAX_STOP_BY='in an hour': expected a deadline in Unix seconds"):
        train_and_evaluate(cfg, str(tmp_path / "bad"), progress=False)
    assert not (tmp_path / "bad").exists()  # refused before anything was written


def test_cli_stop_after_pauses_with_its_exit_status_and_resume_finishes(tmp_path, capsys):
    from hmljax.cli import main

    run_dir = str(tmp_path / "r")
    args = ["train", "--epochs", "2", "--out", run_dir, "--no-progress", "method=toy", "sampler=loss_proportional",
            "batch_size=64", "lr=0.01"]
    assert main([*args, "--stop-after", "0.001"]) == 3
    assert f"paused at epoch 1 of 2, before its deadline, with a checkpoint in {run_dir}" in capsys.readouterr().out
    assert main([*args, "--stop-after", "-5"]) == 2
    assert "--stop-after -5: expected a positive number of seconds" in capsys.readouterr().err
    assert main([*args, "--resume"]) == 0
    assert json.loads((tmp_path / "r" / "results.json").read_text())["epochs_run"] == 2


@pytest.mark.skipif(sys.platform == "win32", reason="SIGTERM")
def test_sigterm_pauses_after_the_epoch_in_flight_and_resume_ends_bitwise(tmp_path):
    """A scheduler's SIGTERM (before its kill): the run finishes the epoch in flight, writes a checkpoint there
    (none was due: checkpoint_every=1000) and exits with status 3; resumed, it ends as an uninterrupted run."""
    epochs = 40
    run_dir = tmp_path / "termed"
    code = (f"import sys; sys.path.insert(0, {HERE!r}); import methods.toy_method; from hmljax.cli import main; "
            "sys.exit(main(sys.argv[1:]))")
    args = ["train", "--dataset", "synthetic", "--epochs", str(epochs), "--out", str(run_dir), "--no-progress",
            "method=toy", "sampler=loss_proportional", "batch_size=64", "lr=0.01", "checkpoint_every=1000",
            "checkpoint_minutes=0"]
    proc = subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    metrics = run_dir / "metrics.jsonl"
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if metrics.exists() and len(metrics.read_text().splitlines()) >= 2:
            break
        time.sleep(0.05)
    assert proc.poll() is None, f"the run ended before the signal: {proc.stderr.read().decode()[-2000:]}"
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 3, err.decode()[-2000:]
    steps = [int(p.name) for p in (run_dir / "checkpoints").iterdir() if p.name.isdigit()]
    assert len(steps) == 1 and 2 <= steps[0] < epochs and not (run_dir / "results.json").exists()
    assert f"paused at epoch {steps[0]} of {epochs}, on SIGTERM" in out.decode()
    assert "SIGTERM: the run stops at a checkpoint after the epoch in flight" in err.decode()
    resumed = train_and_evaluate(TrainConfig(epochs=epochs, checkpoint_every=1000, checkpoint_minutes=0, **TOY),
                                 str(run_dir), resume=True, progress=False)
    full = train_and_evaluate(TrainConfig(epochs=epochs, checkpoint_every=1000, checkpoint_minutes=0, **TOY),
                              str(tmp_path / "full"), progress=False)
    assert _leaves_equal(full["state"], resumed["state"])


@pytest.mark.slow  # the kill test below resumes bitwise too, and the CLI test extends a run
def test_toy_method_is_reproducible_and_resumes_bitwise(tmp_path):
    # (Two fresh runs of one config agreeing bit for bit is checked by the kill test below.)
    full = train_and_evaluate(TrainConfig(epochs=4, checkpoint_every=1, **TOY), str(tmp_path / "full"),
                              progress=False)
    # Stop after 2 epochs, then resume to 4: same parameters, model state and sampler state.
    train_and_evaluate(TrainConfig(epochs=2, checkpoint_every=1, **TOY), str(tmp_path / "half"), progress=False)
    with pytest.raises(ValueError, match="pass --extend"):
        train_and_evaluate(TrainConfig(epochs=4, checkpoint_every=1, **TOY), str(tmp_path / "half"), resume=True,
                           progress=False)
    resumed = train_and_evaluate(TrainConfig(epochs=4, checkpoint_every=1, **TOY), str(tmp_path / "half"),
                                 resume=True, extend=True, progress=False)
    assert _leaves_equal(full["state"], resumed["state"])


@pytest.mark.skipif(sys.platform == "win32", reason="kill -9")
def test_toy_method_killed_mid_run_resumes_to_the_same_bits(tmp_path):
    """A training process killed with SIGKILL between checkpoints resumes (in another process) to the bits of an
    uninterrupted run."""
    epochs = 40
    run_dir = tmp_path / "killed"
    code = (f"import sys; sys.path.insert(0, {HERE!r}); import methods.toy_method; from hmljax.cli import main; "
            "sys.exit(main(sys.argv[1:]))")
    args = ["train", "--dataset", "synthetic", "--epochs", str(epochs), "--out", str(run_dir), "--no-progress",
            "method=toy", "sampler=loss_proportional", "batch_size=64", "lr=0.01", "checkpoint_every=1"]
    proc = subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ckpt = run_dir / "checkpoints"
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if ckpt.is_dir() and len([p for p in ckpt.iterdir() if p.name.isdigit()]) >= 2:
            break
        time.sleep(0.05)
    assert proc.poll() is None, f"the run ended before it could be killed: {proc.stderr.read().decode()[-2000:]}"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = int(max(p.name for p in ckpt.iterdir() if p.name.isdigit()))
    assert done < epochs
    resumed = train_and_evaluate(TrainConfig(epochs=epochs, checkpoint_every=1, **TOY), str(run_dir), resume=True,
                                 progress=False)
    full = train_and_evaluate(TrainConfig(epochs=epochs, checkpoint_every=1, **TOY), str(tmp_path / "full"),
                              progress=False)
    assert _leaves_equal(full["state"], resumed["state"])
    history = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in history] == list(range(1, epochs + 1))  # no epoch logged twice or lost


ES = dict(dataset="synthetic", protocol="early_stopping", patience=3, hidden=64, lr=0.03, checkpoint_every=1)


def _drop_best_records(run_dir):
    """Rewrites a run's checkpoints as they were written before they carried the best epoch (and before
    checksums: the rewritten files would not match theirs)."""
    import orbax.checkpoint as ocp

    mngr = ocp.CheckpointManager(os.path.abspath(os.path.join(run_dir, "checkpoints")))
    raws = {step: mngr.restore(step, args=ocp.args.StandardRestore()) for step in mngr.all_steps()}
    for step in raws:
        mngr.delete(step)
    for step, raw in sorted(raws.items()):  # ascending: a manager saves no step below its latest
        del raw["best"]
        mngr.save(step, args=ocp.args.StandardSave(raw))
        mngr.wait_until_finished()
    assert sorted(mngr.all_steps()) == sorted(raws)
    mngr.close()
    os.remove(os.path.join(run_dir, "checkpoints.sha256.json"))


def test_early_stopping_resumes_with_its_best_epoch_and_loads_it(tmp_path, capsys):
    """A resumed early-stopping run keeps the best epoch before its checkpoint (its score, its parameters, the
    patience counted from it), so it ends where and as an uninterrupted run does; load_run gives the
    parameters its test results were scored with. Checkpoints from before the record (legacy) rebuild it
    from the logged scores and a kept checkpoint, or train again from epoch 0 when that is gone."""
    full = train_and_evaluate(TrainConfig(epochs=10, **ES), str(tmp_path / "full"), progress=False)
    res = full["results"]
    b = res["best_epoch"]
    assert 1 < b and res["epochs_run"] == b + 3 < 10  # stopped by its patience, three epochs after its best
    loaded = load_run(str(tmp_path / "full"))
    assert loaded.epoch == b
    chex.assert_trees_all_equal(loaded.params, full["params"])
    assert json.loads(json.dumps(evaluate_run(str(tmp_path / "full")))) == json.loads(json.dumps(res["test"]))

    for name, stop_at, legacy in [("new", b + 1, False), ("legacy-kept", b + 1, True), ("legacy-lost", b + 2, True)]:
        d = str(tmp_path / name)
        train_and_evaluate(TrainConfig(epochs=stop_at, **ES), d, progress=False)
        if legacy:
            _drop_best_records(d)
        capsys.readouterr()
        out = train_and_evaluate(TrainConfig(epochs=10, **ES), d, resume=True, extend=True, progress=False)
        assert ("training again from epoch 0" in capsys.readouterr().out) == (name == "legacy-lost"), name
        got = out["results"]
        assert (got["best_epoch"], got["epochs_run"], got["test"]) == (b, b + 3, res["test"]), name
        chex.assert_trees_all_equal(out["params"], full["params"])
        history = [json.loads(line) for line in open(os.path.join(d, "metrics.jsonl"))]
        assert [m["epoch"] for m in history] == list(range(1, b + 4)), name


def test_toy_method_keys_are_strict():
    with pytest.raises(ValueError, match="'w0' belongs to method chmcnn"):
        TrainConfig(w0=0.1, **TOY)
    with pytest.raises(ValueError, match="bad value for ema"):
        TrainConfig(ema=1.5, **TOY).resolved()
    with pytest.raises(ValueError, match="unknown sampler 'nope'"):
        TrainConfig(dataset="synthetic", sampler="nope")
    cfg = TrainConfig(**TOY).override(["ema=0.5", "floor=0.2"])
    assert (cfg.ema, cfg.floor) == (0.5, 0.2)


def test_device_sampler_step_has_no_host_round_trip():
    """The device-sampler epoch compiles to one program: no host callback, one compile for two epochs."""
    ds = hmljax.load_dataset("synthetic")
    cfg = TrainConfig(epochs=1, **TOY).resolved()
    method = toy_method.build_toy(ds, cfg, split="train")
    state = E.init_train_state(method, jax.random.key(0))
    epoch = chex.assert_max_traces(E.make_epoch(method), n=1)
    jitted = jax.jit(epoch)
    X, Y = jnp.asarray(method.train_x), jnp.asarray(method.train_y)
    hlo = jitted.lower(state, X, Y, jnp.int32(0), jax.random.key(1)).as_text()
    assert "callback" not in hlo.lower()
    for e in range(2):
        state, losses = jitted(state, X, Y, jnp.int32(e), jax.random.key(1))
    assert losses.shape == (method.sampler.steps_per_epoch,) and np.isfinite(np.asarray(losses)).all()


def test_sgd_recipe_warms_up_then_decays():
    opt = E.make_optimizer("sgd", lr=0.1, weight_decay=0.0, momentum=0.0, warmup_steps=4, decay_every=10,
                           decay_factor=0.1)
    p = jnp.zeros(())
    s = opt.init(p)
    lrs = []
    for _ in range(25):
        u, s = opt.update(jnp.ones(()), s, p)
        lrs.append(-float(u))
    np.testing.assert_allclose(lrs[:5], [0.0, 0.025, 0.05, 0.075, 0.1], rtol=1e-6)
    np.testing.assert_allclose([lrs[9], lrs[10], lrs[19], lrs[20]], [0.1, 0.01, 0.01, 0.001], rtol=1e-5)


def test_sgd_keys_only_with_sgd():
    with pytest.raises(ValueError, match="momentum=0.9 does not apply here: it applies only with optimizer=sgd"):
        TrainConfig(dataset="synthetic", momentum=0.9).resolved()
    cfg = TrainConfig(dataset="synthetic", optimizer="sgd").resolved()
    assert (cfg.momentum, cfg.warmup_epochs, cfg.lr_decay_every) == (0.9, 0, 0)


def test_cli_resume_refuses_flags_that_disagree_and_extends_on_request(tmp_path, capsys):
    from hmljax.cli import main

    run = str(tmp_path / "r")

    def train(*flags, keys=("hidden=16", "batch_size=64")):
        return main(["train", "--out", run, "--no-progress", *flags, *keys])

    assert train("--epochs", "2") == 0
    capsys.readouterr()
    for flags, keys, says in ((["--seed", "3"], None, "seed: saved 0, given 3"),
                              (["--dataset", "synthetic_dag"], None, "dataset"),
                              ([], ("hidden=32",), "hidden: saved 16, given 32"),
                              (["--epochs", "4"], None, "pass --extend")):
        assert train("--resume", *flags, **({"keys": keys} if keys else {})) == 2, flags
        assert says in capsys.readouterr().err
    assert train("--resume") == 0  # the same config: nothing to do but evaluate again
    assert train("--resume", "--extend", "--epochs", "4") == 0
    history = [json.loads(line) for line in open(f"{run}/metrics.jsonl")]
    assert [m["epoch"] for m in history] == [1, 2, 3, 4]
    assert json.loads(open(f"{run}/config.json").read())["config"]["epochs"] == 4


def test_sgd_milestones_warmup_start_and_clipping():
    """DB's / HMT-Net's recipe: warm-up from lr / 3, decay at given steps, the gradient's norm clipped."""
    opt = E.make_optimizer("sgd", lr=0.3, weight_decay=0.0, momentum=0.0, warmup_steps=3, warmup_from=1 / 3,
                           milestones=(5, 8), decay_factor=0.1, clip_norm=2.0)
    p = jnp.zeros(2)
    s = opt.init(p)
    lrs = []
    for _ in range(10):
        u, s = opt.update(jnp.array([3.0, 4.0]), s, p)  # norm 5, clipped to 2: the update is lr * 2 / 5 * g
        lrs.append(-float(u[1]) / (4.0 * 2 / 5))
    np.testing.assert_allclose(lrs[:4], [0.1, 0.1 + 0.2 / 3, 0.1 + 0.4 / 3, 0.3], rtol=1e-5)
    np.testing.assert_allclose([lrs[4], lrs[5], lrs[7], lrs[8]], [0.3, 0.03, 0.03, 0.003], rtol=1e-5)
    cfg = TrainConfig(dataset="synthetic", optimizer="sgd", lr_milestones="55,70", warmup_from=1 / 3,
                      grad_clip=35.0).resolved()
    assert cfg.lr_milestones == "55,70"
    with pytest.raises(ValueError, match="bad value for lr_milestones"):
        TrainConfig(dataset="synthetic", optimizer="sgd", lr_milestones="70,55").resolved()
    with pytest.raises(ValueError, match="lr_milestones or lr_decay_every, not both"):
        TrainConfig(dataset="synthetic", optimizer="sgd", lr_milestones="5", lr_decay_every=3).resolved()


@pytest.mark.parametrize("sampler", ["epoch", "random", "device_shuffle", "adaptive", "hard", "adac", "class_aware"])
def test_a_batch_larger_than_the_data_is_the_whole_data(sampler):
    # It used to be padded to batch_size masked rows: batch_size=100000 on synthetic computed 100x the rows.
    rng = np.random.default_rng(0)
    x, y = rng.random((50, 3), np.float32), (rng.random((50, 4)) < 0.3).astype(np.uint8)
    y[:, 0] = 1
    cfg = TrainConfig(dataset="synthetic", batch_size=10**6, sampler=sampler).resolved()
    s = E.sampler_from_config(cfg, num_rows=50, x=x, y=y)
    assert (s.batch_size, s.steps_per_epoch) == (50, 1)
    with pytest.raises(ValueError, match="exceeds the 50 rows with drop_remainder"):  # asked for: still refused
        E.sampler_from_config(cfg.replace(drop_remainder=True, sampler="device_shuffle"), num_rows=50)
