"""Benchmarking any engine method (``hmljax.engine.Method``) against its PyTorch levels: shared pieces.

A method's benchmark supplies its problem (the sizes and hyperparameters its
torch levels need), a ``build(level, problem, params, *, dropout, x_np, y_np,
members)`` for its three levels (``_torch_levels.LEVELS``) and the method built
twice by ``build_method``: once with its noise off (dropout 0) for the equality
checks, once as it trains for the timings. These functions do the rest the same
way for every method: the equality checks over several steps, hmljax's jit step
and scan-fused epoch, the levels' timings, the floor and the rows with every
ratio (``bench_train.case_rows``).
"""

from __future__ import annotations

import numpy as np

from benchmarks import _common as C


def flat_params(params) -> dict[str, np.ndarray]:
    """hmljax's ``{layer: {name: array}}`` params keyed ``layer/name``, as the torch levels lay theirs out."""
    return {f"{layer}/{name}": np.asarray(v) for layer, d in params.items() for name, v in d.items()}


def method_trajectory(method, batches,
                      snapshots: list | None = None) -> tuple[dict, list[float], dict[str, np.ndarray]]:
    """hmljax's step of ``method`` over ``batches`` [(x, y)]: (initial params, losses, final params).

    The parameters start from ``init_train_state(method, key(0))``; the losses
    are the step's reported loss; the final parameters are keyed ``layer/name``
    (and, with a ``snapshots`` list, appended to it after every step, the same way).
    """
    import jax
    import jax.numpy as jnp

    from hmljax.engine import Batch, init_train_state, make_step

    state = init_train_state(method, jax.random.key(0))
    params0 = jax.tree.map(np.asarray, state.params)
    step = jax.jit(make_step(method))
    losses = []
    for k, (x, y) in enumerate(batches):
        B = len(x)
        batch = Batch(jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32), jnp.ones(B, bool),
                      jnp.arange(k * B, (k + 1) * B, dtype=jnp.int32), jnp.asarray(k, jnp.int32))
        state, out = step(state, batch, jax.random.key(1))
        losses.append(float(out.report))
        if snapshots is not None:
            snapshots.append(flat_params(state.params))
    return params0, losses, flat_params(state.params)


def run_checks(build, problem, method0, X, Y, B: int, args, skip: dict | None = None,
               explain=None) -> tuple[dict, dict]:
    """The levels' equality checks on the first ``args.check_steps`` batches: (checks, hmljax's initial params).

    ``skip`` maps a level to why it cannot run here (recorded as a failed check with that reason).
    ``explain(problem, batches, hmljax's params after each step, its losses, params0)`` builds the checks'
    ``explain`` for a failed level (``_torch_levels.check_levels``; HLSTM: ``_torch_hlstm.explain_near_tie``).
    """
    from benchmarks import _torch_levels as L

    skip = dict(skip or {})
    if getattr(args, "no_compile", False):
        skip["best effort"] = "skipped: --no-compile"
    batches = [(X[k * B:(k + 1) * B], Y[k * B:(k + 1) * B]) for k in range(args.check_steps)]
    h_snaps: list[dict] = []
    params0, losses, final = method_trajectory(method0, batches, h_snaps)
    checks = L.check_levels(build, problem, params0, (losses, final), batches,
                            [lv for lv in L.LEVELS if lv not in skip],
                            explain=explain and explain(problem, batches, h_snaps, losses, params0))
    checks |= {lv: {"passed": False, "error": why} for lv, why in skip.items()}
    for lv in L.LEVELS:
        c = checks[lv]
        tie = c.get("near_tie")
        print(f"  equality {lv:15s}: " + (f"loss {c['loss_max_abs_diff']:.2e}, params {c['param_max_abs_diff']:.2e}"
                                          f" over {c['steps']} steps" if c.get("passed") else c["error"])
              + (f" (of {c['steps_run']}: at step {tie['step']} LHLoss's min switched at a near-tie, relative gap "
                 f"{max(tie['relative_gap_at_hmljax_point'], tie['relative_gap_at_torch_point']):.1e})"
                 if tie else ""), flush=True)
    return checks, params0


def first_batch(X, Y, B: int):
    """The engine's :class:`Batch` of the first ``B`` rows, every row real: what the step benchmarks feed."""
    import jax.numpy as jnp

    from hmljax.engine import Batch

    return Batch(jnp.asarray(X[:B]), jnp.asarray(Y[:B]), jnp.ones(B, bool), jnp.arange(B, dtype=jnp.int32),
                 jnp.asarray(0, jnp.int32))


def engine_timings(method, X, Y, B: int, scan_steps: int, args, *, step_repeats: int | None = None) -> dict:
    """hmljax's jit step (donated state) and scan-fused epoch over ``scan_steps`` batches: seconds per step.

    Returns bench_train's ``hj`` dict (``jit``, ``scan``: (timing, compile s)), XLA's FLOP count of the
    step and the trained parameters (for the optimiser's timing and size).
    """
    import jax

    from hmljax.data import EpochSampler
    from hmljax.engine import init_train_state, jit_train, make_epoch, make_step

    batch = first_batch(X, Y, B)
    state = init_train_state(method, jax.random.key(0))
    c_s, compiled = C.compile_seconds(jit_train(make_step(method)), state, batch, jax.random.key(2))
    step = jit_train(make_step(method), donate_argnums=(0,))
    holder = [state]

    def run_step():
        holder[0], out = step(holder[0], batch, jax.random.key(2))
        return out.report

    t_step = C.timeit(run_step, repeats=step_repeats or args.repeats * 3, sync=C.jax_sync)
    eb = EpochSampler(X.shape[0], B, seed=0).epoch(0)
    S = min(scan_steps, len(eb.indices))
    idx, wh = jax.device_put(eb.indices[:S]), jax.device_put(eb.where[:S])
    Xd, Yd = jax.device_put(X), jax.device_put(method.train_y)
    ep = [init_train_state(method, jax.random.key(0))]
    ec_s, _ = C.compile_seconds(jit_train(make_epoch(method)), ep[0], Xd, Yd, idx, wh, jax.random.key(3))
    epoch = jit_train(make_epoch(method), donate_argnums=(0,))

    def run_epoch():
        ep[0], losses = epoch(ep[0], Xd, Yd, idx, wh, jax.random.key(3))
        return losses

    t_ep = C.timeit(run_epoch, repeats=max(3, args.repeats // 3), warmup=1, sync=C.jax_sync)
    return {"jit": (t_step, c_s), "scan": ({**t_ep, "median_s": t_ep["median_s"] / S, "steps_per_call": S}, ec_s),
            "flops_xla": C.xla_flops(compiled), "bytes_xla": C.xla_bytes(compiled), "params": ep[0].params}


def case(build, problem, method0, method, X, Y, B: int, args, rates: dict, *, keys: dict, dropout: float,
         flops_analytic: int, scan_steps: int, reps: int, skip: dict | None = None, explain=None) -> list[dict]:
    """One case's rows: the checks, hmljax's two rows and the three levels', with the floor and every ratio.

    ``method0`` is the method with its noise off (checks), ``method`` as it trains
    (timed, the levels built with ``dropout``); ``keys`` label the rows.
    """
    import jax

    from benchmarks.bench_train import case_rows, floor_figures, torch_timings, update_seconds

    checks, params0 = run_checks(build, problem, method0, X, Y, B, args, skip, explain)
    hj = engine_timings(method, X, Y, B, scan_steps, args, step_repeats=reps)
    torch_t, _ = torch_timings(problem, params0, X[:B], Y[:B], checks, args, build=build, dropout=dropout, reps=reps)
    n_params = sum(int(np.size(p)) for p in jax.tree.leaves(hj["params"]))
    adam_s = update_seconds(hj["params"], method.optimizer, args.repeats)
    base = keys | {"B": B, "dropout": dropout} | floor_figures(n_params, hj["flops_xla"], flops_analytic, adam_s,
                                                               rates, bytes_xla=hj["bytes_xla"])
    return case_rows(base, hj, torch_t, checks)
