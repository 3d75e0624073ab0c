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

from hmljax.constraints import constraint_graph
from hmljax.data import EpochSampler, load_dataset
from hmljax.models import ChmcnnMLP
from hmljax.training import (
    TrainConfig,
    cpu_model,
    evaluate_run,
    init_state,
    jit_train,
    make_optimizer,
    make_train_epoch,
    make_train_step,
    source_commit,
    train_and_evaluate,
    train_compiler_options,
)

SMALL = ["hidden=32", "batch_size=32", "lr=0.003"]


def _setup(constraint="sparse"):
    ds = load_dataset("synthetic")
    h = ds.hierarchy
    anc = constraint_graph(h) if constraint == "sparse" else jnp.asarray(h.ancestry)
    model = ChmcnnMLP(hidden=16, num_outputs=h.num_nodes, dropout=0.5)
    opt = make_optimizer(lr=1e-3, weight_decay=1e-5)
    state = init_state(model, opt, ds.num_features, key=jax.random.key(0))
    return ds, h, anc, model, opt, state


def test_torch_style_init_bounds():
    model = ChmcnnMLP(hidden=50, num_outputs=7)
    params = model.init({"params": jax.random.key(0)}, jnp.zeros((1, 20)), train=False)["params"]
    for name, fan_in in (("dense_0", 20), ("dense_1", 50), ("dense_2", 50)):
        for leaf in (params[name]["kernel"], params[name]["bias"]):
            assert float(jnp.abs(leaf).max()) <= 1 / np.sqrt(fan_in) + 1e-7
            assert float(jnp.abs(leaf).max()) > 0.8 / np.sqrt(fan_in)  # uniform, not a narrower default


def test_step_and_epoch_compile_once_and_match():
    ds, h, anc, model, opt, state = _setup()
    step = chex.assert_max_traces(make_train_step(model, opt, ancestry=anc, evaluated=h.evaluated), n=1)
    epoch_fn = jax.jit(make_train_epoch(step))
    X, Y = jax.device_put(np.asarray(ds.X["train"])), jax.device_put(np.asarray(ds.Y["train"]))
    sampler = EpochSampler(X.shape[0], 32, seed=0)
    key = jax.random.key(1)
    s = state
    for e in range(3):
        eb = sampler.epoch(e)
        s, losses = epoch_fn(s, X, Y, eb.indices, eb.where, key)
    assert epoch_fn._cache_size() == 1
    assert losses.shape == (sampler.steps_per_epoch,) and bool(jnp.all(jnp.isfinite(losses)))
    # The engine's state: a plain C-HMCNN network has no model state and a host sampler no sampler state.
    assert s._fields == ("params", "opt_state", "step", "model_state", "sampler_state")
    assert int(s.step) == 3 * sampler.steps_per_epoch and s.model_state == () and s.sampler_state == ()
    # The fused epoch equals the same steps taken one by one under jit.
    chex.clear_trace_counter()
    step2 = jax.jit(make_train_step(model, opt, ancestry=anc, evaluated=h.evaluated))
    s2 = state
    for e in range(3):
        eb = sampler.epoch(e)
        for idx, w in zip(eb.indices, eb.where, strict=True):
            s2, _ = step2(s2, X[idx], Y[idx], w, key)
    assert step2._cache_size() == 1
    chex.assert_trees_all_close(s.params, s2.params, rtol=1e-5, atol=1e-6)


@pytest.mark.slow  # jit_train's options are also checked bitwise by benchmarks/bench_compile_options.py
def test_jit_train_options_change_speed_not_results():
    # On CPU the donated epoch compiles with region-analysis copy insertion, and trains to bitwise the same
    # parameters as a plain jit; elsewhere no options are passed.
    assert train_compiler_options("cpu") == {"xla_cpu_copy_insertion_use_region_analysis": True}
    assert train_compiler_options("gpu") == {} and train_compiler_options("tpu") == {}
    ds, h, anc, model, opt, state = _setup()
    step = make_train_step(model, opt, ancestry=anc, evaluated=h.evaluated)
    X, Y = jax.device_put(np.asarray(ds.X["train"])), jax.device_put(np.asarray(ds.Y["train"]))
    eb = EpochSampler(X.shape[0], 32, seed=0).epoch(0)
    copy = lambda t: jax.tree.map(jnp.copy, t)  # both runs donate their state
    ours, _ = jit_train(make_train_epoch(step), donate_argnums=(0,))(copy(state), X, Y, eb.indices, eb.where,
                                                                      jax.random.key(1))
    plain, _ = jax.jit(make_train_epoch(step), donate_argnums=(0,))(copy(state), X, Y, eb.indices, eb.where,
                                                                     jax.random.key(1))
    chex.assert_trees_all_equal(ours.params, plain.params)
    # A jaxlib that does not know the option must cost only the speed, not every compile: an option XLA
    # refuses is dropped (asked through `wanted`, which replaces the built-in CPU options).
    assert train_compiler_options("cpu", wanted={"xla_cpu_no_such_option_in_any_xla": True}) == {}
    assert train_compiler_options("cpu", wanted={"xla_cpu_copy_insertion_use_region_analysis": True}) == {
        "xla_cpu_copy_insertion_use_region_analysis": True}
    assert float(jit_train(lambda x: x * 2)(jnp.float32(2.0))) == 4.0


def test_dense_and_sparse_training_agree():
    outs = []
    for c in ("dense", "sparse"):
        ds, h, anc, model, opt, state = _setup(c)
        step = jax.jit(make_train_step(model, opt, ancestry=anc, evaluated=h.evaluated))
        x, y = np.asarray(ds.X["train"][:8]), np.asarray(ds.Y["train"][:8])
        for _ in range(3):
            state, loss = step(state, x, y, np.ones(8, bool), jax.random.key(2))
        outs.append((state.params, loss))
    chex.assert_trees_all_close(outs[0][0], outs[1][0], rtol=1e-4, atol=1e-6)


def test_padded_rows_do_not_contribute():
    ds, h, anc, model, opt, state = _setup()
    # Jitted, as the engine runs it (op by op, the step took ~30 s of the suite).
    step = jax.jit(make_train_step(model, opt, ancestry=anc, evaluated=h.evaluated))
    x, y = np.asarray(ds.X["train"][:4]), np.asarray(ds.Y["train"][:4])
    where = np.array([True, True, False, False])
    garbage_x = x.copy()
    garbage_x[2:] = 1e3
    a, la = step(state, x, y, where, jax.random.key(0))
    b, lb = step(state, garbage_x, y, where, jax.random.key(0))
    chex.assert_trees_all_close(a.params, b.params)
    assert float(la) == float(lb)


def test_train_and_evaluate_is_deterministic_and_learns(tmp_path):
    cfg = TrainConfig(dataset="synthetic", epochs=4).override(SMALL)
    r1 = train_and_evaluate(cfg, str(tmp_path / "a"), progress=False)
    r2 = train_and_evaluate(cfg, str(tmp_path / "b"), progress=False)
    chex.assert_trees_all_equal(r1["params"], r2["params"])
    ap = r1["results"]["test"]["auprc"]
    prior = np.asarray(load_dataset("synthetic").Y["test"])[:, 1:].mean()
    assert ap > 3 * prior  # far above the positive rate (a constant predictor's AP)
    lines = (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["epoch"] for x in lines] == [1, 2, 3, 4]
    saved_file = json.loads((tmp_path / "a" / "config.json").read_text())
    saved = saved_file["config"]
    assert TrainConfig(**saved).resolved() == cfg.resolved()  # the saved config reproduces the run
    # ... with the code that ran it: the commit and the compiler options (which change epoch times)
    assert saved_file["machine"]["compiler_options"] == train_compiler_options()
    assert saved_file["machine"]["hmljax_commit"].removesuffix("-dirty") == source_commit()
    assert saved_file["machine"]["cpu_model"] == cpu_model() != ""  # estimates prefer runs of the same CPU
    import flax
    import optax

    packages = saved_file["machine"]["packages"]  # and the versions besides jax's that change results
    assert packages["flax"] == flax.__version__ and packages["optax"] == optax.__version__
    assert packages["numpy"] == np.__version__ and set(packages) >= {"jaxlib", "orbax-checkpoint"}
    again = evaluate_run(str(tmp_path / "a"))
    assert again["auprc"] == pytest.approx(ap, rel=1e-6)
    with pytest.raises(ValueError, match="already holds checkpoints"):
        train_and_evaluate(cfg, str(tmp_path / "a"), progress=False)


def test_config_errors():
    with pytest.raises(ValueError, match="bad value for dropout"):
        TrainConfig(dataset="synthetic", dropout=1.5).resolved()
    with pytest.raises(ValueError, match="unknown config key 'nope' for method=chmcnn, sampler=epoch; known"):
        TrainConfig().override(["nope=1"])  # nothing near it: no guess
    # A near miss names the key it was probably meant to be, before the full list.
    with pytest.raises(ValueError, match=r"unknown config key 'weight_dcay' .* \(did you mean 'weight_decay'\?\)"):
        TrainConfig().override(["weight_dcay=1e-4"])
    with pytest.raises(ValueError, match=r"unknown method 'hlstmm' \(did you mean 'hlstm'\?\)"):
        TrainConfig().override(["method=hlstmm"]).resolved()
    with pytest.raises(ValueError, match="not an int"):
        TrainConfig().override(["hidden=big"])
    with pytest.raises(ValueError, match="unknown dataset"):
        TrainConfig(dataset="nope").resolved()
    bad_precision = "bad value for matmul_precision: 'tf32' .a name jax.default_matmul_precision takes"
    with pytest.raises(ValueError, match=bad_precision):
        TrainConfig(dataset="synthetic", matmul_precision="tf32").resolved()
    # Keys are strict: one that does not apply to the other settings is an error naming what it needs.
    with pytest.raises(ValueError, match="w0=0.1 does not apply here.*weights="):
        TrainConfig(dataset="synthetic", w0=0.1).resolved()
    with pytest.raises(ValueError, match="patience=5 does not apply here.*protocol=early_stopping"):
        TrainConfig(dataset="synthetic", patience=5).resolved()
    with pytest.raises(ValueError, match="devices=2 does not apply here.*shard="):
        TrainConfig(dataset="synthetic", devices=2).resolved()
    # Conditional keys are None ("not set") until they apply; resolved() then gives them their default, and
    # identity() leaves out the keys that do not apply.
    plain, weighted = TrainConfig(dataset="synthetic").resolved(), TrainConfig(dataset="synthetic", weights="code")
    assert plain.w0 is None and plain.patience is None and weighted.resolved().w0 == 0.25
    assert "w0" not in plain.identity() and None not in plain.identity().values()
    assert weighted.identity()["w0"] == 0.25 and weighted.identity()["weights"] == "code"


@pytest.mark.slow
def test_runs_trace_under_their_matmul_precision(tmp_path):
    # On GPU and TPU, JAX's default precision would silently make float32 matmuls TF32 or bf16: the
    # steps and the evaluation must be traced under the config's setting (true float32 unless asked).
    # A registered method (C-HMCNN with a spying loss and prediction head) records the precision in force
    # each time JAX traces them: a Python side effect runs at trace time only.
    from hmljax.engine import get_method, register_method

    chmcnn = get_method("chmcnn")
    seen = []

    def spy(kind, fn):
        def f(*a, **k):
            seen.append((kind, jax.config.jax_default_matmul_precision))
            return fn(*a, **k)
        return f

    def build(ds, cfg, *, split):
        m = chmcnn.build(ds, cfg, split=split)
        return m._replace(loss=spy("loss", m.loss), predict=spy("predict", m.predict))

    register_method("test_precision_spy", chmcnn.config, build, replace=True)
    cfg = TrainConfig(dataset="synthetic", epochs=1, method="test_precision_spy").override(SMALL)
    assert cfg.matmul_precision == "highest"
    train_and_evaluate(cfg, str(tmp_path / "a"), progress=False)
    assert {k for k, _ in seen} == {"loss", "predict"} and {p for _, p in seen} == {"highest"}
    seen.clear()
    train_and_evaluate(cfg.override(["matmul_precision=tensorfloat32"]), str(tmp_path / "b"), progress=False)
    assert {k for k, _ in seen} == {"loss", "predict"} and {p for _, p in seen} == {"tensorfloat32"}
    seen.clear()
    evaluate_run(str(tmp_path / "b"))
    assert {k for k, _ in seen} == {"predict"} and {p for _, p in seen} == {"tensorfloat32"}
    assert jax.config.jax_default_matmul_precision is None  # restored afterwards


def _restore_params(run_dir):
    import orbax.checkpoint as ocp

    mngr = ocp.CheckpointManager(os.path.abspath(os.path.join(run_dir, "checkpoints")))
    raw = mngr.restore(mngr.latest_step(), args=ocp.args.StandardRestore())
    mngr.close()
    return raw["state"], raw["epoch"]


@pytest.mark.slow  # ~40 s; the default run kills and resumes the toy method (tests/test_engine.py) the same way
def test_kill_and_resume_matches_uninterrupted_run(tmp_path):
    args = ["--dataset", "synthetic", "--epochs", "12", "--no-progress", "checkpoint_every=1", *SMALL]
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    full = tmp_path / "full"
    subprocess.run([sys.executable, "-m", "hmljax", "train", "--out", str(full), *args], check=True, env=env,
                   capture_output=True)
    cut = tmp_path / "cut"
    proc = subprocess.Popen([sys.executable, "-m", "hmljax", "train", "--out", str(cut), *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and not (cut / "checkpoints" / "3").exists():
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (cut / "checkpoints" / "3").exists(), "the run never reached its third checkpoint"
    assert not (cut / "results.json").exists(), "the run finished before it could be killed"
    subprocess.run([sys.executable, "-m", "hmljax", "train", "--out", str(cut), "--resume", *args], check=True,
                   env=env, capture_output=True)
    a, ea = _restore_params(full)
    b, eb = _restore_params(cut)
    assert ea == eb == 12
    chex.assert_trees_all_equal(a, b)
    ra = json.loads((full / "results.json").read_text())["test"]
    rb = json.loads((cut / "results.json").read_text())["test"]
    assert ra["auprc"] == rb["auprc"]
    epochs = [json.loads(x)["epoch"] for x in (cut / "metrics.jsonl").read_text().splitlines()]
    assert epochs == list(range(1, 13))


def test_cli_train_prints_table(tmp_path, capsys):
    from hmljax.cli import main

    assert main(["train", "--dataset", "synthetic", "--epochs", "2", "--out", str(tmp_path / "r"),
                 "--no-progress", *SMALL]) == 0
    out = capsys.readouterr().out
    assert "AUPRC (micro)" in out and "recall @ depth" in out
    assert main(["train", "--dataset", "synthetic", "--out", str(tmp_path / "x"), "lr=-1"]) == 2
    assert "bad value for lr" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()  # nothing written for a bad config


def test_default_run_folder_is_named_from_the_config(tmp_path, capsys, monkeypatch):
    """`dataset=... seed=...` given as keys, not flags, named the fresh folder synthetic-s0."""
    import hmljax.training
    from hmljax.cli import main

    seen = []
    monkeypatch.setattr(hmljax.training, "train_and_evaluate",
                        lambda cfg, run_dir, **kw: seen.append((cfg.seed, run_dir)) or {"results": {"test": {
                            "auprc": 0.5}}})
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--no-progress", "seed=3"]) == 0
    assert main(["train", "--no-progress", "--seed", "2"]) == 0
    assert [(s, os.path.basename(d).rsplit("-", 2)[0]) for s, d in seen] == [(3, "synthetic-s3"), (2, "synthetic-s2")]


def test_results_table_names_both_references(tmp_path, capsys, monkeypatch):
    """A dataset with a published value and RARE's rerun of it shows both beside the AUPRC (seq_GO's differ)."""
    import hmljax.training
    from hmljax.cli import main

    test = {"auprc": 0.3822, "node_f1": 0.0, "node_precision": 0.0, "node_recall": 0.0,
            "node_f1_with_positives": 0.0, "micro_f1": 0.0, "binary_ap": 0.0}
    refs = {"published_auprc": 0.446, "rerun_auprc": [0.386, 0.0028]}
    # `hmljax train` prints the table of what train_and_evaluate returns: stand in for the (long) training.
    monkeypatch.setattr(hmljax.training, "train_and_evaluate",
                        lambda cfg, run_dir, **kw: {"results": {"test": test, **refs}})
    assert main(["train", "--out", str(tmp_path / "a"), "--no-progress"]) == 0
    assert "0.3822   published C-HMCNN: 0.446; RARE's rerun of it: 0.386 ± 0.003" in capsys.readouterr().out
    refs = {"published_auprc": None, "rerun_auprc": None}
    assert main(["train", "--out", str(tmp_path / "b"), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "AUPRC (micro)" in out and "published" not in out


def test_resume_refuses_another_configs_run(tmp_path):
    """Resuming a checkpoint under other settings would train a mix of two runs: refused, naming the setting."""
    from hmljax.training import TrainConfig, config_diff, train_and_evaluate

    cfg = TrainConfig(dataset="synthetic", epochs=1, hidden=16, batch_size=64)
    train_and_evaluate(cfg, str(tmp_path), progress=False)
    assert config_diff(str(tmp_path), cfg) == {}
    other = cfg.replace(hidden=32)
    assert config_diff(str(tmp_path), other) == {"hidden": (16, 32)}
    assert config_diff(str(tmp_path / "empty"), other) == {}
    with pytest.raises(ValueError, match="another config.*hidden: saved 16, given 32"):
        train_and_evaluate(other, str(tmp_path), resume=True, progress=False)
    # Bookkeeping is not the run: another data folder or checkpoint cadence resumes it.
    assert config_diff(str(tmp_path), cfg.replace(checkpoint_every=3, data_dir=str(tmp_path))) == {}
    assert "checkpoint_every" not in cfg.identity() and cfg.identity()["hidden"] == 16
    assert config_diff(str(tmp_path), cfg.replace(checkpoint_minutes=0.5)) == {}


def test_a_checkpoint_is_written_once_checkpoint_minutes_pass(tmp_path):
    """Minutes-long epochs are checkpointed on time, not only every checkpoint_every epochs."""
    from hmljax.training import TrainConfig, train_and_evaluate

    cfg = TrainConfig(dataset="synthetic", epochs=3, hidden=16, batch_size=64, checkpoint_every=100)
    for minutes, kept in [(0, ["3"]), (1e-9, ["2", "3"])]:  # two kept (max_to_keep); 0 turns it off
        out = tmp_path / str(minutes)
        train_and_evaluate(cfg.replace(checkpoint_minutes=minutes), str(out), progress=False)
        assert sorted(p for p in os.listdir(out / "checkpoints") if p.isdigit()) == kept, minutes


def test_diverged_run_stops_without_results(tmp_path):
    """A NaN loss stops the run with an error naming the epoch; no results.json, so no table counts it."""
    from hmljax.training import TrainConfig, train_and_evaluate

    cfg = TrainConfig(dataset="synthetic", epochs=3, hidden=16, batch_size=64, lr=1e30, checkpoint_every=1)
    with pytest.raises(FloatingPointError, match=r"loss is nan at epoch \d"):
        train_and_evaluate(cfg, str(tmp_path), progress=False)
    assert not (tmp_path / "results.json").exists()


_THREAD_MASKS = """
import json, os, sys
sys.path.insert(0, os.getcwd())
{pin}
import jax.numpy as jnp
float(jnp.ones((256, 256)).sum())  # jax's CPU client and its thread pool exist from here on
print(json.dumps(sorted({{tuple(sorted(os.sched_getaffinity(int(t)))) for t in os.listdir("/proc/self/task")}})))
"""


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2,
                    reason="needs Linux and at least 2 usable CPUs")
@pytest.mark.parametrize("pin", ["from hmljax.training import pin_cpus; pin_cpus([{cpu}])",
                                 "from benchmarks import _common as C; C.pin_threads(1)"])
def test_pinning_puts_every_thread_jax_starts_on_the_chosen_cpu(pin):
    """XLA's CPU pool ignores XLA_FLAGS' thread settings and spans every usable CPU; pin_cpus (and the benchmarks'
    --threads 1, which uses it) must leave every thread of the process, jax's pool included, on one CPU."""
    cpu = sorted(os.sched_getaffinity(0))[0]
    code = _THREAD_MASKS.format(pin=pin.format(cpu=cpu))
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [[cpu]]
    unpinned = subprocess.run([sys.executable, "-c", _THREAD_MASKS.format(pin="")], cwd=root, capture_output=True,
                              text=True, check=True)
    assert json.loads(unpinned.stdout.strip().splitlines()[-1]) == [sorted(os.sched_getaffinity(0))]


def test_pin_cpus_refuses_an_empty_set():
    from hmljax.training import pin_cpus

    with pytest.raises(ValueError, match="no CPUs"):
        pin_cpus([])
