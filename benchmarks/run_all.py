"""Runs every benchmark in turn (one process each) and rewrites benchmarks/README.md from their JSON rows.

    python -m benchmarks.run_all --data-dir ../shared/data [--threads 2] [--quick]
    python -m benchmarks.run_all --report-only        # rebuild README.md from benchmarks/results/*.json
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
BENCHES = ["bench_constraint", "bench_train", "bench_ensemble", "bench_sampler", "bench_sharding", "profile_step",
           "bench_compile_options", "bench_hlstm", "hlstm_float64_witness", "bench_hmt",
           "bench_selection", "bench_traffic",
           "bench_checkpoint_memory", "bench_adam_layouts", "bench_adam_kernel"]
# bench_engine compares two commits: run it on its own. --adam-fused runs these again with hmljax's fused CPU Adam.
ADAM_FUSED = ("bench_train", "bench_ensemble", "bench_hlstm")
# They count bytes (compiled traffic; peak memory), not time: a busy machine does not change them.
UNTIMED = ("bench_traffic", "bench_checkpoint_memory")


# LHLoss's two entries within this (relative) at both sides' points are a float32 near-tie (the HLSTM
# equality check's rule, ``_torch_hlstm.TIE_RTOL``; run_all reads JSON only and imports no torch).
NEAR_TIE_RTOL = 1e-6


def _first_switch(r) -> tuple[str, bool | None]:
    """A witness row's first LHLoss switch in words, and whether it is a near-tie (None: no switch)."""
    if not r["lmc_first_switches"]:
        return "", None
    f = r["lmc_first_switches"][0]
    gap = max(f["relative_gap_at_hmljax_point"], f["relative_gap_at_torch_point"])
    return (f"step {f['step']}, sample {f['sample']}, node {f['node']} (row {f['row']}): gap "
            f"{f['relative_gap_at_hmljax_point']:.1e} / {f['relative_gap_at_torch_point']:.1e}"), gap <= NEAR_TIE_RTOL


def _witness_rows(w) -> list[str]:
    lines = ["| dataset | B | torch level | local init | steps | elements that disagree | hmljax off float64 | "
             "torch off float64 | LHLoss switches | first switch | near-tie |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in w["rows"]:
        where, tie = _first_switch(r)
        lines.append(f"| {r['dataset']} | {r['B']} | {r['level']} | {r['local_init']} | {r['steps']} | "
                     f"{r['disagree']:,} of {r['params']:,} | {r['max_h32_off_f64_share_of_update']:.2%} | "
                     f"{r['max_t32_off_f64_share_of_update']:.2%} | {r['lmc_switches']} | {where} | "
                     f"{'' if tie is None else 'yes' if tie else 'no'} |")
    return lines


def _best_effort_ties(w) -> list[bool]:
    """Per best-effort row with a switch, whether its first switch is a near-tie."""
    return [t for r in w["rows"] if r["level"] == "best effort" for t in [_first_switch(r)[1]] if t is not None]


def _witness_levels_section(w, gpu=None) -> list[str]:
    """The float64 witness with the best-effort (compiled) level beside the eager one: each float32 side's
    distance from float64 as a share of the update, and where LHLoss's min switched between the sides; then
    the same witness on a GPU (``gpu``: results/gpu/), if one ran, with whether its switches were near-ties."""
    if not w:
        return []
    lines = ["Which side strays, and why (`" + w["command"] + "`): the same witness with torch's float32 side "
             "eager (same algorithm) or compiled (best effort). 'off float64': the largest, over the parameter "
             "tensors, of `|side - f64| / |f64 - start|`. 'LHLoss switches': samples and nodes where the two "
             "float32 sides' next steps take LHLoss's min from different entries (each side's parameters, "
             "evaluated in float64), with the first one's relative gap between the two entries at each side's "
             "point; 'near-tie': both gaps within 1e-6, near float32's resolution (2^-24 = 6e-8), "
             "a tie that rounding resolves either way, after which that sample's LHLoss gradient goes to the "
             "other level's heads and Adam makes it whole steps there and in the LSTM.", ""] + _witness_rows(w) + [""]
    if _best_effort_ties(w) and all(_best_effort_ties(w)):
        lines += ["On this CPU the compiled level's first switch is such a near-tie: rounding, not a different "
                  "computation; the checks allow 3 % of the update (`noise_norm_tol`) for it.", ""]
    if not gpu:
        return lines + ["The CUDA check of the best-effort level (2026-12-04, 5-10 %) is to be witnessed the same "
                        "way (`--device cuda`).", ""]
    m = gpu["machine"]
    ties = _best_effort_ties(gpu)
    lines += [f"On a GPU (**{m.get('gpu', 'unnamed GPU')}**, jax {m.get('jax')}, torch {m.get('torch')}, "
              f"{gpu['date']}; `{gpu['command']}`):", ""] + _witness_rows(gpu) + [""]
    be = [r for r in gpu["rows"] if r["level"] == "best effort"]
    h_off = max(r["max_h32_off_f64_share_of_update"] for r in be)
    t_off = min(r["max_t32_off_f64_share_of_update"] for r in be)
    if ties and not any(ties):
        lines += ["There the compiled level's first switch is **not** a near-tie: the two entries were further "
                  "apart than float32 rounding moves them, so the compiled CUDA step had parted from float64 "
                  "before any switch, and the CPU's mechanism does not explain the CUDA failure. On that GPU "
                  f"hmljax's float32 is at most {h_off:.2%} of an update off float64, the compiled torch step at "
                  f"least {t_off:.2%}. The HLSTM check's near-tie rule does not pass such a level.", ""]
    elif ties and all(ties):
        lines += ["There too the compiled level's first switch is a near-tie: the CPU's mechanism.", ""]
    return lines


def _take_apart_section(cpu, gpu) -> list[str]:
    """The compiled HLSTM step taken apart step by step (``hlstm_float64_witness --take-apart``), on this CPU
    and on a GPU where one ran it: which part (gradient, Adam, or their composition) strays from float64."""
    lines = []
    for d, where in ((cpu, "on this CPU"), (gpu, "on a GPU")):
        if not d:
            continue
        m = d["machine"]
        lines += [f"The compiled step taken apart, {where} ({m.get('gpu') or m.get('cpu_model') or '?'}, torch "
                  f"{m.get('torch')}; `{d['command']}`): per step, each float32 side's parameters off float64's as a "
                  "share of float64's update so far (whole step); at float64's parameters, the eager and the "
                  "compiled gradient off float64's as a share of its norm; the compiled Adam off eager Adam on the "
                  "same gradients, as a share of the update. The largest over the tensors, and its tensor.", "",
                  "| dataset | B | local init | step | whole: hmljax | whole: compiled (tensor) | gradient: eager "
                  "| gradient: compiled (tensor) | Adam: compiled off eager (tensor) |",
                  "|---|---|---|---|---|---|---|---|---|"]
        lines += [f"| {r['dataset']} | {r['B']} | {r['local_init']} | {r['step']} | {r['whole_hmljax_off_f64']:.2%} | "
                  f"{r['whole_compiled_off_f64']:.2%} ({r['whole_worst']}) | {r['grad_eager_off_f64']:.1e} | "
                  f"{r['grad_compiled_off_f64']:.1e} ({r['grad_worst']}) | {r['adam_compiled_off_eager']:.1e} "
                  f"({r['adam_worst']}) |" for r in d["rows"]]
        lines += [""]
    return lines


def _load(name, sub: str = ""):
    p = os.path.join(HERE, "results", sub, f"{name}.json")
    if not os.path.exists(p):
        return None
    with open(p) as fh:
        return json.load(fh)


def _fmt(v, nd=3):
    if v is None:
        return ""
    if isinstance(v, float):
        if abs(v) >= 100:
            return f"{v:,.0f}"
        return f"{v:.{nd}g}"
    return str(v)


def _table(rows, cols, heads=None):
    heads = heads or cols
    out = ["| " + " | ".join(heads) + " |", "|" + "---|" * len(cols)]
    out += ["| " + " | ".join(_fmt(r.get(c)) for c in cols) + " |" for r in rows]
    return out


LEVELS = ("as published", "same algorithm", "best effort")


def _command_line(d: dict) -> str:
    """The section's command, and the date and machine its rows were measured on: absolute times hold only there."""
    m = d.get("machine", {})
    where = m.get("gpu") or m.get("cpu_model") or m.get("processor") or "an unrecorded machine"
    host = m.get("platform", "").split("-with-")[0]
    rates = [f"float32 matmul {m['matmul_gflops_f32']:.0f} GFLOP/s" if m.get("matmul_gflops_f32") else "",
             f"in-place stream {m['stream_gb_per_s']:.1f} GB/s" if m.get("stream_gb_per_s") else ""]
    rates = ", ".join(r for r in rates if r) or "its rates not recorded"
    return (f"Command: `{d['command']}`; measured {str(d.get('date', '?'))[:10]} on {where}, {m.get('cpus', '?')} "
            f"CPUs ({host}; {rates}).")


def _levels_table(rows: list[dict], keys: list[str]) -> list[str]:
    """Times and every ratio to the three PyTorch levels, then each level's equality check."""
    cols = keys + ["impl", "step_ms", "speedup_vs_as_published", "speedup_vs_same_algorithm",
                   "speedup_vs_best_effort", "compile_s", "graph_breaks", "fraction_of_floor"]
    out = _table(rows, cols, keys + ["impl", "ms/step", "x as published", "x same algorithm", "x best effort",
                                     "compile s", "graph breaks", "floor / time"])
    out += ["", "Equality before timing (dropout off, same initial parameters and batches; loss at every step, "
            "every parameter at the end):", "", "| " + " | ".join(keys) + " | level | passed | steps | "
            "max loss diff | max param diff | elements past both bounds (max |diff| / |update|) |",
            "|" + "---|" * (len(keys) + 6)]
    for r in rows:
        if r.get("level") and isinstance(r.get("equality"), dict):
            c = r["equality"]
            tie = c.get("near_tie")
            passed = "yes" if c.get("passed") else "no: " + str(c.get("error", ""))[:120]
            if tie:  # HLSTM: parted only at a float32 near-tie of LHLoss's min, checked on the steps before it
                gap = max(tie["relative_gap_at_hmljax_point"], tie["relative_gap_at_torch_point"])
                passed += (f" (the {c['steps']} steps before LHLoss's min switched at a near-tie at step "
                           f"{tie['step']}, gap {gap:.0e})")
            out.append("| " + " | ".join(_fmt(r.get(k)) for k in keys) + f" | {r['level']} | {passed} | "
                       f"{_fmt(c.get('steps'))} | {_fmt(c.get('loss_max_abs_diff'))} | "
                       f"{_fmt(c.get('param_max_abs_diff'))} | {_noise_cell(c)} |")
    return out


def _noise_cell(c: dict) -> str:
    """check_level's Adam-noise allowance: how many elements needed it, and the worst tensor's norm ratio."""
    n = c.get("elements_beyond_both_bounds")
    if not n:
        return "0" if n == 0 else ""
    return f"{n:,} ({c.get('noisy_tensor_max_diff_norm_over_update_norm', float('nan')):.2g})"


def _floor_table(rows: list[dict], keys: list[str]) -> list[str]:
    """Per case: the matmul floor, the optimiser-state floor (the larger is the floor) and hmljax's Adam alone."""
    traffic = any(r.get("bytes_per_param_xla") for r in rows)  # rows measured since XLA's bytes were recorded
    out = ["| " + " | ".join(keys) + " | params | XLA FLOPs/step | matmul floor ms | stream GB/s at the state's size | "
           "state floor ms (24 B/param) | floor ms | hmljax Adam alone ms |"
           + (" XLA bytes/param | hmljax traffic ms |" if traffic else ""),
           "|" + "---|" * (len(keys) + 7 + 2 * traffic)]
    seen = {}
    for r in rows:
        seen.setdefault(tuple(r.get(k) for k in keys), r)
    for key, r in seen.items():
        out.append("| " + " | ".join(_fmt(v) for v in key) + f" | {r['params']:,} | {_fmt(r['flops_per_step_xla'])} | "
                   f"{r['matmul_floor_s'] * 1e3:.3f} | "
                   f"{_fmt((r.get('stream_bytes_per_s_at_state_size') or 0) / 1e9)} | "
                   f"{_fmt((r.get('memory_floor_s') or 0) * 1e3)} | "
                   f"{r['floor_step_s'] * 1e3:.3f} | {r['adam_update_s'] * 1e3:.3f} |"
                   + (f" {_fmt(r.get('bytes_per_param_xla'))} | "
                      f"{_fmt(r['xla_traffic_s'] * 1e3 if r.get('xla_traffic_s') else None)} |" if traffic else ""))
    return out


def _share(prof: dict, group: str) -> float:
    return prof["groups_us"].get(group, 0.0) / max(prof["profiled_us"], 1e-9)


def _traffic_section(d: dict) -> list[str]:
    """Section 15: XLA's bytes per step and per parameter for hmljax's compiled steps."""
    one = d["rows"][0].get("one_pass_bytes_per_param", 36)
    m = d.get("machine", {})
    lines = ["## 15. Memory traffic of hmljax's compiled steps (XLA's count)", "",
             f"Command: `{d['command']}`; compiled {str(d.get('date', '?'))[:10]} on "
             f"{m.get('cpu_model') or m.get('processor') or 'an unrecorded machine'} (jax {m.get('jax', '?')}; "
             "XLA compiles for the host CPU, so another CPU may fuse differently).", "",
             "XLA's `bytes accessed` for the compiled train step: every top-level op's operands and outputs after "
             "fusion, the traffic its fusion plan implies when nothing stays in cache. Nothing is timed. A single "
             f"fused optimiser pass needs about {one} bytes per parameter at batch 4 (the weights read by the "
             "forward and backward passes, 8; Adam's p, g, m and v read and p, m and v written, 28). In the "
             "compiled HLO, XLA's CPU backend updates each tensor in three loops (the first moment, the second "
             "moment, then the parameter; each moment's loop reads the parameter again for the coupled weight "
             "decay) after the weight-gradient dot has written the gradient, and does not merge them into one "
             "multi-output loop as torch's fused Adam kernel is (HLSTM's shared recurrent kernel gets one "
             "gradient, a single product over all levels: `hmljax.models.lstm_over_levels`; autodiff of the "
             "unrolled loop gave one per level, summed in those loops, 89 and 80 B/param on cellcycle_FUN "
             "and _GO). XLA:CPU's multi-output fusion, off by default and reachable only through XLA_FLAGS "
             "(`--xla_backend_extra_options=xla_cpu_use_multi_output_fusion`; jax's per-compile options cannot "
             "set that map field), does merge them when the moments and the update are written as sibling "
             "expressions of (g, p, m, v): one loop, 28 B/param, bitwise optax's results over 30 steps and about "
             "2x faster on a 1M-parameter tensor alone; but with it jaxlib 0.10.2 aborts compiling hmljax's "
             "train epoch (`symbolic_map.cc:196 Check failed` in the loop-fusion emitter, 2026-12-02), and with "
             "the older emitters (`--xla_cpu_use_fusion_emitters=false`) it compiles but changes other fusions' "
             "results (the E = 10 GMU ensemble's regression hash), so it is not used. Nor is cache blocking, which "
             "would get the same 28 B/param from today's three loops by running them over one cache-sized slice "
             "of each tensor at a time (a `lax.scan` over 8-64K-element slices of every leaf, calling optax's own "
             "update on each; bitwise optax's results): on the E = 10 ensemble's 5.4M parameters it took "
             "10.19-10.23 ms against 10.26-10.28 ms unblocked (one thread, 300 alternating steps, 2026-12-02, "
             "AMD EPYC): unblocked, the update already ran at blocking's rate (5.4M x 28 B in 10.2 ms is 14.8 GB/s, "
             "the machine's in-place stream rate). Nor is training the members one after another (a `lax.scan` "
             "over the E = 10 members, each member's forward, backward and Adam update on its own 2.2 MB of "
             "weights, so its 8.6 MB of state stays in the 32 MiB L3 between the passes): 23-35 ms a step against "
             "20-26 ms vmapped (a 3-layer 77-500-500-499 MLP stack with BCE and `add_decayed_weights` + Adam, "
             "64 scanned steps, alternating, beside two training runs, 2026-12-02), and not bitwise (2.4e-7 apart "
             "after 64 steps). Divide by the floor "
             "table's stream bandwidth for the time this traffic takes. The 'run:' rows are the steps the "
             "experiments train (the method's config defaults, `--runs DATASET:METHOD`), counted from shapes "
             "only: seq_GO's LSTMs, whose 1.3 GB recurrent kernel is read from memory once per level forward "
             "and once backward, where cellcycle_GO's (16 MB) stays in L3; this count includes those reads, a "
             "parameter count does not (README, HLSTM 'Cost and what is left').", "",
             "| case | dataset | B | params | XLA bytes/step | bytes/param | x one fused pass (B = 4) |",
             "|---|---|---|---|---|---|---|"]
    for r in d["rows"]:
        bpp = r.get("bytes_per_param_xla") if r["B"] == 4 else None  # at B = 64 activations count too
        lines.append(f"| {r['case']} | {r['dataset']} | {r['B']} | {r['params']:,} | "
                     f"{_fmt(r.get('bytes_per_step_xla'))} | {_fmt(r.get('bytes_per_param_xla'))} | "
                     f"{_fmt(bpp / one if bpp else None)} |")
    return lines + [""]


def _of_floor(fraction: float) -> str:
    """A step's share of its floor; above 100 % the floor was no floor: its bandwidth was measured too low."""
    if fraction > 1:
        return f"{fraction:.0%}: faster than this 'floor', whose stream bandwidth was measured low"
    return f"{fraction:.0%}"


def _targets() -> list[str]:
    """The issue's acceptance ratios, read from the rows (missing benchmarks are skipped)."""
    out = ["## Against the targets", ""]
    c, t, e = _load("constraint"), _load("train"), _load("ensemble")
    if c:
        r = next((r for r in c["rows"] if r.get("hierarchy") == "cellcycle_GO" and r.get("B") == 64
                  and r.get("impl") == "hmljax sparse" and r.get("mode") == "fwd+bwd"), None)
        if r:
            line = (f"- Sparse constraint, GO N=4126, B=64, fwd+bwd: {r['speedup_vs_torch'] or float('nan'):,.0f}x "
                    f"the dense float32 formulation (target 50x), {r.get('memory_ratio_vs_torch') or 0:,.0f}x less "
                    "peak memory (target 20x)")
            for lv in ("same algorithm", "best effort"):
                if ratio := r.get("speedup_vs_" + lv.replace(" ", "_")):
                    line += f"; {ratio:.2f}x {lv}"
            out.append(line + ".")
    if t:
        e2e = next((r["end_to_end"] for r in t["rows"] if "end_to_end" in r), None)
        scan = next((r for r in t["rows"] if r.get("dataset") == "cellcycle_FUN" and r.get("B") == 4
                     and r.get("impl") == "hmljax scan epoch"), None)
        if e2e and e2e.get("ratio_by_level"):
            lead = e2e["ratio_by_level"]
            best = lead.get("best effort")
            line = ("- Published-settings cellcycle_FUN epoch (batch 4): "
                    + ", ".join(f"{v:.2f}x {k}" for k, v in lead.items())
                    + (f" (goal: 2x best effort; {'met' if best >= 2 else 'missed'})." if best else "."))
            if scan:
                line += (f" hmljax's scan step is {scan['step_ms']:.3f} ms against a floor of "
                         f"{scan['floor_step_s'] * 1e3:.3f} ms ({_of_floor(scan['fraction_of_floor'])} of this "
                         "machine's limit).")
            out.append(line)
    if e:
        r = next((r for r in e["rows"] if r.get("E") == 10 and r.get("impl") == "hmljax scan epoch"), None)
        if r:
            best = r.get("speedup_vs_best_effort")
            out.append("- E = 10 ensemble, batch 4, scan epoch per step: "
                       + ", ".join(f"{r.get('speedup_vs_' + lv.replace(' ', '_')) or float('nan'):.2f}x {lv}"
                                   for lv in LEVELS)
                       + (f" (goal: 3x best effort; {'met' if best >= 3 else 'missed'})" if best else "")
                       + f"; {r['step_ms']:.2f} ms/step against a floor of {r['floor_step_s'] * 1e3:.2f} ms "
                       f"({_of_floor(r['fraction_of_floor'])}).")
            if best and r.get("stream_bytes_per_s_at_state_size") and r.get("params"):
                # What the goal asks for, against the floor that also counts the forward pass's read of the
                # weights (the state does not fit in cache here, so both are DRAM traffic).
                need_ms = r["step_ms"] * best / 3
                floor_ms = 28 * r["params"] / r["stream_bytes_per_s_at_state_size"] * 1e3
                out.append(f"  3x best effort means {need_ms:.2f} ms/step; one read of the weights for the forward "
                           f"pass plus Adam's state read and written once (28 bytes per parameter) take "
                           f"{floor_ms:.2f} ms at the measured stream bandwidth, so the goal asks for "
                           f"{floor_ms / need_ms:.0%} of this machine's memory limit on the whole step "
                           "(backward's second read of the weights, the gradients and the matmuls left out).")
            tr = next((x for x in (_load("traffic") or {}).get("rows", [])
                       if x.get("case") == "C-HMCNN E=10" and x.get("B") == r.get("B")), None)
            if tr and tr.get("bytes_per_step_xla") and r.get("stream_bytes_per_s_at_state_size"):
                ms = tr["bytes_per_step_xla"] / r["stream_bytes_per_s_at_state_size"] * 1e3
                out.append(f"  Where the rest goes (section 15): XLA's plan for this step moves "
                           f"{tr['bytes_per_param_xla']:.1f} bytes per parameter, "
                           f"{tr['bytes_per_step_xla'] / 1e6:,.0f} MB, which alone takes {ms:.1f} ms of the "
                           f"{r['step_ms']:.1f} ms step at that bandwidth; "
                           "torch's fused Adam reads and writes its 28 bytes per parameter in one pass.")
    fe = _load("ensemble", "adam_fused")
    r = next((r for r in (fe or {}).get("rows", []) if r.get("E") == 10 and r.get("impl") == "hmljax scan epoch"),
             None)
    if r and r.get("speedup_vs_best_effort"):
        met = "met" if r["speedup_vs_best_effort"] >= 3 else "missed"
        out.append(f"  With `adam_kernel=fused` (section 19, its own run): {r['speedup_vs_best_effort']:.2f}x best "
                   f"effort, {r['step_ms']:.2f} ms/step (goal 3x: {met}).")
    h, fh = _load("hlstm"), _load("hlstm", "adam_fused")
    fused_h = {(r["dataset"], r["B"]): r for r in (fh or {}).get("rows", []) if r.get("impl") == "hmljax scan epoch"}
    if h:
        for r in h["rows"]:
            if r.get("impl") == "hmljax scan epoch" and r.get("B") == 4 and r.get("speedup_vs_as_published"):
                pub = r["speedup_vs_as_published"]
                out.append(f"- HLSTM fused epoch, {r['dataset']}, batch 4: {pub:.1f}x the paper-written twin's "
                           f"loop (as published; target 10x: {'met' if pub >= 10 else 'missed'}), "
                           + ", ".join(f"{r.get('speedup_vs_' + lv.replace(' ', '_')) or float('nan'):.2f}x {lv}"
                                       for lv in LEVELS[1:])
                           + f"; {r['step_ms']:.2f} ms/step against a floor of {r['floor_step_s'] * 1e3:.2f} ms "
                           f"({_of_floor(r['fraction_of_floor'])}).")
                f = fused_h.get((r["dataset"], 4))
                if f and f.get("speedup_vs_as_published"):
                    out.append(f"  With `adam_kernel=fused` (section 19, its own run): "
                               f"{f['speedup_vs_as_published']:.1f}x as published, "
                               f"{f.get('speedup_vs_best_effort') or float('nan'):.2f}x best effort, "
                               f"{f['step_ms']:.2f} ms/step.")
    return out + [""]


def _profile_section(d: dict) -> list[str]:
    lines = ["## 8. Profile: where a batch-4 step's time goes", "", _command_line(d), "",
             "jax: `jax.profiler` trace of the jit step, each XLA op grouped by the scope XLA keeps in its",
             "metadata; torch: `torch.profiler` over the same eager steps. Shares are of the profiled time",
             "(profilers add overhead of their own); wall is the unprofiled median. One thread, so that",
             "XLA runs the step's ops one at a time and each op's traced time is its own. jax shares come",
             "from each op's median over several traces; [min-max] is each group's range over the traces:",
             "on a shared machine single traces differ a lot, so read the shares as rough.", "",
             "| case | impl | wall us/step | profiled us/step | groups (share of profiled) |", "|---|---|---|---|---|"]
    for r in d["rows"]:
        rng = r.get("groups_us_range", {})
        groups = ", ".join(f"{g} {us / max(r['profiled_us'], 1e-9):.0%}"
                           + (f" [{rng[g][0]:,.0f}-{rng[g][1]:,.0f} us]" if g in rng else "")
                           for g, us in r["groups_us"].items() if us > 0)
        lines.append(f"| {r['case']} | {r['impl']} | {r['wall_us_per_step']:,.0f} | {r['profiled_us']:,.0f} | "
                     f"{groups} |")
    for r in d["rows"]:
        lines += ["", f"Top ops, {r['case']} {r['impl']}:", ""]
        for op in r["top_ops"][:6]:
            where = op.get("op_name") or op.get("group") or f"{op.get('calls_per_step', 0):.0f} calls/step"
            lines.append(f"- `{op['op']}` {op['us_per_step']:,.0f} us/step ({op.get('group', 'torch')}): {where}")
    return lines + [""]


def _selection_section(d: dict) -> list[str]:
    sel = [r for r in d["rows"] if r["part"] == "selection"]
    train = [r for r in d["rows"] if r["part"] == "training"]
    lines = ["## 12. Adaptive batch selection: what selecting costs (issue 21)", "", _command_line(d), "",
             "Part A, selection alone: one epoch of draws and probability refreshes (B = 128, s_e = 2, after the "
             "warm-up, per-sample losses from a fixed random array: no model runs), per batch = epoch / steps. "
             "Levels: the released code's dict loop (Adaptivetrain.py: p normalised once per epoch); the same "
             "algorithm on float64 numpy arrays (`np.random.choice(replace=False, p)`, the quantised p of the whole "
             "table recomputed after every step and stored for the batch's rows; `all`: every row, the paper); torch "
             "float32 eager (`torch.multinomial(p, B, replacement=False)`) and under `torch.compile`; hmljax's "
             "`sampler=adaptive` (unweighted, the released selection) as one jitted select + update per batch "
             "(synced: a host loop needs the indices) and as a whole epoch in one `lax.scan`. Before timing: numpy, "
             "torch and hmljax give the same p for the same float32 loss table, refresh the same rows with the same "
             "values after one `update_probs=batch` step, and every draw is B distinct rows in range.", ""]
    lines += _table(sel, ["dataset", "n", "impl", "level", "update_probs", "batch_us", "epoch_ms",
                          "speedup_vs_as_published", "speedup_vs_same_algorithm", "speedup_vs_best_effort",
                          "speedup_vs_numpy", "compile_s"],
                    ["dataset", "rows", "impl", "level", "update_probs", "us/batch", "ms/epoch", "x as published",
                     "x same algorithm", "x best effort", "x numpy (same update)", "compile s"])
    lines += ["", "Levels (issue 19): as published is the released dict loop, same algorithm torch eager, best effort "
              "torch.compile; each ratio is against the level with the same `update_probs` (the released code has "
              "no every-row update, so `all` has no as-published ratio)."]
    lines.append("")
    for ds in dict.fromkeys(r["dataset"] for r in sel):
        c = next(r["checks"] for r in sel if r["dataset"] == ds)
        n = next(r["n"] for r in sel if r["dataset"] == ds)
        noise = next((r["gumbel_noise_us"] for r in sel if r["dataset"] == ds and "gumbel_noise_us" in r), None)
        same_rows = "yes" if c["stored_p_rows_agree"] and c["stored_p_rows_agree_lmax_up"] else "no"
        line = (f"- {ds} checks: p agrees (max |diff| numpy-hmljax {c['p_max_abs_diff_numpy_hmljax']:.2g}; Q differs "
                f"on {c['q_differ_numpy_hmljax']} of {n} rows); after one batch update the same rows hold the same "
                f"values: {same_rows}.")
        # hmljax stores unnormalised log p, as the released code's s_e^(Q/n): the check is a hard one.
        line += (f" The draw distributions after it agree too (max |difference| "
                 f"{c['draw_p_max_rel_diff_hmljax']:.2g}; {c['draw_p_max_rel_diff_hmljax_lmax_up']:.2g} for a batch "
                 "that raises l_max).")
        if noise:
            line += f" hmljax's Gumbel noise over the {n} rows alone: {noise:,.0f} us per batch."
        lines += [line]
    lines += ["", "Part B, a whole `method=mlp` training epoch through the engine (`jit_train(make_epoch(method))`), "
              "uniform (`sampler=random`) against adaptive, the adaptive epochs past the warm-up, timed in "
              "alternating blocks. Target: adaptive at most 1.3x uniform.", ""]
    lines += _table(train, ["dataset", "n", "impl", "update_probs", "epoch_ms", "step_us", "ratio_vs_uniform",
                            "selection_us_per_step", "compile_s"],
                    ["dataset", "rows", "impl", "update_probs", "ms/epoch", "us/step", "x uniform",
                     "selection us/step", "compile s"])
    loads = [r["load_avg_1m"] for r in d["rows"] if "load_avg_1m" in r]
    if loads:
        line = (f"1-minute load average during the run: {min(loads):.1f}-{max(loads):.1f} on "
                f"{d['machine'].get('cpus')} CPUs, {d['threads']} threads per side.")
        if max(loads) > (d["machine"].get("cpus") or 1):
            line += (" Other work shared the cores, so the times are inflated and noisy; multi-threaded small ops "
                     "(torch's elementwise kernels above all) wait on descheduled threads.")
        lines += ["", line]
    return lines + [""]


# The rows a GPU sitting measures (``experiments/gpu_sitting.py``, ``--device cuda``), written to results/gpu/,
# with the columns that identify a row in each.
GPU_BENCHES = {"constraint": None, "train": ["dataset", "H", "B"], "ensemble": ["E", "B"], "hlstm": ["dataset", "B"],
               "hmt": ["dataset", "C", "B"]}


def _checkpoint_memory_section(d: dict) -> list[str]:
    text = ("C-HMCNN's MLP at H = 8000 on the synthetic dataset, Adam, batch 64, a checkpoint after each epoch "
            "(hmljax: `train_and_evaluate`, orbax; PyTorch: `torch.save` of the model's and optimiser's state "
            "dicts to a temporary file, then `os.replace`), then a second process resumes from the last one and "
            "trains one epoch more (PyTorch: `torch.load`, `load_state_dict`). Peak resident set above the same "
            "phase at H = 16, over the state (12 bytes a parameter: the parameters and Adam's two moments); a step "
            "alone needs 1.33 (one gradient more). 'torch / hmljax': PyTorch's peak over hmljax's.")
    cols = ["side", "phase", "params", "epochs_checkpointed", "state_gb", "peak_above_base_gb", "peak_over_state",
            "torch_over_hmljax"]
    heads = ["side", "phase", "parameters", "checkpoints", "state GB", "peak above base GB", "peak / state",
             "torch / hmljax"]
    return (["## 16. Peak host memory with a checkpoint every epoch, and on resume", "", _command_line(d), "", text,
             ""] + _table(d["rows"], cols, heads) + [""])


def _gpu_section() -> list[str]:
    """The rows measured on a GPU, both frameworks on one device, named with the device; [] if none were."""
    # a job stopped at its sitting's time limit keeps the cases it finished (``<name>.partial.json``)
    found = {n: d for n in GPU_BENCHES if (d := _load(n, "gpu") or _load(n + ".partial", "gpu"))}
    if not found:
        # A sitting whose jobs all stopped before writing rows (before partial files existed) left only logs.
        logs = sorted(glob.glob(os.path.join(HERE, "results", "gpu", "logs_*")))
        if not logs:
            return []
        return ["## 14. On a GPU", "", "No rows yet: the benchmark jobs of the GPU sitting(s) below stopped at "
                "their time limits before writing their JSON. What they printed is kept as logs (each case's "
                "equality checks, then every level's ms/step and ratios); the README's \"A GPU sitting\" quotes "
                "them. Benchmarks now also write each finished case to `<name>.partial.json`.", ""] + [
                    f"- `{os.path.relpath(d, os.path.dirname(HERE))}/`: "
                    + ", ".join(sorted(f for f in os.listdir(d) if f.endswith(".log"))) for d in logs] + [""]
    d0 = next(iter(found.values()))
    m = d0["machine"]
    rate = f"; measured float32 matmul {m['matmul_gflops_f32'] / 1e3:.1f} TFLOP/s" if m.get("matmul_gflops_f32") else ""
    lines = ["## 14. On a GPU: the same rows, both frameworks on one device", "",
             f"Device: **{m.get('gpu', 'unnamed GPU')}** (jax devices {', '.join(m.get('jax_devices', []))}); host "
             f"{m.get('cpu_model', m.get('processor'))}, {m.get('cpus')} CPUs; jax {m.get('jax')}, torch "
             f"{m.get('torch')}{rate}; date {d0['date']}.", "",
             "Measured in one GPU sitting (`experiments/gpu_sitting.py`) with `--device cuda`: torch's default "
             "device is the GPU, both sides compute float32 in full float32 (jax's `highest`; torch's cuDNN TF32 "
             "flag, on by default, turned off), and each timing waits for torch's GPU "
             "queue. The equality checks are the CPU rows' own. Ratios compare the two frameworks on this device "
             "only.", ""]
    for name, keys in GPU_BENCHES.items():
        d = found.get(name)
        if not d:
            continue
        rows = [r for r in d["rows"] if "impl" in r]
        lines += [f"### {name}", "", _command_line(d), ""]
        if d.get("complete") is False:
            lines += ["Partial: the job stopped at its time limit; these are the cases it finished.", ""]
        if keys is None:
            lines += _table(rows, ["hierarchy", "N", "B", "impl", "mode", "median_ms", "speedup_vs_as_published",
                                   "speedup_vs_same_algorithm", "speedup_vs_best_effort"],
                            ["hierarchy", "N", "B", "impl", "mode", "median ms", "x as published",
                             "x same algorithm", "x best effort"])
        else:
            lines += _levels_table(rows, keys)
        lines.append("")
    return lines


def _best_hmljax_vs_levels(d: dict) -> dict[tuple, dict]:
    """``{(dataset, B, E): {"hmljax": (impl, ms), level: ms}}``: hmljax's faster row of a case (jit step or scan
    epoch) and each PyTorch level's time, from one benchmark's rows."""
    out: dict[tuple, dict] = {}
    for r in d["rows"]:
        if "impl" not in r or r.get("step_ms") is None:
            continue
        case = out.setdefault((r["dataset"], r["B"], r.get("E")), {})
        if r["impl"].startswith("hmljax"):
            if "hmljax" not in case or r["step_ms"] < case["hmljax"][1]:
                case["hmljax"] = (r["impl"].removeprefix("hmljax "), r["step_ms"])
        else:
            case[r["impl"].removeprefix("torch ")] = r["step_ms"]
    return out


def _adam_kernel_section() -> list[str]:
    """Section 19: the fused CPU Adam, step A/B and the PyTorch ratios with it beside those with XLA's."""
    d = _load("adam_kernel")
    if not d:
        return []
    lines = ["## 19. The fused CPU Adam (`adam_kernel=fused`)", "", _command_line(d), "",
             "Section 18 found no way to write Adam that XLA's CPU backend compiles to one pass. "
             "`adam_kernel=fused` (`hmljax.engine.adam_coupled_fused`, a config key: `hmljax train ... "
             "adam_kernel=fused`) calls a C++ loop through XLA's FFI instead (`hmljax/engine/adam_cpu.cc`, built "
             "for the host CPU on first use and cached): p, g, m and v read and p, m and v written once (28 "
             "B/param), in place in the donated train state, its chunks shared over XLA's intra-op thread pool. "
             "Its numbers are optax's to float32 rounding (XLA fuses some multiply-adds into FMAs, the kernel "
             "rounds every operation; tests/test_fused_adam.py); on GPU and TPU the same step runs the update "
             "as XLA code. Section 18's last rows time the update alone against PyTorch's fused and foreach Adam "
             "on the same vector. The default stays `xla`: runs in progress and the tables' configs keep the "
             "update they were made with.", "",
             "Whole steps, the two kernels alternating in one process (each case's scan-fused epoch over a "
             "slice of batch-4 batches; median ms per step):", ""]
    cols = ["case", "dataset", "params", "xla_ms_per_step", "fused_ms_per_step", "speedup"]
    heads = ["case", "dataset", "params", "XLA's Adam ms/step", "fused ms/step", "x"]
    lines += _table(d["rows"], cols, heads)
    t1 = _load("adam_kernel_t1")
    if t1:
        lines += ["", "The same on one thread (`taskset -c 0 ... --threads 1`, as a pinned experiment worker "
                  f"trains; measured {str(t1.get('date', '?'))[:10]}):", ""]
        lines += _table(t1["rows"], cols, heads)
    # The XLA-kernel side: a run made beside the fused one (results/adam_xla/) where there is one, else the
    # sections' own run.
    pairs = [(n, _load(n, "adam_xla") or _load(n), _load(n, "adam_fused")) for n in ("train", "ensemble", "hlstm")]
    pairs = [(n, a, b) for n, a, b in pairs if a and b]
    if pairs:
        lines += ["", "Against PyTorch: `python -m benchmarks.<bench> --data-dir ../shared/data --threads 2 "
                  "--adam-kernel fused` (`run_all --adam-fused`) times sections 2, 3 and 11's cases again with "
                  "hmljax on the fused kernel, beside the same PyTorch levels (`benchmarks/results/adam_fused/`). "
                  "hmljax's faster of its jit step and scan epoch, and its ratio to each level measured in the "
                  "same run. The XLA-kernel columns come from a run of the same benchmarks without the flag "
                  "(`--out benchmarks/results/adam_xla/<name>.json`) made beside it, where there is one, else from "
                  "sections 2, 3 and 11's run: another run either way, in which PyTorch's own step times differ "
                  "too, so compare each run's ratios, and the kernels themselves in the A/B tables above.", "",
                  "| bench | dataset | B | E | hmljax fused ms | x as published | x same algorithm | x best effort | "
                  "hmljax XLA-Adam ms (its run) | x best effort (its run) |", "|" + "---|" * 10]
        for name, xla, fused in pairs:
            old = _best_hmljax_vs_levels(xla)
            for key, c in _best_hmljax_vs_levels(fused).items():
                if "hmljax" not in c:
                    continue
                o = old.get(key, {})
                ms = c["hmljax"][1]
                ratio = lambda case, lvl, ms: _fmt(case[lvl] / ms) if case.get(lvl) else ""  # noqa: E731
                lines.append(f"| {name} | {key[0]} | {key[1]} | {_fmt(key[2])} | {_fmt(ms)} ({c['hmljax'][0]}) | "
                             f"{ratio(c, 'as published', ms)} | {ratio(c, 'same algorithm', ms)} | "
                             f"{ratio(c, 'best effort', ms)} | "
                             f"{_fmt(o['hmljax'][1]) if 'hmljax' in o else ''} | "
                             f"{ratio(o, 'best effort', o['hmljax'][1]) if 'hmljax' in o else ''} |")
        dates = "; ".join(f"{n}: fused {str(b.get('date', '?'))[:16]}, XLA {str(a.get('date', '?'))[:16]}"
                          for n, a, b in pairs)
        lines += ["", f"Measured: {dates}. {_command_line(pairs[0][2])}"]
    return lines + [""]


def _thread_sweep_section() -> list[str]:
    """Section 17: bench_train at several thread counts in one sitting, and each side at its own best count.

    XLA's CPU client and torch both split work across threads, and on small steps the split can cost more than
    it saves; a comparison at one shared count could favour whichever side that count suits. Here every
    implementation gets its fastest count, and hmljax's best is compared with each PyTorch level's best."""
    import glob

    runs = {}
    for path in sorted(glob.glob(os.path.join(HERE, "results", "threads", "train_t*.json"))):
        with open(path) as fh:
            d = json.load(fh)
        runs[d["threads"]] = d
    if len(runs) < 2:
        return []
    counts = sorted(runs)
    times, e2e = {}, {}
    for t, d in runs.items():
        for r in d["rows"]:
            if "impl" in r and r.get("step_ms"):
                times.setdefault((r["dataset"], r["B"]), {}).setdefault(r["impl"], {})[t] = r["step_ms"]
            if "end_to_end" in r:
                e = r["end_to_end"]
                e2e.setdefault("hmljax scan epoch", {})[t] = e["hmljax_epoch_s"]
                for lv, sec in e["torch_epoch_s_by_level"].items():
                    e2e.setdefault(f"torch {lv}", {})[t] = sec
    flagged = [t for t, d in runs.items() if any(r.get("loaded_machine") for r in d["rows"])]
    m = runs[counts[0]]["machine"]
    out = ["## 17. Thread count: each side at its best (train step, section 2's cases)", "",
           "Commands: " + "; ".join(f"`{runs[t]['command']}` ({str(runs[t]['date'])[:16]})" for t in counts)
           + f", one after the other on {m.get('cpu_model') or m.get('processor')}, {m.get('cpus')} CPUs, "
           + (f"rows flagged loaded at threads {flagged}" if flagged else "nothing else running") + ". Threads "
           "below the usable CPUs pin the process (`hmljax.training.pin_cpus`), so XLA's pool shrinks too. "
           "Absolute times hold for that sitting only (float32 matmul, measured at each run's thread count: "
           + ", ".join(f"{runs[t]['machine'].get('matmul_gflops_f32', 0):.0f} GFLOP/s at {t}" for t in counts)
           + "). "
           "`best` is each implementation's fastest count; the x columns divide each PyTorch level's best "
           "time by hmljax's best. Again: `python -m benchmarks.run_all --data-dir ../shared/data --only "
           "--sweep-threads " + " ".join(map(str, counts)) + "` (into `benchmarks/results/threads/`).", "",
           "| dataset | B | impl | " + " | ".join(f"ms at {t} thr" for t in counts)
           + " | best ms (threads) | x torch same algorithm | x torch best effort |",
           "|" + "---|" * (6 + len(counts))]

    def best(per):
        t = min(per, key=per.get)
        return per[t], t

    for (ds, b), impls in times.items():
        torch_best = {lv: best(impls[f"torch {lv}"])[0] for lv in ("same algorithm", "best effort")
                      if f"torch {lv}" in impls}
        for impl, per in impls.items():
            ms, t = best(per)
            ratios = [f"**{torch_best[lv] / ms:.2f}**" if impl.startswith("hmljax") and lv in torch_best else ""
                      for lv in ("same algorithm", "best effort")]
            out.append(f"| {ds} | {b} | {impl} | " + " | ".join(_fmt(per.get(t_)) for t_ in counts)
                       + f" | {_fmt(ms)} ({t}) | " + " | ".join(ratios) + " |")
    leads = sorted((min(best(impls[f"torch {lv}"])[0] for lv in ("same algorithm", "best effort")) / best(per)[0],
                    ds, b, impl) for (ds, b), impls in times.items() for impl, per in impls.items()
                   if impl.startswith("hmljax"))
    lo, hi = leads[0], leads[-1]
    out += ["", f"Each side at its best count, hmljax's lead over the faster PyTorch level runs from {lo[0]:.2f}x "
            f"({lo[3]}, {lo[1]}, B = {lo[2]}) to {hi[0]:.2f}x ({hi[3]}, {hi[1]}, B = {hi[2]})"
            + ("; below 1, PyTorch is faster." if lo[0] < 1 else ".")]
    if e2e:
        out += ["", "One cellcycle_FUN epoch (section 4's loops, published settings, batch 4), seconds:", "",
                "| impl | " + " | ".join(f"s at {t} thr" for t in counts) + " | best s (threads) | hmljax's lead |",
                "|" + "---|" * (3 + len(counts))]
        h = best(e2e["hmljax scan epoch"])[0]
        for impl, per in e2e.items():
            sec, t = best(per)
            out.append(f"| {impl} | " + " | ".join(_fmt(per.get(t_)) for t_ in counts) + f" | {_fmt(sec)} ({t}) | "
                       + ("" if impl.startswith("hmljax") else f"{sec / h:.2f}x") + " |")
    return out + [""]


def report() -> str:
    lines = ["# Benchmarks: hmljax vs PyTorch", "",
             "Written by `python -m benchmarks.run_all` from the JSON rows in `benchmarks/results/`. Every",
             "benchmark checks that both sides compute the same values before timing; jax is timed after",
             "compilation (compile time reported on its own); float32 on both sides; the same thread count",
             "for XLA and torch; the median of many repeats. Ratios are from one run on one machine.", "",
             "PyTorch is measured at three levels (`benchmarks/_torch_levels.py`), each checked equal to hmljax "
             "before it is timed (the loss at every step and every parameter after 5 steps; the constraint's "
             "values exactly and its gradients to 1e-6):", "",
             "- **as published**: the papers' released code paths: C-HMCNN's float64 dense `[B, N, N]` constraint "
             "and plain `torch.optim.Adam`, RARE's Python loop over E such networks. What a user gains by "
             "switching.",
             "- **same algorithm**: hmljax's algorithm written in PyTorch: the sparse level-wise constraint with "
             "`scatter_reduce(amax)` along the hierarchy's edges, BCE from logits, `Adam(fused=True)`, E networks "
             "as stacked `baddbmm` weights, tensors indexed directly.",
             "- **best effort**: the same-algorithm step, forward, loss, backward and optimiser, as one "
             "`torch.compile(fullgraph=True)` graph (0 graph breaks, recorded), its compile time apart.", "",
             "Every benchmark refuses to time while other processes use more than half of the cores (or flags "
             "every row `loaded_machine` with `--allow-loaded`), runs each timed case at least 10 times, and "
             "records the machine: CPU model, float32 matmul GFLOP/s and in-place stream bandwidth, measured in "
             "the same process. Absolute times hold only for that machine.", ""]
    first = next((d for d in (_load(b.replace("bench_", "")) for b in BENCHES) if d), None)
    if first:
        m = first["machine"]
        lines += [f"Machine: {m.get('cpu_model', m.get('processor'))}, {m.get('cpus')} CPUs; {m.get('platform')}; "
                  f"python {m.get('python')}, jax {m.get('jax')}, torch {m.get('torch')}; threads {first['threads']}; "
                  f"date {first['date']}"
                  + (f"; measured float32 matmul {m['matmul_gflops_f32']:.0f} GFLOP/s" if m.get("matmul_gflops_f32")
                     else "")
                  + (f", in-place stream {m['stream_gb_per_s']:.1f} GB/s" if m.get("stream_gb_per_s") else "")
                  + ".", ""]
    d = _load("constraint")
    if d:
        rows = [r for r in d["rows"] if "impl" in r]
        for r in rows:
            r["xla_plan_MiB"] = r["xla_plan_bytes"] / 2**20 if r.get("xla_plan_bytes") else None
        lines += ["## 1. Constraint module (max over descendants)", "", _command_line(d), ""]
        lines += _table(rows, ["hierarchy", "N", "B", "impl", "mode", "median_ms", "speedup_vs_as_published",
                               "speedup_vs_torch", "speedup_vs_same_algorithm", "speedup_vs_best_effort",
                               "peak_rss_MiB", "xla_plan_MiB", "memory_ratio_vs_as_published",
                               "memory_ratio_vs_torch", "compile_s"],
                        ["hierarchy", "N", "B", "impl", "mode", "median ms", "x as published", "x dense float32",
                         "x same algorithm", "x best effort", "RSS growth MiB", "XLA plan MiB",
                         "as-published mem / ours", "float32 dense mem / ours", "compile s"])
        skipped = [r["skipped"] for r in d["rows"] if "skipped" in r]
        for s in (skipped[0] if skipped else []):
            lines.append(f"- skipped: {s}")
        lines += ["", "Peak memory is the resident-set growth during one call, measured the same way for both",
                  "sides; for jax the ratio uses the larger of that and XLA's own plan.", ""]
    d = _load("train")
    if d:
        rows = [r for r in d["rows"] if "impl" in r]
        extra = [r for r in d["rows"] if "end_to_end" in r]
        lines += ["## 2. Train step (MLP + MCLoss + Adam) and 7. the compute floor", "",
                  _command_line(d), ""]
        lines += _levels_table(rows, ["dataset", "H", "B"])
        if extra:
            rates = extra[0]["machine_rates"]
            lines += ["", f"Machine rates: float32 matmul {rates['matmul_flops_per_s'] / 1e9:.1f} GFLOP/s (2048^3), "
                      f"copy into a fresh buffer {rates['copy_bytes_per_s'] / 1e9:.1f} GB/s, in-place stream "
                      f"{(rates.get('stream_bytes_per_s') or 0) / 1e9:.1f} GB/s (bytes read + written).", ""]
            lines += _floor_table(rows, ["dataset", "B"])
            e = extra[0]["end_to_end"]
            lines += ["", "## 4. End to end: one cellcycle_FUN epoch (published settings, batch 4)", "",
                      f"hmljax scan-fused epoch: {e['hmljax_epoch_s']:.3f} s ({e['hmljax_samples_per_s']:,.0f} "
                      f"samples/s; first epoch incl. compile {e['hmljax_first_epoch_s_incl_compile']:.2f} s). "
                      "PyTorch epoch loops: as published, the released DataLoader over float64 rows; the other "
                      "levels, whole-dataset float32 tensors indexed by one `randperm` per epoch.", "",
                      "| level | torch s/epoch | torch samples/s | hmljax's lead |", "|---|---|---|---|"]
            for lv, sec in e.get("torch_epoch_s_by_level", {}).items():
                lines.append(f"| {lv} | {sec:.2f} | {e['rows'] / sec:,.0f} | **{e['ratio_by_level'][lv]:.2f}x** |")
            lines.append("")
    d = _load("ensemble")
    if d:
        rows = [r for r in d["rows"] if "impl" in r]
        lines += ["## 3. Ensembles (cellcycle_FUN sizes, batch 4)", "", _command_line(d), "",
                  "E networks trained together (RARE's setting). Levels as in section 2; as published is RARE's "
                  "`MultiHeadedModel` loop over E released networks, same algorithm the E networks as stacked "
                  "weights (`baddbmm`) with one sparse constraint pass over all members' rows.", ""]
        lines += _levels_table(rows, ["E", "B"])
        lines += [""] + _floor_table(rows, ["E", "B"]) + [""]
    d = _load("sampler")
    if d:
        lines += ["## 5. Samplers (from the memmaps)", "", _command_line(d), ""]
        lines += _table(d["rows"], ["dataset", "B", "rows", "index_batches_per_s", "gather_batches_per_s",
                                    "gather_samples_per_s"],
                        ["dataset", "B", "rows", "index batches/s", "with host gather batches/s", "samples/s"])
        lines.append("")
    d = _load("sharding")
    if d:
        lines += ["## 6. Across devices (simulated CPU devices sharing this machine's cores)", "",
                  _command_line(d), ""]
        lines += _table(d["rows"], ["layout", "E", "B", "devices", "epoch_s", "samples_per_s", "speedup_vs_1_device"],
                        ["layout", "E", "B", "devices", "s/epoch", "samples/s", "x 1 device"])
        lines += ["", "Simulated devices split the same 2 cores, so this shows the layouts work and what the",
                  "partitioning costs, not multi-accelerator scaling.", ""]
    d = _load("profile_step")
    if d:
        lines += _profile_section(d)
    d = _load("compile_options")
    if d:
        lines += ["## 9. hmljax's XLA options: `jit_train` against a plain `jax.jit`", "", _command_line(d),
                  "", f"Options: `{d['rows'][0]['options'] if d['rows'] else {}}`. Both versions train the same "
                  "epochs from the same state and end with bitwise-equal parameters (checked); their epochs are "
                  "timed alternately.", ""]
        lines += _table(d["rows"], ["dataset", "case", "jit_epoch_s", "jit_train_epoch_s", "speedup", "copies_jit",
                                    "copies_jit_train", "compile_s_jit", "compile_s_jit_train"],
                        ["dataset", "case", "jax.jit s/epoch", "jit_train s/epoch", "speed-up", "copies (jit)",
                         "copies (jit_train)", "compile s (jit)", "compile s (jit_train)"])
        lines.append("")
    d = _load("engine")
    if d:
        lines += ["## 10. The engine reshape (issue 17): today's tree against the last commit before it", "",
                  f"Command: `{d['command']}` ({d['date'][:10]}). Each version trains in its own child processes "
                  "through the public `TrainConfig` / `train_and_evaluate`, alternating baseline / current; the first "
                  "epoch of each child (the compile) is left out.", ""]
        lines += _table(d["rows"], ["case", "epochs_timed", "baseline_epoch_s", "current_epoch_s",
                                    "current_over_baseline", "params_bitwise_equal"],
                        ["case", "epochs each", f"{d['rows'][0]['baseline']} s/epoch", "engine s/epoch",
                         "engine / baseline", "parameters bitwise equal"])
        lines += ["", "When measured (2026-11-30) the two versions compiled to the same program: the compiled epoch "
                  "of each had the same 3,122 instructions of the same kinds.", ""]
    d = _load("hlstm")
    if d:
        rows = [r for r in d["rows"] if "impl" in r]
        lines += ["## 11. HLSTM's train step (issue 20) at the three levels", "", _command_line(d), "",
                  "HLSTM (an LSTM unrolled over 6 hierarchy levels, a local head per level, a global head, the "
                  "hybrid 0.5 LHLoss + 0.5 MCLoss). HLSTM has no released code, so **as published** is the paper "
                  "written in stock modules (`benchmarks/_torch_hlstm.py`): `nn.LSTM` over x repeated L times, "
                  "LHLoss on probabilities through a parent table (`amin`), MCLoss as C-HMCNN's released float64 "
                  "dense `[B, C, C]` max, default Adam. **Same algorithm** is hmljax's: the input's gate projection "
                  "once, the cell written out with its backward by hand so that the recurrent kernel's gradient "
                  "is one product over all levels (a `torch.autograd.Function`, as hmljax's custom VJP), both "
                  "constraints in logit space (the sparse `scatter_reduce` max, a "
                  "gathered parent-table min), fused Adam; **best effort** compiles that step whole. The dataset's "
                  "dropout when timed; hmljax's scan epoch over a slice of the epoch's batches (per step).", "",
                  "The equality checks differ from the other benchmarks' in two ways, both found with a float64 run "
                  "of the same-algorithm step (`benchmarks/hlstm_float64_witness.py`, the table after the floor). "
                  "(1) They start "
                  "the local heads from Xavier instead of the paper's constant 0.1 (timed runs keep 0.1): with every "
                  "local weight equal, the nodes of one level head start bitwise tied, and which of a child and a "
                  "same-level parent LHLoss's min picks is then decided by float32 rounding of the matmul's columns "
                  "(on cellcycle_GO at batch 64 a few local-head gradients differed by up to 18 % at step 1, the "
                  "float64 run splitting each tie evenly). (2) A tensor may have elements beyond both bounds if each "
                  "is within two Adam steps per step and the disagreement's norm is at most 3 % of the tensor's "
                  "update norm (`noise_norm_tol`): their gradients are near-cancelling sums (a ReLU or the min "
                  "switching on a near-tie; one ReLU flip at batch 4 moves a unit's whole fan-in), float32 decides "
                  "their sign on either side, and Adam turns that into a whole step. Each check records "
                  "`elements_beyond_both_bounds` and the largest `|diff| / |update|`; a level with another lr, "
                  "loss or weight decay moves whole tensors and still fails. (3) A level whose trajectory parts "
                  "from hmljax's only after LHLoss's min took another entry at a near-tie (the two entries within "
                  "1e-6 relative at both sides' parameters: a positive's min over a node and its parents is pushed "
                  "up, which drives them together, and float32 rounding then picks either) passes on the steps "
                  "before that switch, at least 2, and its row names the switch "
                  "(`_torch_hlstm.explain_near_tie`); found on this CPU for the compiled level over 5 steps at a "
                  "stricter tolerance (the switch at step 4, gap 7e-8). The CUDA check of 2026-12-04 that "
                  "failed at 5-10 % is not such a switch (the witness on a GPU, below), and still fails.", ""]
        lines += _levels_table(rows, ["dataset", "B"])
        lines += [""] + _floor_table(rows, ["dataset", "B"]) + [""]
        w = _load("hlstm_witness")
        if w:
            lines += ["The float64 witness (`" + w["command"] + "`): hmljax and the same-algorithm "
                      "level in float32, that level in float64, after the same steps from the same parameters. "
                      "'disagree': elements where the two float32 sides differ beyond 1e-4 |ref| + 1e-6; the last "
                      "two columns count the parameter tensors where, on those elements, hmljax's float32 (or "
                      "torch's) is the one further from float64. Both sides stray: it is rounding, not a different "
                      "computation. With the constant initialisation hmljax's float32 is the one further in most "
                      "tensors (XLA's matmul columns are not bitwise equal, so it breaks the init's ties; torch's "
                      "keep them, as float64 does); from Xavier it is torch's.", "",
                      "| dataset | B | local init | steps | elements that disagree | largest share of a tensor | "
                      "tensors where hmljax is further | tensors where torch is further |",
                      "|---|---|---|---|---|---|---|---|"]
            lines += [f"| {r['dataset']} | {r['B']} | {r['local_init']} | {r['steps']} | "
                      f"{r['disagree']:,} of {r['params']:,} | {r['max_tensor_share']:.3%} | "
                      f"{r['h32_further_from_f64']} | {r['t32_further_from_f64']} |" for r in w["rows"]]
            lines += [""]
        lines += _witness_levels_section(_load("hlstm_witness_best_effort"),
                                         _load("hlstm_witness_best_effort", "gpu"))
        lines += _take_apart_section(_load("hlstm_take_apart"), _load("hlstm_take_apart", "gpu"))
    d = _load("hmt")
    if d:
        rows = [r for r in d["rows"] if "impl" in r]
        lines += ["## 13. HMT-Net's train step (group heads, group noise, the group-weighted loss) at the three levels",
                  "", _command_line(d), "",
                  "`method=hmt` as the long-tail experiment trains it (two 256-wide encoder layers, three group heads "
                  "by train counts, lambda = 2, eta = 0.5, BCE, Adam lr 1e-3). HMT-Net has no released code, so "
                  "**as published** is the paper in stock modules with its loss as eq. 5-7 write it (one BCE per "
                  "group and one over all classes, `benchmarks/_torch_hmt.py`) and default Adam; **same algorithm** "
                  "is hmljax's single BCE pass times the fixed class weight eq. 5-7 amount to, with fused Adam; "
                  "**best effort** compiles that step whole. Checked with the noise and dropout off, timed with "
                  "both on.", ""]
        lines += _levels_table(rows, ["dataset", "C", "B"])
        lines += [""] + _floor_table(rows, ["dataset", "B"]) + [""]
    d = _load("selection")
    if d:
        lines += _selection_section(d)
    d = _load("traffic")
    if d:
        lines += _traffic_section(d)
    d = _load("checkpoint_memory")
    if d:
        lines += _checkpoint_memory_section(d)
    lines += _thread_sweep_section()
    d = _load("adam_layouts")
    if d:
        lines += ["## 18. Adam's update in one pass? Three rewrites, timed", "", _command_line(d), "",
                  "The update alone on one flat, donated parameter vector: hmljax's optax chain and three rewrites "
                  "that compute the same numbers in the same order (`benchmarks/bench_adam_layouts.py` says how). "
                  "None brings XLA's CPU plan below hmljax's 48 bytes per parameter (torch's fused Adam: 28): "
                  "one function with three outputs compiles to the same plan, stacking the moments into one "
                  "array adds a concatenation pass, and a loop over cache-sized chunks is slower still: on 2026-12-04 "
                  "each of its iterations cost about what copying the three carried buffers would, so they were "
                  "not updated in place (its arithmetic, compiled inside the loop, is not bitwise the same). "
                  "The last three rows are what does make it one pass: hmljax's fused CPU kernel "
                  "(`adam_kernel=fused`, section 19; XLA counts no bytes for a custom call) and PyTorch's "
                  "`torch.optim.Adam(weight_decay=wd)` with `fused=True` and `foreach=True`, on the same vector "
                  "and thread count. The last column is the largest difference from hmljax's parameters after 3 "
                  "updates, relative to their largest magnitude (float32 rounding: about 1e-7).", ""]
        lines += _table(d["rows"], ["variant", "params", "median_ms", "x_hmljax", "bytes_per_param_xla",
                                    "bitwise_equal_to_hmljax", "max_rel_diff_vs_hmljax", "repeats"],
                        ["variant", "params", "median ms", "x hmljax", "XLA bytes/param", "bitwise equal to hmljax "
                         "after 3 updates", "max relative difference", "repeats"])
        lines.append("")
    lines += _adam_kernel_section()
    lines += _gpu_section()
    lines += _targets()
    text = "\n".join(lines) + "\n"
    tmp = os.path.join(HERE, "README.md.tmp")
    with open(tmp, "w") as fh:
        fh.write(text)
    os.replace(tmp, os.path.join(HERE, "README.md"))
    return text


def main(argv=None) -> int:
    from benchmarks import _common as C

    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--threads", type=C.count, default=os.cpu_count())
    p.add_argument("--quick", action="store_true")
    p.add_argument("--only", nargs="*", default=BENCHES, help=f"a subset of {', '.join(BENCHES)}")
    p.add_argument("--report-only", action="store_true")
    p.add_argument("--sweep-threads", type=C.count, nargs="+", default=None, metavar="N",
                   help="also run bench_train at each of these thread counts into results/threads/ (section 17)")
    p.add_argument("--allow-loaded", action="store_true",
                   help="time on a busy machine anyway, every row flagged (passed to each benchmark)")
    p.add_argument("--max-load", type=float, default=0.5, help="busy threshold per core (passed to each benchmark)")
    p.add_argument("--adam-fused", action="store_true",
                   help=f"also run {', '.join(ADAM_FUSED)} with hmljax's fused CPU Adam into results/adam_fused/ "
                        "(section 19)")
    args = p.parse_args(argv)
    if bad := [b for b in args.only if b not in BENCHES]:
        p.error(f"--only: no benchmark {', '.join(map(repr, bad))} (there are: {', '.join(BENCHES)})")
    failed = []
    if not args.report_only:
        # Once here, before the first benchmark: a busy machine was found by the first one, as a traceback of
        # run_all. Each benchmark checks again (a load that starts midway flags or stops its own rows).
        if any(b not in UNTIMED for b in args.only):
            C.guard_load(args)
        for b in args.only:
            # The profile runs on one thread: its attribution needs XLA's ops to run one at a time.
            threads = 1 if b == "profile_step" else args.threads
            cmd = [sys.executable, "-m", f"benchmarks.{b}", "--threads", str(threads), "--max-load", str(args.max_load)]
            if args.data_dir:
                cmd += ["--data-dir", args.data_dir]
            cmd += ["--quick"] * args.quick + ["--allow-loaded"] * args.allow_loaded
            print("$", " ".join(cmd), flush=True)
            rc = subprocess.run(cmd, cwd=ROOT).returncode
            if rc:
                failed.append(b)
                print(f"run_all: {b} failed (exit {rc}; its output is above); the others go on", flush=True)
        for b in ADAM_FUSED if args.adam_fused else ():
            cmd = [sys.executable, "-m", f"benchmarks.{b}", "--threads", str(args.threads), "--max-load",
                   str(args.max_load), "--adam-kernel", "fused"]
            cmd += ["--data-dir", args.data_dir] * bool(args.data_dir) + ["--quick"] * args.quick
            cmd += ["--allow-loaded"] * args.allow_loaded
            print("$", " ".join(cmd), flush=True)
            if subprocess.run(cmd, cwd=ROOT).returncode:
                failed.append(f"{b} --adam-kernel fused")
        for t in args.sweep_threads or ():
            out = os.path.join(HERE, "results", "threads", f"train_t{t}.json")
            cmd = [sys.executable, "-m", "benchmarks.bench_train", "--threads", str(t), "--max-load",
                   str(args.max_load), "--out", os.path.relpath(out, ROOT)]
            cmd += ["--data-dir", args.data_dir] * bool(args.data_dir) + ["--allow-loaded"] * args.allow_loaded
            print("$", " ".join(cmd), flush=True)
            if subprocess.run(cmd, cwd=ROOT).returncode:
                failed.append(f"bench_train --threads {t}")
    print(report())
    if failed:
        print(f"run_all: {len(failed)} benchmark(s) failed: {', '.join(failed)}; benchmarks/README.md shows their "
              "last rows that were written", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
