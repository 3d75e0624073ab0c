"""Item 1: the max-constraint module, hmljax dense and sparse vs the PyTorch reference formulation.

    python -m benchmarks.bench_constraint --data-dir ../shared/data [--threads 2] [--repeats 30]

The PyTorch reference is C-HMCNN's: broadcast the probabilities to [B, N, N],
multiply by R, max over the last axis (here in float32, as hmljax). Hierarchies
are the real cellcycle_FUN (N = 500) and cellcycle_GO (N = 4126) ones. Both
sides are checked equal (values and gradients) before timing. Peak memory is
the resident-set growth during one call (both sides measured the same way);
for jax XLA's own plan is reported too. Sizes whose dense [B, N, N] form would
not fit in 60% of RAM are skipped and listed.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks import _common as C  # noqa: E402  (pins threads before jax/torch load)


def _extra(p):
    p.add_argument("--data-dir", default=None)
    p.add_argument("--batches", type=int, nargs="*", default=[4, 64, 256])


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

    from hmljax.constraints import constraint_graph, max_constraint, max_constraint_sparse
    from hmljax.data import load_dataset

    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    rows, skipped = [], []
    batches = [4, 64] if args.quick else args.batches
    for name in ("cellcycle_FUN", "cellcycle_GO"):
        h = load_dataset(name, data_dir=args.data_dir).hierarchy
        N = h.num_nodes
        R_np = np.asarray(h.ancestry)
        graph = constraint_graph(h)
        R_jax = jnp.asarray(R_np)
        R_t = torch.from_numpy(R_np.astype(np.float32))
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
            xt, gt = torch.from_numpy(x_np), torch.from_numpy(g_np)
            dense_bytes = B * N * N * 4
            torch_fits = 3 * dense_bytes < 0.6 * ram  # product, broadcast view copy, and the backward's mask

            def torch_fwd():
                with torch.no_grad():
                    return torch_mcm(xt, R_t)

            def torch_fb():
                xr = xt.clone().requires_grad_(True)
                torch_mcm(xr, R_t).backward(gt)
                return xr.grad

            # --- equality first ---
            ref_fwd = np.asarray(sparse_f(x, graph))
            ref_grad = np.asarray(sparse_fb(x, g))
            if torch_fits:
                C.assert_close(f"{name} B={B} torch fwd", torch_fwd().numpy(), ref_fwd, rtol=0, atol=0)
                C.assert_close(f"{name} B={B} torch grad", torch_fb().numpy(), ref_grad, rtol=1e-6, atol=1e-6)
            cases = [("hmljax sparse", "fwd", lambda: sparse_f(x, graph), True, (sparse_f, x, graph)),
                     ("hmljax sparse", "fwd+bwd", lambda: sparse_fb(x, g), True, (sparse_fb, x, g))]
            dense_plan = C.xla_memory_bytes(dense_fb.lower(x, g).compile())
            dense_fits = dense_plan is None or dense_plan < 0.6 * ram
            if dense_fits:
                C.assert_close(f"{name} B={B} dense fwd", np.asarray(dense_f(x, R_jax)), ref_fwd, rtol=0, atol=0)
                C.assert_close(f"{name} B={B} dense grad", np.asarray(dense_fb(x, g)), ref_grad)
                cases += [("hmljax dense", "fwd", lambda: dense_f(x, R_jax), True, (dense_f, x, R_jax)),
                          ("hmljax dense", "fwd+bwd", lambda: dense_fb(x, g), True, (dense_fb, x, g))]
            else:
                skipped.append(f"hmljax dense {name} B={B}: XLA plans {dense_plan / 2**30:.1f} GiB")
            if torch_fits:
                cases += [("torch reference", "fwd", torch_fwd, False, None),
                          ("torch reference", "fwd+bwd", torch_fb, False, None)]
            else:
                skipped.append(f"torch reference {name} B={B}: [B, N, N] float32 is {dense_bytes / 2**30:.1f} GiB "
                               f"per tensor, over 60% of {ram / 2**30:.0f} GiB RAM with its backward")
            for impl, mode, fn, is_jax, aot in cases:
                row = {"hierarchy": name, "N": N, "B": B, "impl": impl, "mode": mode}
                if is_jax:
                    secs, compiled = C.compile_seconds(aot[0], *aot[1:])
                    row["compile_s"] = secs
                    row["xla_plan_bytes"] = C.xla_memory_bytes(compiled)
                reps = args.repeats if (B * N * N < 2e8 or not args.quick) else 2
                if B * N * N > 1e9:
                    reps = min(reps, 5)  # the dense reference is seconds per call here
                t = C.timeit(fn, repeats=reps, sync=C.jax_sync if is_jax else (lambda r: r))
                row.update(t)
                row["peak_rss_bytes"] = C.peak_rss_delta(lambda fn=fn, is_jax=is_jax: (
                    C.jax_sync(fn()) if is_jax else fn()))
                rows.append(row)
                print(f"{name} B={B:4d} {impl:16s} {mode:8s} {t['median_s'] * 1e3:10.3f} ms  "
                      f"rss+{(row['peak_rss_bytes'] or 0) / 2**20:8.1f} MiB", flush=True)
    # Ratios against the torch reference, per (hierarchy, B, mode).
    ref = {(r["hierarchy"], r["B"], r["mode"]): r for r in rows if r["impl"] == "torch reference"}
    for r in rows:
        t = ref.get((r["hierarchy"], r["B"], r["mode"]))
        if t and r["impl"] != "torch reference":
            r["speedup_vs_torch"] = t["median_s"] / r["median_s"]
            # jax's figure is the larger of its measured growth and XLA's own plan (conservative).
            mine = max(r.get("peak_rss_bytes") or 0, r.get("xla_plan_bytes") or 0)
            if mine and t.get("peak_rss_bytes"):
                r["memory_ratio_vs_torch"] = t["peak_rss_bytes"] / mine
    for r in rows:
        r["median_ms"] = r["median_s"] * 1e3
        r["peak_rss_MiB"] = (r.get("peak_rss_bytes") or 0) / 2**20
    path = C.write_rows("constraint", rows + [{"skipped": skipped}], args)
    C.print_table(rows, ["hierarchy", "B", "impl", "mode", "median_ms", "speedup_vs_torch", "peak_rss_MiB",
                         "memory_ratio_vs_torch", "compile_s"])
    for s in skipped:
        print("skipped:", s)
    print("wrote", path)


if __name__ == "__main__":
    main()
