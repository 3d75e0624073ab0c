"""Issue 21, item 6: what adaptive batch selection costs, alone and inside a training epoch.

    python -m benchmarks.bench_selection --data-dir ../shared/data [--threads 2] [--quick]

On bibtex and Corel5k (the adaptive experiment's fold 0 training rows: MULAN, ``minmax_all``, labels
with <= 20 positives dropped), B = 128, s_e = 2, ceil(n / B) batches per epoch.

A. Selection alone: drawing one batch and refreshing the probabilities from its per-sample losses
   (a fixed random ``[steps, B]`` float32 array: no model runs), per batch and per epoch, after the
   warm-up (the loss table is full and batches are drawn, not taken in index order):

   Issue 19's three PyTorch levels are rows 1 (as published: the released code), 3 (same algorithm: its
   algorithm on torch tensors) and 4 (best effort: compiled); every row has its ratio to each (with the
   same ``update_probs``; the released code has no every-row update, so ``all`` has no as-published level).

   1. ``released code (dicts)``: Adaptivetrain.py as released (CquptZA/MLAdaBatch): Python dicts for the
      loss table and p, ``calculate_probabilities`` over the whole dict after every step, p renormalised
      once per epoch (its ``CustomDataLoader``), ``np.random.choice(..., replace=False, p=p)`` per batch.
   2. ``numpy (released update)``: the same algorithm on float64 numpy arrays (REFERENCE.md §5.3): the draw
      from p renormalised before every batch, the quantised p of the whole table recomputed after every
      step and stored for the batch's rows only (``update_probs=batch``; ``all``: every row, the paper).
   3. ``torch eager``: torch float32 tensors, ``torch.multinomial(p, B, replacement=False)``, the same
      update in torch ops.
   4. ``torch.compile``: the same under ``torch.compile`` (the whole draw + update if it compiles as one
      graph, else the update alone; the row says which). Compile time on its own.
   5. ``hmljax jit step``: the sampler's own ``select`` + ``update`` as one jitted call per batch, the
      state threaded through (synced every batch: a host loop needs the indices each step).
   6. ``hmljax scan epoch``: ``begin_epoch`` and a whole epoch of ``select`` + ``update`` in one
      ``lax.scan``, as the engine's epoch runs them.

   Before timing, on the same float32 loss table: numpy, torch and hmljax's ``quantised_log_probs`` give
   the same p; after one ``update_probs=batch`` update with the same rows and losses they refresh the
   same rows with the same values; every draw has B distinct rows in range (each framework's own RNG).

B. A whole ``method=mlp`` training epoch through the engine (``jit_train(make_epoch(method))``), with
   ``sampler=random`` against ``sampler=adaptive`` (``update_probs=all`` and ``batch``), the adaptive
   epochs timed past the warm-up; the issue's target: adaptive at most 1.3x uniform.
"""

from __future__ import annotations

import math
import os
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks import _common as C  # noqa: E402

DATASETS = ("bibtex", "Corel5k")
BATCH = 128
PRESSURE = 2.0  # s_e, the released script's
WARMUP = 3  # γ: the released script's and hmljax's default


def _extra(p):
    p.add_argument("--data-dir", default=None)


def _config(name: str, data_dir, keys=()):
    """The adaptive experiment's run config for ``name`` (fold 0 of 5, the released code's preprocessing)."""
    from hmljax.training import TrainConfig

    return TrainConfig(dataset=name, data_dir=data_dir, method="mlp", folds=5, fold=0, fold_valid=True,
                       preprocessing="minmax_all", min_label_count=20, batch_size=BATCH, lr=1e-4,
                       weight_decay=1e-4).override(list(keys)).resolved()


# ------------------------------------------------------------------------------- numpy (host, float64)
def numpy_probs(loss_N):
    """The released code's ``calculate_probabilities`` on an array: unnormalised s_e^(Q/n), float64 ``[N]``."""
    import numpy as np

    loss_N = np.asarray(loss_N, np.float64)
    n = len(loss_N)
    q_N = np.ceil(loss_N / (loss_N.max() / n))
    return np.exp(np.log(PRESSURE) / n) ** q_N


class NumpyReleasedUpdate:
    """Level 2: the released algorithm on numpy arrays; p is stored unnormalised, as the released code stores it."""

    def __init__(self, table_N, *, update_probs: str, seed: int = 0):
        import numpy as np

        self.loss = np.asarray(table_N, np.float64).copy()
        self.p = numpy_probs(self.loss)
        self.all = update_probs == "all"
        self.rng = np.random.RandomState(seed)  # the legacy generator behind np.random.choice

    def begin_epoch(self):
        pass

    def step(self, losses_B):
        n = len(self.p)
        idx = self.rng.choice(n, size=BATCH, replace=False, p=self.p / self.p.sum())
        self.update(idx, losses_B)
        return idx

    def update(self, idx, losses_B):
        self.loss[idx] = losses_B
        fresh = numpy_probs(self.loss)
        if self.all:
            self.p = fresh
        else:
            self.p[idx] = fresh[idx]


class ReleasedDicts:
    """Level 1: Adaptivetrain.py's data structures as released: dict loss table and p, p normalised per epoch.

    (The released ``CustomDataLoader`` builds its probability array once, when the epoch's iterator starts,
    so every batch of an epoch is drawn from the epoch-start p; the refreshes reach the next epoch.)
    """

    def __init__(self, table_N, *, seed: int = 0):
        import numpy as np

        self.para_loss = {i: float(v) for i, v in enumerate(np.asarray(table_N, np.float64))}
        self.sample_probabilities = self._calculate_probabilities()
        np.random.seed(seed)  # the released code draws from numpy's global generator

    def _calculate_probabilities(self):
        import numpy as np

        losses_np = np.array(list(self.para_loss.values()))
        delta = max(losses_np) / len(losses_np)  # the builtin max over a numpy array, as released
        n = len(losses_np)
        quantized = np.ceil(losses_np / delta).astype(int)
        probabilities = (np.exp(np.log(PRESSURE) / n)) ** quantized
        return {key: prob for key, prob in zip(self.para_loss.keys(), probabilities, strict=True)}

    def begin_epoch(self):
        import numpy as np

        self.all_indices = list(self.sample_probabilities.keys())
        p = np.array([self.sample_probabilities[i] for i in self.all_indices])
        nz = p != 0
        p[nz] /= p[nz].sum()
        self.all_probabilities = p

    def step(self, losses_B):
        import numpy as np

        idx = list(np.random.choice(self.all_indices, size=BATCH, replace=False, p=self.all_probabilities))
        for i, v in zip(idx, losses_B, strict=True):
            self.para_loss[i] = v.item()  # the released code: one .item() per sample
        current = self._calculate_probabilities()
        for i in idx:
            if i in current:
                self.sample_probabilities[i] = current[i]
        return np.asarray(idx)


# ------------------------------------------------------------------------------------ torch (float32)
def torch_probs(loss_N):
    """Unnormalised s_e^(Q/n) in torch ops, float32 ``[N]`` (``torch.multinomial`` takes unnormalised weights)."""
    import torch

    n = loss_N.shape[0]
    q_N = torch.ceil(loss_N / (loss_N.max() / n)).clamp(0, n)
    return torch.exp(q_N * (math.log(PRESSURE) / n))


def torch_update_batch(loss_N, p_N, idx_B, losses_B):
    """``update_probs=batch`` in place: the table takes the batch's losses, only the batch's rows get a fresh p."""
    loss_N[idx_B] = losses_B
    p_N[idx_B] = torch_probs(loss_N)[idx_B]


def torch_update_all(loss_N, p_N, idx_B, losses_B):
    """``update_probs=all`` in place: every row's p from the refreshed table."""
    loss_N[idx_B] = losses_B
    p_N.copy_(torch_probs(loss_N))


class TorchSelection:
    """Levels 3 and 4: loss table and p as float32 tensors; ``update`` eager or compiled, ``draw`` likewise."""

    def __init__(self, table_N, *, update_probs: str, update=None, step=None):
        import torch

        self.loss = torch.from_numpy(table_N.copy())
        self.p = torch_probs(self.loss)
        self.update = update or (torch_update_all if update_probs == "all" else torch_update_batch)
        self._step = step

    def begin_epoch(self):
        pass

    def step(self, losses_B):
        import torch

        if self._step is not None:  # draw and update compiled as one function
            return self._step(self.loss, self.p, losses_B)
        idx = torch.multinomial(self.p, BATCH, replacement=False)
        self.update(self.loss, self.p, idx, losses_B)
        return idx


def _torch_step_fn(update):
    def step(loss_N, p_N, losses_B):
        import torch

        idx = torch.multinomial(p_N, BATCH, replacement=False)
        update(loss_N, p_N, idx, losses_B)
        return idx

    return step


_INDUCTOR_CACHE = []


def _fresh_inductor_cache() -> None:
    """An empty inductor cache for this process (removed at exit): otherwise the compile time would be that of
    an earlier run's cached kernels. Left alone where the caller chose one."""
    import tempfile

    if not _INDUCTOR_CACHE and "TORCHINDUCTOR_CACHE_DIR" not in os.environ:
        _INDUCTOR_CACHE.append(tempfile.TemporaryDirectory(prefix="bench_selection_inductor_"))
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = _INDUCTOR_CACHE[0].name


def compile_torch(table_N, losses_SxB, *, update_probs: str) -> tuple[TorchSelection | None, dict]:
    """Level 4: ``torch.compile`` the draw + update as one graph (``fullgraph=True``), else the update alone.

    Returns the selection (None if nothing compiles here) and what the row records: which function was
    compiled, its compile seconds (the first call: the compile and one step; the process's first compile
    also warms inductor up, and a later one reuses the kernels it already built) and any error text.
    """
    import torch

    _fresh_inductor_cache()
    update = torch_update_all if update_probs == "all" else torch_update_batch
    info = {}
    losses_B = torch.from_numpy(losses_SxB[0])
    for what, make in (("draw + update, fullgraph", lambda: torch.compile(_torch_step_fn(update), fullgraph=True)),
                       ("update alone", lambda: torch.compile(update))):
        torch._dynamo.reset()
        fn = make()
        sel = TorchSelection(table_N, update_probs=update_probs, **(
            {"step": fn} if what.startswith("draw") else {"update": fn}))
        try:
            t0 = time.perf_counter()
            sel.step(losses_B)
            info["compile_s"] = time.perf_counter() - t0
            info["compiled"] = what
            return sel, info
        except Exception as err:  # noqa: BLE001 - record why (graph break, no C++ compiler ...) and fall back
            info[f"error_{what.split()[0]}"] = f"{type(err).__name__}: {str(err).splitlines()[0][:300]}"
            traceback.print_exc(limit=1)
    return None, info


# ----------------------------------------------------------------------------------- hmljax (device)
def hmljax_sampler(n: int, *, update_probs: str):
    """The engine's ``sampler=adaptive`` with ``selection_loss=unweighted`` (w = 1: the released selection)."""
    import numpy as np

    from hmljax.methods import batch_selection

    return batch_selection.adaptive_sampler(np.ones(n), BATCH, selection_pressure=PRESSURE, warmup=WARMUP,
                                            update_probs=update_probs)


def hmljax_state(sampler, table_N):
    """The sampler's state at the first selecting epoch: the warm-up's loss table, p of the whole table."""
    import jax
    import jax.numpy as jnp

    state = sampler.init(jax.random.key(0))
    state = {**state, "loss": jnp.asarray(table_N)}
    return jax.jit(sampler.begin_epoch, static_argnums=2)(state, jax.random.key(1), WARMUP)


class HmljaxStep:
    """Level 5: one jitted ``select`` + ``update`` per batch; the epoch is a Python loop over them."""

    def __init__(self, sampler, table_N, losses_SxB):
        import jax
        import jax.numpy as jnp

        self.sampler = sampler
        self.state = hmljax_state(sampler, table_N)
        self.losses = jnp.asarray(losses_SxB)  # indexed inside the jit: slicing on the host is a dispatch of its own
        self.key = jax.random.key(2)
        self.t = 0

        def step(state, key, t, losses_SxB):
            idx_B, where_B, state = sampler.select(state, jax.random.fold_in(key, t), t)
            return sampler.update(state, idx_B, where_B, losses_SxB[t]), idx_B

        self._step = jax.jit(step, donate_argnums=(0,))
        # The selecting epochs after the first: begin_epoch only sets the epoch counter (no full recompute).
        self._begin = jax.jit(sampler.begin_epoch, donate_argnums=(0,))

    def begin_epoch(self):
        import jax.numpy as jnp

        self.state = self._begin(self.state, self.key, jnp.int32(WARMUP + 1))
        self.t = 0

    def step(self, losses_B=None):
        import jax.numpy as jnp

        self.state, idx = self._step(self.state, self.key, jnp.int32(self.t), self.losses)
        self.t += 1
        return idx.block_until_ready()


def hmljax_scan_epoch(sampler):
    """Level 6: ``epoch(state, key, epoch, losses [S, B]) -> (state, indices [S, B])`` in one ``lax.scan``."""
    import jax
    import jax.numpy as jnp

    def epoch_fn(state, key, epoch, losses_SxB):
        state = sampler.begin_epoch(state, key, epoch)

        def body(state, t):
            idx_B, where_B, state = sampler.select(state, jax.random.fold_in(key, t), t)
            return sampler.update(state, idx_B, where_B, losses_SxB[t]), idx_B

        return jax.lax.scan(body, state, jnp.arange(sampler.steps_per_epoch, dtype=jnp.int32))

    return epoch_fn


# ------------------------------------------------------------------------------------- equality checks
def check_probs(table_N) -> dict:
    """numpy, torch and hmljax give the same p for the same float32 loss table.

    Tolerance: one quantisation level (s_e^(1/n) - 1, about 1e-4 here), the most float32 rounding can move
    p by, where some ℓ_i / Δ lands within rounding of an integer and its ceil differs; the row records how
    many Q differ.
    """
    import jax.numpy as jnp
    import numpy as np

    from hmljax.methods import batch_selection as bs

    n = len(table_N)
    level = PRESSURE ** (1 / n) - 1
    ref = numpy_probs(table_N)
    ref = n * ref / ref.sum()  # compared as n p: values near 1
    out = {"q_differ_numpy_hmljax": int((np.ceil(table_N.astype(np.float64) / (table_N.max() / n))
                                         != np.asarray(bs.quantisation_index(jnp.asarray(table_N)))).sum())}
    ours = n * np.exp(np.asarray(bs.quantised_log_probs(jnp.asarray(table_N), pressure=PRESSURE), np.float64))
    out["p_max_abs_diff_numpy_hmljax"] = C.assert_close("p numpy vs hmljax", ours, ref, rtol=level, atol=0) / n
    try:
        import torch

        pt = torch_probs(torch.from_numpy(table_N)).double().numpy()
        out["p_max_abs_diff_numpy_torch"] = C.assert_close("p numpy vs torch", n * pt / pt.sum(), ref,
                                                           rtol=level, atol=0) / n
    except ImportError:
        out["p_max_abs_diff_numpy_torch"] = None
    return out


def _split_compare(name, got_N, want_N, idx_B) -> float:
    """``got`` and ``want`` agree on the batch's rows and on the others, each set up to its own scale."""
    import numpy as np

    batch = np.zeros(len(want_N), bool)
    batch[idx_B] = True
    err = 0.0
    for part, rows in (("batch rows", batch), ("stale rows", ~batch)):
        g, w = got_N[rows] / got_N[rows].sum(), want_N[rows] / want_N[rows].sum()
        err = max(err, C.assert_close(f"{name}, {part}", g, w, rtol=1e-5, atol=0))
    return err


def check_batch_update(table_N, losses_B, rng) -> dict:
    """``update_probs=batch``: after one update with the same rows and losses, the stored p agree, and so do
    the draw distributions p / Σp.

    hmljax stores unnormalised log p (``Q log(s_e) / n``, the log of the released code's ``s_e^(Q/n)``), so
    a refreshed row and a stale one weigh the same as in the released code, also after a batch that
    raises ℓ_max (and so changes Δ and every Q).
    """
    import jax
    import jax.numpy as jnp
    import numpy as np

    n = len(table_N)
    idx = rng.permutation(n)[:BATCH].astype(np.int32)
    out = {}
    for case, losses in (("batch", losses_B), ("batch raising l_max", _raise_max(losses_B, table_N))):
        ref = NumpyReleasedUpdate(table_N, update_probs="batch")
        z_old = ref.p.sum()
        ref.update(idx, losses.astype(np.float64))
        z_new = numpy_probs(ref.loss).sum()
        sampler = hmljax_sampler(n, update_probs="batch")
        state = sampler.update(hmljax_state(sampler, table_N), jnp.asarray(idx), jnp.ones(BATCH, bool),
                               jnp.asarray(losses))
        ours = np.exp(np.asarray(jax.device_get(state["logits"]), np.float64))
        key = "" if case == "batch" else "_lmax_up"
        out["stored_p_rows_agree" + key] = _split_compare(f"{case}: hmljax vs numpy", ours, ref.p, idx) < 1e-5
        draw_ref, draw_ours = ref.p / ref.p.sum(), ours / ours.sum()
        # One quantisation level of tolerance: float32 and float64 may round one Q across a boundary.
        out["draw_p_max_rel_diff_hmljax" + key] = C.assert_close(
            f"{case}: hmljax vs numpy draw p", draw_ours, draw_ref, rtol=PRESSURE ** (1 / n) - 1 + 1e-6, atol=0)
        out["normaliser_ratio" + key] = float(z_old / z_new)
        try:
            import torch

            tsel = TorchSelection(table_N, update_probs="batch")
            tsel.update(tsel.loss, tsel.p, torch.from_numpy(idx).long(), torch.from_numpy(losses))
            pt = tsel.p.double().numpy()
            _split_compare(f"{case}: torch vs numpy", pt, ref.p, idx)
            out["draw_p_max_rel_diff_torch" + key] = C.assert_close(
                f"{case}: torch vs numpy draw p", pt / pt.sum(), draw_ref, rtol=1e-5, atol=0)
        except ImportError:
            pass
    return out


def _raise_max(losses_B, table_N):
    """A copy of the batch's losses with one above the table's ℓ_max: Δ, and so every Q, changes."""
    out = losses_B.copy()
    out[0] = 1.5 * table_N.max()
    return out


def check_draws(name, sel, losses_SxB, n) -> None:
    """Every draw of one epoch: B distinct rows in [0, n) (the RNGs differ, so only the form is checked)."""
    import numpy as np

    sel.begin_epoch()
    for t in range(len(losses_SxB)):
        idx = np.asarray(sel.step(_as_input(sel, losses_SxB[t])))
        if idx.shape != (BATCH,) or len(np.unique(idx)) != BATCH or idx.min() < 0 or idx.max() >= n:
            raise AssertionError(f"{name}: draw {t} is not {BATCH} distinct rows in range: {idx}")


def _as_input(sel, losses_B):
    if isinstance(sel, TorchSelection):
        import torch

        return torch.from_numpy(losses_B)
    return losses_B


# ------------------------------------------------------------------------------------------ timings
def time_epochs(sel, losses_SxB, repeats: int) -> dict:
    """Median seconds of one selection epoch (begin_epoch + ``steps`` draws and updates)."""
    inputs = [_as_input(sel, row) for row in losses_SxB]

    def epoch():
        sel.begin_epoch()
        for x in inputs:
            sel.step(x)

    return C.timeit(epoch, repeats=repeats, warmup=1)


def _host_levels(table_N, losses_SxB, repeats: int):
    """Levels 1-2: ``(impl, update_probs, timing, extra)`` of the released dict code and numpy."""
    n = len(table_N)
    sel = ReleasedDicts(table_N)
    check_draws("released code (dicts)", sel, losses_SxB, n)
    # About 10x slower per epoch than the array code: a third of the repeats keeps the run short.
    yield ("released code (dicts)", "batch", time_epochs(sel, losses_SxB, max(3, repeats // 3)),
           {"note": "p normalised once per epoch, as released"})
    for up in ("batch", "all"):
        sel = NumpyReleasedUpdate(table_N, update_probs=up)
        check_draws("numpy", sel, losses_SxB, n)
        impl = "numpy (released update)" if up == "batch" else "numpy (paper's update)"
        yield impl, up, time_epochs(sel, losses_SxB, repeats), {}


def _torch_levels(table_N, losses_SxB, repeats: int):
    """Levels 3-4, or one row per variant saying why they were skipped."""
    n = len(table_N)
    try:
        import torch  # noqa: F401
    except ImportError:
        for up in ("batch", "all"):
            yield "torch eager", up, None, {"note": "skipped: torch is not installed"}
        return
    for up in ("batch", "all"):
        sel = TorchSelection(table_N, update_probs=up)
        check_draws("torch eager", sel, losses_SxB, n)
        yield "torch eager", up, time_epochs(sel, losses_SxB, repeats), {}
        sel, info = compile_torch(table_N, losses_SxB, update_probs=up)
        if sel is None:
            yield "torch.compile", up, None, {**info, "note": "torch.compile failed here: see the error fields"}
            continue
        check_draws("torch.compile", sel, losses_SxB, n)
        yield f"torch.compile, {info['compiled']}", up, time_epochs(sel, losses_SxB, repeats), info


def _hmljax_levels(table_N, losses_SxB, repeats: int):
    """Levels 5-6: the sampler's jitted step per batch and its scan epoch."""
    n, steps = len(table_N), len(losses_SxB)
    noise_us = gumbel_noise_seconds(n, steps, repeats) * 1e6
    for up in ("batch", "all"):
        sampler = hmljax_sampler(n, update_probs=up)
        sel = HmljaxStep(sampler, table_N, losses_SxB)
        check_draws("hmljax jit step", sel, losses_SxB, n)
        yield "hmljax jit step", up, time_epochs(sel, losses_SxB, repeats), {}
        t, compile_s = time_hmljax_scan(sampler, table_N, losses_SxB, repeats)
        yield "hmljax scan epoch", up, t, {"compile_s": compile_s, "gumbel_noise_us": noise_us}


def selection_rows(name: str, n: int, args, rng) -> list[dict]:
    """Part A on one dataset: the checks, then every level timed; one row per level and update_probs."""
    import numpy as np

    steps = -(-n // BATCH)
    # Positive losses spread like a per-sample BCE's; float32, as every side records them.
    table = rng.gamma(2.0, 0.05, n).astype(np.float32)
    losses = rng.gamma(2.0, 0.05, (steps, BATCH)).astype(np.float32)
    checks = {**check_probs(table), **check_batch_update(table, losses[0], rng)}
    print(f"{name}: checks {checks}", flush=True)
    base = {"part": "selection", "dataset": name, "n": n, "B": BATCH, "steps": steps, "checks": checks}
    rows = []
    for group in (_host_levels, _torch_levels, _hmljax_levels):
        for impl, up, t, extra in group(table, losses, args.repeats):
            row = {**base, "impl": impl, "update_probs": up, **extra}
            if t is not None:  # check_draws raised before any timing whose draws were wrong
                row.update(draws_checked=True, epoch_ms=t["median_s"] * 1e3, batch_us=t["median_s"] / steps * 1e6,
                           repeats=t["repeats"], load_avg_1m=os.getloadavg()[0])
                print(f"{name} {impl:48s} {up:5s} {row['batch_us']:9.1f} us/batch {row['epoch_ms']:8.2f} ms/epoch"
                      + (f"  (compile {extra['compile_s']:.1f} s)" if extra.get("compile_s") else ""), flush=True)
            else:
                print(f"{name} {impl} {up}: {extra.get('note')}", flush=True)
            rows.append(row)
    return level_ratios(rows)


def level_of(impl: str) -> str | None:
    """Issue 19's PyTorch level a row stands for (None: numpy, a host reference, or hmljax itself)."""
    if impl == "released code (dicts)":
        return "as published"
    if impl == "torch eager":
        return "same algorithm"
    if impl.startswith("torch.compile"):
        return "best effort"
    return None


def level_ratios(rows: list[dict]) -> list[dict]:
    """Each row's ``level`` and its ratio to numpy and to every level on its dataset with its ``update_probs``.

    The released code refreshes only the batch's rows, so the paper's every-row
    update (``all``) has no as-published level: that ratio is None.
    """
    for r in rows:
        r["level"] = level_of(r["impl"])
    for ds, up in {(r["dataset"], r["update_probs"]) for r in rows}:
        group = [r for r in rows if (r["dataset"], r["update_probs"]) == (ds, up) and "epoch_ms" in r]
        numpy_ms = next((r["epoch_ms"] for r in group if r["impl"].startswith("numpy")), None)
        by_level = {r["level"]: r["epoch_ms"] for r in group if r["level"]}
        for r in group:
            r["speedup_vs_numpy"] = numpy_ms / r["epoch_ms"] if numpy_ms else None
            for lv in ("as published", "same algorithm", "best effort"):
                ms = by_level.get(lv)
                r[f"speedup_vs_{lv.replace(' ', '_')}"] = ms / r["epoch_ms"] if ms else None
    return rows


def gumbel_noise_seconds(n: int, steps: int, repeats: int) -> float:
    """Per step, the Gumbel noise of ``n`` rows alone inside a scan: the part of hmljax's draw that
    numpy's ``choice`` does not pay (it draws about B uniforms, hmljax's top-k one per row)."""
    import jax
    import jax.numpy as jnp

    @jax.jit
    def noise(key):
        def body(acc, t):
            return acc + jnp.max(jax.random.gumbel(jax.random.fold_in(key, t), (n,), jnp.float32)), None

        return jax.lax.scan(body, jnp.float32(0), jnp.arange(steps))[0]

    key = jax.random.key(4)
    return C.timeit(lambda: noise(key), repeats=repeats, sync=C.jax_sync)["median_s"] / steps


def time_hmljax_scan(sampler, table_N, losses_SxB, repeats: int) -> tuple[dict, float]:
    """Level 6 timed: the scan epoch from the first selecting epoch's state, past the warm-up; and its compile
    seconds. The first epoch's draws are checked like the other levels'."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from hmljax.engine import jit_train

    n = len(table_N)
    epoch_fn = hmljax_scan_epoch(sampler)
    losses_d, key = jnp.asarray(losses_SxB), jax.random.key(3)
    compile_s, _ = C.compile_seconds(jit_train(epoch_fn), hmljax_state(sampler, table_N), key,
                                     jnp.int32(WARMUP + 1), losses_d)
    run = jit_train(epoch_fn, donate_argnums=(0,))  # as the engine runs its epoch: the state updated in place
    holder = [hmljax_state(sampler, table_N)]
    holder[0], idx_SxB = run(holder[0], key, jnp.int32(WARMUP), losses_d)
    for t, idx in enumerate(np.asarray(idx_SxB)):
        if len(np.unique(idx)) != BATCH or idx.min() < 0 or idx.max() >= n:
            raise AssertionError(f"hmljax scan epoch: draw {t} is not {BATCH} distinct rows in range: {idx}")

    def scan_epoch():
        holder[0], idx = run(holder[0], key, jnp.int32(WARMUP + 1), losses_d)
        return idx

    return C.timeit(scan_epoch, repeats=repeats, sync=C.jax_sync), compile_s


def _alternating(fns: dict, *, repeats: int, block: int = 5) -> dict:
    """Median epoch seconds of each function, timed in alternating blocks so a change in load hits all."""
    import statistics

    medians = {k: [] for k in fns}
    for fn in fns.values():  # compile_seconds clears jax's caches: the first call may compile again
        C.jax_sync(fn())
    for _ in range(max(1, repeats // block)):
        for k, fn in fns.items():
            medians[k].append(C.timeit(fn, repeats=block, warmup=0, sync=C.jax_sync)["median_s"])
    return {k: statistics.median(v) for k, v in medians.items()}


def training_rows(name: str, args) -> list[dict]:
    """Part B on one dataset: a ``method=mlp`` epoch with uniform against adaptive batches."""
    import jax
    import jax.numpy as jnp

    from hmljax.engine import init_train_state, jit_train, make_epoch
    from hmljax.training import build_method, load_run_dataset

    variants = {("random", None): ["sampler=random"], ("adaptive", "all"): ["sampler=adaptive"],
                ("adaptive", "batch"): ["sampler=adaptive", "update_probs=batch"]}
    ds = load_run_dataset(_config(name, args.data_dir))
    fns, info = {}, {}
    for v, keys in variants.items():
        cfg = _config(name, args.data_dir, keys)
        _, method, _ = build_method(cfg, ds)
        X, Y = jax.device_put(method.train_x), jax.device_put(method.train_y)
        key = jax.random.key(0)
        state = init_train_state(method, key, sampler_key=jax.random.fold_in(key, 0x5A3D))
        with jax.default_matmul_precision(cfg.matmul_precision):
            compile_s, _ = C.compile_seconds(jit_train(make_epoch(method)), state, X, Y, jnp.int32(WARMUP + 1), key)
            epoch = jit_train(make_epoch(method), donate_argnums=(0,))
            for e in range(WARMUP + 1):  # the warm-up and the first selecting epoch: a real loss table
                state, losses = epoch(state, X, Y, jnp.int32(e), key)
            jax.block_until_ready(losses)
        holder = [state]

        def run(holder=holder, epoch=epoch, X=X, Y=Y, key=key, cfg=cfg):
            with jax.default_matmul_precision(cfg.matmul_precision):
                holder[0], losses = epoch(holder[0], X, Y, jnp.int32(WARMUP + 1), key)
            return losses

        fns[v], info[v] = run, {"compile_s": compile_s, "steps": method.sampler.steps_per_epoch,
                                "n": int(method.train_x.shape[0])}
    times = _alternating(fns, repeats=args.repeats)
    uniform = times[("random", None)]
    rows = []
    for (sampler, up), sec in times.items():
        steps = info[(sampler, up)]["steps"]
        rows.append({"part": "training", "dataset": name, "n": info[(sampler, up)]["n"], "B": BATCH,
                     "steps": steps, "impl": f"mlp epoch, sampler={sampler}", "update_probs": up,
                     "epoch_ms": sec * 1e3, "step_us": sec / steps * 1e6, "ratio_vs_uniform": sec / uniform,
                     "selection_us_per_step": (sec - uniform) / steps * 1e6,
                     "compile_s": info[(sampler, up)]["compile_s"], "load_avg_1m": os.getloadavg()[0]})
        r = rows[-1]
        print(f"{name} {r['impl']:34s} {up or '':5s} {r['epoch_ms']:8.2f} ms/epoch  x{r['ratio_vs_uniform']:.2f} "
              "uniform", flush=True)
    return rows


def main():
    args = C.parse_args(__doc__, _extra)
    import numpy as np

    from hmljax.training import build_method

    rows = []
    for name in DATASETS:
        _, method, _ = build_method(_config(name, args.data_dir, ["sampler=random"]))
        n = int(method.train_x.shape[0])
        rows += selection_rows(name, n, args, np.random.default_rng(0))
        rows += training_rows(name, args)
    path = C.write_rows("selection", rows, args)
    C.print_table([r for r in rows if r["part"] == "selection"],
                  ["dataset", "n", "impl", "update_probs", "batch_us", "epoch_ms", "speedup_vs_as_published",
                   "speedup_vs_same_algorithm", "speedup_vs_best_effort", "speedup_vs_numpy", "compile_s"])
    C.print_table([r for r in rows if r["part"] == "training"],
                  ["dataset", "n", "impl", "update_probs", "epoch_ms", "step_us", "ratio_vs_uniform",
                   "selection_us_per_step", "compile_s"])
    print("wrote", path)


if __name__ == "__main__":
    main()
