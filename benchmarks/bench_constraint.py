"""Item 1: the max-constraint module, hmljax dense and sparse vs PyTorch at three levels.

    python -m benchmarks.bench_constraint --data-dir ../shared/data [--threads 2] [--repeats 30]

PyTorch (``benchmarks/_torch_levels.py``): **as published**, C-HMCNN's
``get_constr_out``: broadcast the probabilities to float64 [B, N, N], multiply by
R, max over the last axis; **dense float32**, the same in float32 (the reference
of earlier tables, ``speedup_vs_torch``); **same algorithm**, hmljax's sparse
level-wise max with ``scatter_reduce(amax)`` along the hierarchy's edges; **best
effort**, that under ``torch.compile(fullgraph=True)`` (the gradient through
``torch.func.grad``; compile time apart). Hierarchies are the real cellcycle_FUN
(N = 500) and cellcycle_GO (N = 4126) ones. Every side is checked equal to
hmljax (values exactly, gradients to 1e-6) before timing. Peak memory is the
resident-set growth during one call (all sides measured the same way); for jax
XLA's own plan is reported too. Sizes whose dense [B, N, N] form would not fit
in 60% of RAM are skipped and listed.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks import _common as C  # noqa: E402  (pins threads before jax/torch load)


def _extra(p):
    p.add_argument("--data-dir", default=None)
    p.add_argument("--batches", type=int, nargs="*", default=None, help="default 4 64 256 (--quick: 4 64)")
    p.add_argument("--no-compile", action="store_true", help="skip the best-effort (torch.compile) level")


def best_effort_cases(name, B, L, edges, xt, gt, ref_fwd, ref_grad, compile_info) -> list:
    """The sparse constraint and its gradient, each one ``torch.compile(fullgraph=True)`` graph, checked."""
    import time

    import torch
    import torch._dynamo

    import benchmarks._common as C

    torch._dynamo.reset()
    fwd = torch.compile(lambda x: L.mcm_sparse(x, edges), fullgraph=True)
    fb = torch.compile(lambda x, g: torch.func.grad(lambda x: (L.mcm_sparse(x, edges) * g).sum())(x),
                       fullgraph=True)
    out = []
    for mode, fn, args, ref in (("fwd", fwd, (xt,), ref_fwd), ("fwd+bwd", fb, (xt, gt), ref_grad)):
        t0 = time.perf_counter()
        try:
            with torch.no_grad() if mode == "fwd" else torch.enable_grad():
                got = fn(*args)
        except Exception as e:  # noqa: BLE001 - no C++ compiler, an unsupported op: the level is unavailable
            print(f"{name} B={B} torch best effort {mode}: unavailable ({type(e).__name__}: {e})", flush=True)
            continue
        compile_info[(name, B, "torch best effort", mode)] = time.perf_counter() - t0
        C.assert_close(f"{name} B={B} best effort {mode}", got.cpu().numpy(), ref, rtol=0 if mode == "fwd" else 1e-6,
                       atol=0 if mode == "fwd" else 1e-6)
        out.append(("torch best effort", mode, lambda fn=fn, args=args: fn(*args), False, None))
    return out


def torch_mcm(x, R):
    """C-HMCNN's formulation: max_j R[i, j] * x[b, j] over a materialised [B, N, N] tensor."""
    import torch

    B, N = x.shape
    return torch.max(R.unsqueeze(0).expand(B, N, N) * x.unsqueeze(1).expand(B, N, N), dim=2).values


def main():
    args = C.parse_args(__doc__, _extra)
    import jax
    import jax.numpy as jnp
    import numpy as np
    import torch

    from benchmarks import _torch_levels as L
    from hmljax.constraints import constraint_graph, max_constraint, max_constraint_sparse
    from hmljax.data import load_dataset

    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    rows, skipped, compile_info = [], [], {}
    batches = args.batches or ([4, 64] if args.quick else [4, 64, 256])
    for name in ("cellcycle_FUN", "cellcycle_GO"):
        h = load_dataset(name, data_dir=args.data_dir).hierarchy
        N = h.num_nodes
        R_np = np.asarray(h.ancestry)
        graph = constraint_graph(h)
        R_jax = jnp.asarray(R_np)
        R_t = torch.as_tensor(R_np.astype(np.float32))
        R64_1xNxN = torch.as_tensor(R_np.astype(np.float64)).unsqueeze(0)
        edges = L.edge_index(L.Problem(h, 1, 1))
        dense_f = jax.jit(max_constraint)
        sparse_f = jax.jit(max_constraint_sparse)

        def fb(f, anc):
            return jax.jit(jax.grad(lambda x, g: (f(x, anc) * g).sum()))

        dense_fb, sparse_fb = fb(max_constraint, R_jax), fb(max_constraint_sparse, graph)
        for B in batches:
            rng = np.random.default_rng(B)
            x_np = rng.uniform(0.01, 1.0, (B, N)).astype(np.float32)  # probabilities: R * x needs x >= 0
            g_np = rng.standard_normal((B, N)).astype(np.float32)
            x, g = jax.device_put(x_np), jax.device_put(g_np)
            xt, gt = torch.as_tensor(x_np), torch.as_tensor(g_np)
            dense_bytes = B * N * N * 4
            torch_fits = 3 * dense_bytes < 0.6 * ram  # product, broadcast view copy, and the backward's mask

            def torch_fwd(mcm=torch_mcm, x=xt):
                with torch.no_grad():
                    return mcm(x, R_t)

            def torch_fb(mcm=torch_mcm, x=xt):
                xr = x.clone().requires_grad_(True)
                mcm(xr, R_t).backward(gt)
                return xr.grad

            def as_published(x, R):  # get_constr_out casts to float64 itself
                return L.get_constr_out(x, R64_1xNxN)

            def sparse(x, R):
                return L.mcm_sparse(x, edges)

            # --- equality first ---
            ref_fwd = np.asarray(sparse_f(x, graph))
            ref_grad = np.asarray(sparse_fb(x, g))
            torch_cases = [("torch same algorithm", torch_fwd, torch_fb, sparse)]
            if torch_fits:
                torch_cases.append(("torch dense float32", torch_fwd, torch_fb, torch_mcm))
            if 3 * dense_bytes * 2 < 0.6 * ram:
                torch_cases.append(("torch as published", torch_fwd, torch_fb, as_published))
            else:
                skipped.append(f"torch as published {name} B={B}: [B, N, N] float64 is "
                               f"{2 * dense_bytes / 2**30:.1f} GiB per tensor, over 60% of {ram / 2**30:.0f} GiB RAM "
                               "with its backward")
            cases = [("hmljax sparse", "fwd", lambda: sparse_f(x, graph), True, (sparse_f, x, graph)),
                     ("hmljax sparse", "fwd+bwd", lambda: sparse_fb(x, g), True, (sparse_fb, x, g))]
            for impl, fwd, fwdbwd, mcm in torch_cases:
                C.assert_close(f"{name} B={B} {impl} fwd", fwd(mcm).float().cpu().numpy(), ref_fwd, rtol=0, atol=0)
                C.assert_close(f"{name} B={B} {impl} grad", fwdbwd(mcm).float().cpu().numpy(), ref_grad, rtol=1e-6,
                               atol=1e-6)
                cases += [(impl, "fwd", lambda fwd=fwd, mcm=mcm: fwd(mcm), False, None),
                          (impl, "fwd+bwd", lambda fwdbwd=fwdbwd, mcm=mcm: fwdbwd(mcm), False, None)]
            if not args.no_compile:
                cases += best_effort_cases(name, B, L, edges, xt, gt, ref_fwd, ref_grad, compile_info)
            dense_plan = C.xla_memory_bytes(dense_fb.lower(x, g).compile())
            dense_fits = dense_plan is None or dense_plan < 0.6 * ram
            if dense_fits:
                C.assert_close(f"{name} B={B} dense fwd", np.asarray(dense_f(x, R_jax)), ref_fwd, rtol=0, atol=0)
                C.assert_close(f"{name} B={B} dense grad", np.asarray(dense_fb(x, g)), ref_grad)
                cases += [("hmljax dense", "fwd", lambda: dense_f(x, R_jax), True, (dense_f, x, R_jax)),
                          ("hmljax dense", "fwd+bwd", lambda: dense_fb(x, g), True, (dense_fb, x, g))]
            else:
                skipped.append(f"hmljax dense {name} B={B}: XLA plans {dense_plan / 2**30:.1f} GiB")
            if not torch_fits:
                skipped.append(f"torch dense float32 {name} B={B}: [B, N, N] float32 is {dense_bytes / 2**30:.1f} "
                               f"GiB per tensor, over 60% of {ram / 2**30:.0f} GiB RAM with its backward")
            for impl, mode, fn, is_jax, aot in cases:
                row = {"hierarchy": name, "N": N, "B": B, "impl": impl, "mode": mode}
                if (name, B, impl, mode) in compile_info:
                    row["compile_s"] = compile_info[(name, B, impl, mode)]
                if is_jax:
                    secs, compiled = C.compile_seconds(aot[0], *aot[1:])
                    row["compile_s"] = secs
                    row["xla_plan_bytes"] = C.xla_memory_bytes(compiled)
                reps = args.repeats if (B * N * N < 2e8 or not args.quick) else 2
                if B * N * N > 1e9:
                    reps = min(reps, 5)  # the dense reference is seconds per call here
                t = C.timeit(fn, repeats=reps, sync=C.jax_sync if is_jax else C.torch_sync)
                row.update(t)
                row["peak_rss_bytes"] = C.peak_rss_delta(lambda fn=fn, is_jax=is_jax: (
                    C.jax_sync(fn()) if is_jax else fn()))
                rows.append(row)
                print(f"{name} B={B:4d} {impl:16s} {mode:8s} {t['median_s'] * 1e3:10.3f} ms  "
                      f"rss+{(row['peak_rss_bytes'] or 0) / 2**20:8.1f} MiB", flush=True)
    # Ratios against each torch level, per (hierarchy, B, mode); speedup_vs_torch is against dense float32
    # (the reference of earlier tables), memory ratios against it and against the as-published level.
    refs = {impl: {(r["hierarchy"], r["B"], r["mode"]): r for r in rows if r["impl"] == impl}
            for impl in ("torch as published", "torch dense float32", "torch same algorithm", "torch best effort")}
    for r in rows:
        key = (r["hierarchy"], r["B"], r["mode"])
        mine = max(r.get("peak_rss_bytes") or 0, r.get("xla_plan_bytes") or 0)
        for impl, table in refs.items():
            t = table.get(key)
            if t is None:
                continue
            label = impl.removeprefix("torch ").replace(" ", "_")
            r[f"speedup_vs_{label}"] = t["median_s"] / r["median_s"]
            if impl in ("torch as published", "torch dense float32") and mine and t.get("peak_rss_bytes"):
                r[f"memory_ratio_vs_{label}"] = t["peak_rss_bytes"] / mine
        r["speedup_vs_torch"] = r.get("speedup_vs_dense_float32")
        r["memory_ratio_vs_torch"] = r.get("memory_ratio_vs_dense_float32")
    for r in rows:
        r["median_ms"] = r["median_s"] * 1e3
        r["peak_rss_MiB"] = (r.get("peak_rss_bytes") or 0) / 2**20
    path = C.write_rows("constraint", rows + [{"skipped": skipped}], args)
    C.print_table(rows, ["hierarchy", "B", "impl", "mode", "median_ms", "speedup_vs_as_published",
                         "speedup_vs_dense_float32", "speedup_vs_same_algorithm", "speedup_vs_best_effort",
                         "peak_rss_MiB", "memory_ratio_vs_as_published", "compile_s"])
    for s in skipped:
        print("skipped:", s)
    print("wrote", path)


if __name__ == "__main__":
    main()
