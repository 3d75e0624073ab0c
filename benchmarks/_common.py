"""Shared benchmark plumbing: thread pinning, timing, equality checks, JSON rows, printed tables.

Import this module *before* jax or torch: it fixes both libraries' thread counts
to ``--threads`` (default: every core) so the two sides compete on equal terms.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results")


def count(text: str) -> int:
    """An argparse type: an integer >= 1 (``--threads 0`` and ``--repeats 0`` were taken, then failed later)."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {n}")
    return n


def parse_args(description: str, extra=None, *, timed: bool = True) -> argparse.Namespace:
    """The shared flags; ``timed=False`` (a benchmark that only compiles and counts) skips the load guard."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--threads", type=count, default=os.cpu_count(), help="threads for both jax and torch")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                   help="where both sides run: cpu (jax pinned to it even on a GPU machine) or cuda (one GPU, "
                        "float32 matmuls in full float32 on both sides)")
    p.add_argument("--repeats", type=count, default=30, help="timed repeats (the median is reported)")
    p.add_argument("--quick", action="store_true", help="few repeats and small sizes: a smoke run")
    p.add_argument("--out", default=None, help="JSON rows file (default: benchmarks/results/<name>.json)")
    p.add_argument("--allow-loaded", action="store_true",
                   help="time on a busy machine anyway (rows are flagged) instead of refusing; see load_check")
    p.add_argument("--max-load", type=float, default=0.5,
                   help="busy threshold: 1-minute load, or other processes' CPU use, per core")
    p.add_argument("--adam-kernel", choices=("xla", "fused"), default="xla",
                   help="hmljax's Adam: optax's, compiled by XLA, or the fused C++ pass on CPU (adam_kernel=fused; "
                        "rows go to benchmarks/results/adam_fused/ unless --out says otherwise)")
    if extra:
        extra(p)
    args = p.parse_args()
    pin_threads(args.threads)
    pin_device(args.device)
    if args.quick:
        args.repeats = min(args.repeats, 3)
    if timed:
        guard_load(args)  # every timing benchmark: refuse (or flag, with --allow-loaded / --quick) a busy machine
    return args


def pin_threads(n: int) -> None:
    """Same thread count on both sides; must run before jax/torch create their pools.

    Fewer threads than usable CPUs also pins the process to the first ``n`` of them: XLA's CPU thread pool is
    sized by the CPUs the process may use, not by these flags, so until 2026-12-03 ``--threads 1`` gave torch
    one thread and jax a pool over every core (the committed ``--threads 1`` results, profile_step's op times,
    were measured so; traffic and checkpoint memory time nothing)."""
    if hasattr(os, "sched_getaffinity") and n < len(os.sched_getaffinity(0)):
        from hmljax.training import pin_cpus

        pin_cpus(sorted(os.sched_getaffinity(0))[:n])
    flags = os.environ.get("XLA_FLAGS", "")
    if "intra_op_parallelism_threads" not in flags:
        multi = "true" if n > 1 else "false"
        os.environ["XLA_FLAGS"] = (flags + f" --xla_cpu_multi_thread_eigen={multi} "
                                   f"intra_op_parallelism_threads={n}").strip()
    os.environ.setdefault("OMP_NUM_THREADS", str(n))
    os.environ.setdefault("MKL_NUM_THREADS", str(n))
    try:
        import torch

        torch.set_num_threads(n)
        torch.set_num_interop_threads(1)
    except (ImportError, RuntimeError):
        pass


TORCH_DEVICE = "cpu"  # set by pin_device: where the torch levels allocate (their factories follow it)


def pin_device(device: str) -> None:
    """Puts both sides on ``device`` (``cpu`` or ``cuda``); must run before jax is imported.

    cpu: ``JAX_PLATFORMS=cpu`` (unless set), so a GPU machine's CPU rows are CPU rows.
    cuda: torch's default device becomes the GPU (every factory call and module the levels make
    lands there; numpy inputs go through ``torch.as_tensor``), and both sides compute float32 in float32:
    jax's default matmul precision becomes ``highest`` (JAX's GPU default is TF32), and torch's cuDNN
    TF32 flag is turned off: PyTorch's cuBLAS matmuls are float32 by default, but
    ``torch.backends.cudnn.allow_tf32`` is on by default. On an H200 (2026-12-04, flag on) the HLSTM twin's
    as-published level, the one on ``nn.LSTM`` (a cuDNN kernel), ended 5 steps 2.8e-4 from hmljax's
    parameters where the levels on plain matmuls ended 2e-7 away. The equality checks need both in float32.
    """
    global TORCH_DEVICE
    TORCH_DEVICE = device
    if device == "cpu":
        if not os.environ.get("JAX_PLATFORMS"):
            os.environ["JAX_PLATFORMS"] = "cpu"
        return
    import jax

    jax.config.update("jax_default_matmul_precision", "highest")
    if jax.default_backend() != "gpu":
        raise SystemExit(f"--device cuda: jax sees no GPU (its backend is {jax.default_backend()!r})")
    try:
        import torch
    except ImportError:
        return
    if not torch.cuda.is_available():
        raise SystemExit("--device cuda: torch sees no CUDA device")
    torch.set_default_device("cuda")
    torch.backends.cuda.matmul.allow_tf32 = False  # the default; set so that no import can change it
    torch.backends.cudnn.allow_tf32 = False  # True by default: cuDNN's kernels may use TF32


def torch_sync(r):
    """Waits for torch's queued GPU work (a no-op on CPU, whose ops are synchronous); returns ``r``."""
    if TORCH_DEVICE == "cuda":
        import torch

        torch.cuda.synchronize()
    return r


def timeit(fn, *, repeats: int, warmup: int = 2, sync=torch_sync, budget_s: float = 30.0,
           min_repeats: int = 10) -> dict:
    """Median (and spread) wall time of ``fn()`` over ``repeats`` runs after ``warmup`` runs.

    ``sync`` blocks on the result (``jax.block_until_ready``; by default torch's GPU queue, and
    nothing on CPU, where torch ops are synchronous). Cases slower than ``budget_s`` in total stop early, but never
    before ``min(min_repeats, repeats)`` timed runs (at least 3), so a slow
    row's median still rests on enough samples (the row records how many ran).
    """
    floor = max(min(min_repeats, repeats), min(3, repeats))
    t_start = time.perf_counter()
    for _ in range(warmup):
        sync(fn())
        if time.perf_counter() - t_start > budget_s:
            break
    ts = []
    t_start = time.perf_counter()
    for _ in range(repeats):
        t0 = time.perf_counter()
        sync(fn())
        ts.append(time.perf_counter() - t0)
        if len(ts) >= floor and time.perf_counter() - t_start > budget_s:
            break
    repeats = len(ts)
    return {"median_s": statistics.median(ts), "min_s": min(ts), "max_s": max(ts), "repeats": repeats}


def jax_sync(r):
    import jax

    return jax.block_until_ready(r)


def compile_seconds(jitted, *args) -> tuple[float, object]:
    """AOT-compiles ``jitted`` for ``args`` from a cold cache; returns (seconds, compiled)."""
    import jax

    jax.clear_caches()
    t0 = time.perf_counter()
    compiled = jitted.lower(*args).compile()
    return time.perf_counter() - t0, compiled


def xla_memory_bytes(compiled) -> int | None:
    """XLA's planned peak for one call: arguments + outputs + temporaries (aliased bytes counted once)."""
    try:
        m = compiled.memory_analysis()
        return int(m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes
                   - m.alias_size_in_bytes)
    except Exception:  # noqa: BLE001 - not every backend reports it
        return None


def _xla_cost(compiled, key: str) -> float | None:
    try:
        ca = compiled.cost_analysis()
        ca = ca[0] if isinstance(ca, (list, tuple)) else ca
        return float(ca.get(key, 0.0)) or None
    except Exception:  # noqa: BLE001
        return None


def xla_flops(compiled) -> float | None:
    """XLA's count of the compiled program's floating-point operations (None where the backend gives none)."""
    return _xla_cost(compiled, "flops")


def xla_bytes(compiled) -> float | None:
    """XLA's count of the bytes the compiled program's top-level ops read and write (each op's operands and
    outputs, after fusion): the memory traffic its fusion plan implies, where nothing stays in cache."""
    return _xla_cost(compiled, "bytes accessed")


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise OSError(field)


def peak_rss_delta(fn) -> int | None:
    """Bytes the process's resident set grows to, above its level before, while running ``fn()`` once.

    Resets the kernel's high-water mark (``/proc/self/clear_refs``), so setup,
    compilation and warm-up do not count. Measured the same way for jax and
    torch (both allocate CPU buffers with malloc). Buffers above glibc's mmap
    threshold (at most 32 MiB) are returned to the OS when freed and so are
    counted in full; smaller ones may be served from memory the allocator kept,
    which can only under-count (for jax the ratio also uses XLA's own plan).
    Returns None where /proc is unavailable.
    """
    import gc

    gc.collect()
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        before = _status_kib("VmRSS")
        fn()
        return max(_status_kib("VmHWM") - before, 0) * 1024
    except OSError:
        return None


def assert_close(name: str, a, b, *, rtol=1e-4, atol=1e-5) -> float:
    """Both sides (jax vs torch, or sharded vs one device) must compute the same values before timing."""
    import numpy as np

    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        raise AssertionError(f"{name}: shapes differ {a.shape} vs {b.shape}")
    with np.errstate(divide="ignore", invalid="ignore"):  # rtol = atol = 0 asks for exact equality
        scaled = np.where(a == b, 0.0, np.abs(a - b) / (atol + rtol * np.abs(b)))
    err = float(np.max(scaled)) if a.size else 0.0
    if not np.allclose(a, b, rtol=rtol, atol=atol):
        raise AssertionError(f"{name}: the two sides disagree (max scaled error {err:.3g})")
    return float(np.max(np.abs(a - b))) if a.size else 0.0


_RATES: dict = {}


def machine_rates(repeats: int = 10) -> dict:
    """This machine's measured float32 matmul FLOP/s (jax, 2048^3) and copy bandwidth (bytes/s, 256 MiB).

    Measured once per process (later calls return the first measurement), so
    every table can state what the machine it ran on can do.
    """
    if _RATES:
        return dict(_RATES)
    import jax
    import jax.numpy as jnp

    n, reps = 2048, max(5, repeats // 3)
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    mm = jax.jit(lambda a: jnp.matmul(a, a, precision="highest"))  # float32, not a GPU's TF32
    t = timeit(lambda: mm(a), repeats=reps, sync=jax_sync, min_repeats=reps)["median_s"]
    big = jnp.ones((64 * 2**20,), jnp.float32)
    cp = jax.jit(lambda x: x * 1.0001)
    tb = timeit(lambda: cp(big), repeats=reps, sync=jax_sync, min_repeats=reps)["median_s"]
    # A copy reads and writes every byte once: 2 x nbytes per call.
    _RATES.update(matmul_flops_per_s=2 * n**3 / t, copy_bytes_per_s=2 * big.nbytes / tb,
                  stream_bytes_per_s=_stream_bandwidth(reps))
    return dict(_RATES)


def _stream_bandwidth(reps: int, n: int = 32 * 2**20) -> float:
    """Bytes/s of an in-place triad ``a = a + s * b`` over two float32 arrays of ``n`` elements.

    The copy above writes a fresh 256 MiB output per call, so it also pays for
    new pages; a train step updates buffers it already owns. Here ``a`` is donated
    and updated in a loop in one call: each pass reads a and b and writes a. The
    default, two 128 MiB arrays, is 4x the L3 of today's machines (DRAM); smaller
    ``n`` measure the cache a smaller working set lives in.
    """
    import jax
    import jax.numpy as jnp

    passes = max(8, min(2000, (256 * 2**20) // max(n, 1)))  # ~3 GB of traffic per call
    b = jnp.full((n,), 1e-3, jnp.float32)
    triad = jax.jit(lambda a, b: jax.lax.fori_loop(0, passes, lambda _, a: a + 0.5 * b, a), donate_argnums=(0,))
    holder = [jnp.zeros((n,), jnp.float32)]

    def run():
        holder[0] = triad(holder[0], b)
        return holder[0]

    # The fastest pass, not the median: this rate sets the floors, which must be lower bounds, and on a shared
    # host a median taken while a neighbour uses the memory bus fell below what the train step itself then
    # reached (HLSTM on cellcycle_GO, 2026-12-04: the step at 128 % of its "floor").
    t = timeit(run, repeats=reps, sync=jax_sync, min_repeats=reps)["min_s"]
    return passes * 3 * 4 * n / t


_STREAM: dict = {}


def stream_bandwidth_for(n_params: int, reps: int = 5) -> float:
    """In-place stream bandwidth for a working set like an optimiser step's on ``n_params`` parameters.

    Two arrays of ``2 * n_params`` floats: the same bytes as p, g, m and v
    together, so a state that fits in cache is measured in cache. Cached per size.
    """
    if n_params not in _STREAM:
        _STREAM[n_params] = _stream_bandwidth(reps, 2 * n_params)
    return _STREAM[n_params]


def _proc_cpu_ticks() -> dict[int, tuple[str, int]]:
    """pid -> (command name, user + system clock ticks so far) for every readable process."""
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                stat = fh.read()
        except OSError:  # the process ended meanwhile
            continue
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()
        out[int(entry)] = (name, int(fields[11]) + int(fields[12]))  # utime, stime
    return out


def load_check(max_load: float = 0.5, interval_s: float = 2.0) -> dict:
    """Is the machine busy? The other processes' CPU use, per core (the load averages are recorded too).

    Other processes' use is sampled from ``/proc/<pid>/stat`` over
    ``interval_s``; this process is left out. ``loaded`` is True when it
    exceeds ``max_load`` per core (0.5: half of every core busy on average).
    The 1-minute load average is not the test: it lags by a minute, so it
    would refuse a benchmark that starts right after another one finished.
    Returns ``{"loaded": None, ...}`` where ``/proc`` is unavailable.
    """
    cpus = os.cpu_count() or 1
    info = {"cpus": cpus, "max_load_per_cpu": max_load}
    try:
        with open("/proc/loadavg") as fh:
            load1, load5, load15 = (float(v) for v in fh.read().split()[:3])
        before = _proc_cpu_ticks()
        time.sleep(interval_s)
        after = _proc_cpu_ticks()
    except OSError:
        return info | {"loaded": None}
    hz = os.sysconf("SC_CLK_TCK")
    busy = []
    for pid, (name, ticks) in after.items():
        if pid == os.getpid() or pid not in before:
            continue
        cores = (ticks - before[pid][1]) / hz / interval_s
        if cores >= 0.05:
            busy.append({"pid": pid, "name": name, "cpu_cores": round(cores, 2)})
    busy.sort(key=lambda b: -b["cpu_cores"])
    other = sum(b["cpu_cores"] for b in busy)
    loaded = other / cpus > max_load
    return info | {"loaded": loaded, "load_1m": load1, "load_5m": load5, "load_15m": load15,
                   "load_1m_per_cpu": load1 / cpus, "other_cpu_cores": round(other, 2),
                   "busy_processes": len(busy), "busiest": busy[:5]}


def guard_load(args) -> dict:
    """Checks the machine before timing: refuses to run when it is busy, unless ``--allow-loaded`` or ``--quick``.

    The result is kept on ``args.load``; :func:`write_rows` stores it in the
    JSON and marks every row ``"loaded_machine": true`` when the check found a
    busy machine, so loaded numbers can never pass for quiet ones.
    """
    load = load_check(getattr(args, "max_load", 0.5))
    args.load = load
    if load.get("loaded"):
        what = (f"1-minute load {load['load_1m']:.2f} on {load['cpus']} cores, other processes using "
                f"{load['other_cpu_cores']:.2f} cores ({', '.join(b['name'] for b in load['busiest'][:3])})")
        if not (getattr(args, "allow_loaded", False) or getattr(args, "quick", False)):
            raise SystemExit(f"the machine is busy: {what}; timings would not be comparable. Wait for a quiet "
                             "machine, or pass --allow-loaded to time anyway with every row flagged.")
        print(f"warning: the machine is busy ({what}); every row is flagged loaded_machine", flush=True)
    return load


def machine(measure_rates: bool = True) -> dict:
    """The machine a table ran on: CPU model, cores, library versions, and its measured matmul and copy rates."""
    info = {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(), "python": platform.python_version(), "device": TORCH_DEVICE}
    try:
        import jax

        info["jax"] = jax.__version__
        info["jax_devices"] = [str(d) for d in jax.devices()]
    except ImportError:
        pass
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
    except ImportError:
        pass
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    info["cpu_model"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    if TORCH_DEVICE == "cuda":
        try:
            import torch

            info["gpu"] = torch.cuda.get_device_name()
        except (ImportError, RuntimeError):
            pass
    if measure_rates:
        try:
            rates = machine_rates()
            info["matmul_gflops_f32"] = rates["matmul_flops_per_s"] / 1e9
            info["copy_gb_per_s"] = rates["copy_bytes_per_s"] / 1e9
            info["stream_gb_per_s"] = rates["stream_bytes_per_s"] / 1e9
        except ImportError:
            pass
    return info


def _command() -> str:
    """How this benchmark was started, as a user would type it from the repository root."""
    argv = list(sys.argv)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if argv and argv[0].endswith(".py") and os.path.abspath(argv[0]).startswith(root + os.sep):
        mod = os.path.relpath(os.path.abspath(argv[0]), root)[:-3].replace(os.sep, ".")
        argv = ["-m", mod, *argv[1:]]
    return shlex.join(["python", *argv])  # quoted: `--levels "best effort"` copies back as one argument


def partial_path(path: str) -> str:
    """Where :func:`write_rows` keeps a benchmark's rows so far (``train.json`` -> ``train.partial.json``)."""
    return (path[:-len(".json")] if path.endswith(".json") else path) + ".partial.json"


def write_rows(name: str, rows: list[dict], args, out=None, *, measure_rates: bool = True,
               partial: bool = False) -> str:
    """Writes a benchmark's rows as JSON (atomically), with the machine, the command and the date.

    ``partial=True``, after each case: the rows so far go to :func:`partial_path` beside the result, marked
    ``"complete": false``, and a complete result already there is left alone. A benchmark stopped before its
    end (a GPU sitting's job at its time limit, a ^C) thus keeps the cases it finished. The final write removes
    the partial file."""
    os.makedirs(RESULTS, exist_ok=True)
    kernel_dir = "adam_fused" if getattr(args, "adam_kernel", "xla") == "fused" else ""
    final = out or getattr(args, "out", None) or os.path.join(RESULTS, kernel_dir, f"{name}.json")
    path = partial_path(final) if partial else final
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    load = getattr(args, "load", None)  # set by guard_load
    if load and load.get("loaded"):
        rows = [r | {"loaded_machine": True} for r in rows]
    payload = {"benchmark": name, "machine": machine(measure_rates=measure_rates and not partial),
               "threads": args.threads, "adam_kernel": getattr(args, "adam_kernel", "xla"),
               "repeats": args.repeats,
               "command": _command(), "rows": rows, "complete": not partial,
               "date": time.strftime("%Y-%m-%d %H:%M:%S")}
    if load is not None:
        payload["load"] = load
    tmp = path + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(payload, fh, indent=2)
    os.replace(tmp, path)
    if not partial and os.path.exists(partial_path(final)):
        os.remove(partial_path(final))
    return path


def print_table(rows: list[dict], cols: list[str]) -> str:
    def fmt(v):
        if isinstance(v, float):
            return f"{v:.4g}"
        return "" if v is None else str(v)

    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(r.get(c)) for c in cols) + " |" for r in rows]
    text = "\n".join(lines)
    print(text, flush=True)
    return text
