"""Can hmljax's Adam update be written so XLA's CPU backend does it in one pass? Three rewrites, timed.

    python -m benchmarks.bench_adam_layouts [--threads 2] [--params 5000000]

At batch 4 the GO step and the E = 10 ensemble are bound by the optimiser's memory traffic (sections 7 and
15): XLA's plan for hmljax's Adam (``hmljax.engine.adam_coupled``) plus ``apply_updates`` moves 48 bytes per
parameter, torch's fused Adam 28 (p, g, m, v read; p, m, v written). This times the update alone, on one flat
parameter of ``--params`` floats (donated, so it updates in place), as hmljax writes it and as three rewrites
that compute the same numbers in the same order:

- ``one function``: p, m and v computed by one function per leaf (one expression for XLA to fuse, three
  outputs);
- ``stacked moments``: m and v kept as one ``[2, n]`` array, so the moments are one output;
- ``chunked``: a ``fori_loop`` over cache-sized chunks, each read once and written back with
  ``dynamic_update_slice``, so that the repeated reads of a chunk hit the cache.

Each row records XLA's ``bytes accessed`` per parameter and whether the parameters equal hmljax's bitwise
after 3 updates (and, for every row, the largest relative difference from them).

Beside them, what does make it one pass (section 19): hmljax's fused CPU kernel (``adam_kernel=fused``,
``hmljax.engine.adam_coupled_fused``: a C++ loop called through XLA's FFI, in place), and PyTorch's own
``torch.optim.Adam(weight_decay=wd)`` with ``fused=True`` and with ``foreach=True`` on the same vector
(when torch is installed; ``--no-torch`` leaves them out).
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks import _common as C  # noqa: E402

LR, WD, B1, B2, EPS = 1e-3, 1e-5, 0.9, 0.999, 1e-8


def _moments(g, p, m, v, c1, c2):
    """optax's ops in optax's order: coupled decay, both moments, the bias-corrected step, then p + u."""
    import jax.numpy as jnp

    g = g + WD * p
    m = (1 - B1) * g + B1 * m
    v = (1 - B2) * (g * g) + B2 * v
    u = -LR * ((m / c1) / (jnp.sqrt(v / c2 + 0.0) + EPS))
    return p + u, m, v


def _corrections(t):
    import jax.numpy as jnp

    t = t + 1
    tf = t.astype(jnp.float32)
    return t, 1 - B1**tf, 1 - B2**tf


def variants(n: int, chunk: int):
    """name -> (init(p) -> state, update(state, g) -> state); state[0] is always the parameter vector."""
    import jax
    import jax.numpy as jnp
    import optax

    from hmljax.engine import adam_coupled, adam_coupled_fused

    opt = adam_coupled(lr=LR, weight_decay=WD)  # what hmljax trains with: optax's add_decayed_weights + adam
    try:
        fused = adam_coupled_fused(lr=LR, weight_decay=WD, b1=B1, b2=B2, eps=EPS)
    except RuntimeError as err:  # no C++ compiler here: the other rows still stand
        print(f"bench_adam_layouts: the fused kernel's row left out: {err}", flush=True)
        fused = None

    def optax_update(state, g):
        p, s = state
        u, s = opt.update(g, s, p)
        return optax.apply_updates(p, u), s

    def fused_update(state, g):
        p, s = state
        return fused.apply(g, s, p)

    def one_function(state, g):
        p, m, v, t = state
        t, c1, c2 = _corrections(t)
        return (*_moments(g, p, m, v, c1, c2), t)

    def stacked(state, g):
        p, mv, t = state
        t, c1, c2 = _corrections(t)
        p, m, v = _moments(g, p, mv[0], mv[1], c1, c2)
        return p, jnp.stack([m, v]), t

    def chunked(state, g):
        p, m, v, t = state
        t, c1, c2 = _corrections(t)

        def body(i, pmv):
            s = i * chunk
            sl = [jax.lax.dynamic_slice(a, (s,), (chunk,)) for a in (g, *pmv)]
            new = _moments(*sl, c1, c2)
            return tuple(jax.lax.dynamic_update_slice(a, b, (s,)) for a, b in zip(pmv, new, strict=True))

        return (*jax.lax.fori_loop(0, n // chunk, body, (p, m, v)), t)

    z = lambda p: jnp.zeros_like(p)  # noqa: E731
    t0 = lambda: jnp.zeros((), jnp.int32)  # noqa: E731
    return {"hmljax (optax chain + apply_updates)": (lambda p: (p, opt.init(p)), optax_update),
            "one function": (lambda p: (p, z(p), z(p), t0()), one_function),
            "stacked moments": (lambda p: (p, jnp.zeros((2, *p.shape)), t0()), stacked),
            f"chunked ({chunk:,} per chunk)": (lambda p: (p, z(p), z(p), t0()), chunked)} | (
        {"fused CPU kernel (adam_kernel=fused)": (lambda p: (p, fused.init(p)), fused_update)} if fused else {})


def torch_rows(p0, g_np, ref, repeats: int) -> list[dict]:
    """torch.optim.Adam(lr, weight_decay=wd) with ``fused=True`` and ``foreach=True`` on one flat vector."""
    import numpy as np
    import torch

    rows = []
    for impl in ("fused", "foreach"):
        p = torch.nn.Parameter(torch.from_numpy(p0.copy()))
        p.grad = torch.from_numpy(np.asarray(g_np).copy())
        opt = torch.optim.Adam([p], lr=LR, betas=(B1, B2), eps=EPS, weight_decay=WD, **{impl: True})
        with torch.no_grad():
            for _ in range(3):
                opt.step()
            p3 = p.detach().numpy().copy()
        t = C.timeit(opt.step, repeats=repeats, sync=C.torch_sync)
        rows.append({"variant": f"torch.optim.Adam({impl}=True)", "params": p0.size, "median_ms": t["median_s"] * 1e3,
                     "min_ms": t["min_s"] * 1e3, "repeats": t["repeats"], "bytes_per_param_xla": None,
                     "bitwise_equal_to_hmljax": bool(np.array_equal(p3, ref)),
                     "max_rel_diff_vs_hmljax": float(np.max(np.abs(p3 - ref)) / np.max(np.abs(ref)))})
    return rows


def main() -> None:
    args = C.parse_args(__doc__, lambda p: (p.add_argument("--params", type=C.count, default=5_000_000),
                                            p.add_argument("--chunk", type=C.count, default=131_072),
                                            p.add_argument("--no-torch", action="store_true")))
    import jax
    import numpy as np

    if args.params < args.chunk:
        raise SystemExit(f"bench_adam_layouts: --params {args.params} is less than one --chunk ({args.chunk})")
    n = args.params - args.params % args.chunk  # whole chunks, the same n for every variant
    key = jax.random.key(0)
    p0 = np.asarray(jax.random.normal(key, (n,)) * 0.05)
    g = jax.random.normal(jax.random.fold_in(key, 1), (n,)) * 1e-3
    rows, ref = [], None
    for name, (init, update) in variants(n, args.chunk).items():
        f = jax.jit(update, donate_argnums=(0,))
        state = init(jax.numpy.asarray(p0))
        compiled = f.lower(state, g).compile()
        for _ in range(3):
            state = f(state, g)
        p3 = np.asarray(state[0])
        ref = p3 if ref is None else ref
        holder = [state]

        def run(f=f, holder=holder):
            holder[0] = f(holder[0], g)
            return holder[0]

        t = C.timeit(run, repeats=args.repeats, sync=C.jax_sync)
        b = C.xla_bytes(compiled)
        rows.append({"variant": name, "params": n, "median_ms": t["median_s"] * 1e3, "min_ms": t["min_s"] * 1e3,
                     "repeats": t["repeats"],
                     # XLA counts no bytes for a custom call: the kernel's row has none to show
                     "bytes_per_param_xla": b / n if b and "kernel" not in name else None,
                     "bitwise_equal_to_hmljax": bool(np.array_equal(p3, ref)),
                     "max_rel_diff_vs_hmljax": float(np.max(np.abs(p3 - ref)) / np.max(np.abs(ref)))})
        print(f"{name:40s} {t['median_s'] * 1e3:9.2f} ms  {rows[-1]['bytes_per_param_xla'] or 0:6.1f} B/param  "
              f"equal: {rows[-1]['bitwise_equal_to_hmljax']}", flush=True)
    if not args.no_torch:
        try:
            import torch  # noqa: F401
        except ImportError:
            print("torch not installed: its rows left out (pip install -e '.[bench]')")
        else:
            rows += torch_rows(p0, g, ref, args.repeats)
            for r in rows[-2:]:
                print(f"{r['variant']:40s} {r['median_ms']:9.2f} ms  equal: {r['bitwise_equal_to_hmljax']}", flush=True)
    base = rows[0]["median_ms"]
    for r in rows:
        r["x_hmljax"] = base / r["median_ms"]
    print(C.print_table(rows, ["variant", "median_ms", "x_hmljax", "bytes_per_param_xla", "bitwise_equal_to_hmljax",
                               "max_rel_diff_vs_hmljax"]))
    print("wrote", C.write_rows("adam_layouts", rows, args))


if __name__ == "__main__":
    main()
