"""One sitting on a lent GPU machine: benchmarks and training runs under one time budget, packed into one
file that comes back, then unpacked here into the runs and results it extends.

A lent machine is short (15 minutes of device time per session, at most 10 per command, 8 files back)
and bare, and ``../shared`` does not travel with the checkout. So a sitting is one command that runs a
list of jobs, each with its own time limit, stops the last one at the budget (its finished runs are
kept), and packs what it made. Checkpoints do not come back, but the machine keeps them while it is warm
(30 s after a call): each job's runs get a deadline :data:`STOP_MARGIN_S` before its limit
(``$HMLJAX_STOP_BY``) and stop at a checkpoint after the last epoch that fits, so the same command issued at
once as the next call resumes them, where a run killed at the limit would lose its epochs since its last
periodic checkpoint.

Here, once per checkout (the data is 17 MB; it travels as a carried folder, which .gitignore ignores)::

    cp -r ../shared/data .gpu_data

On the device (the ``run`` tool, ``carry=[".gpu_data"]``, ``timeout_s`` a minute above ``--budget-s``)::

    python3 experiments/gpu_sitting.py run --out $OUT --data-dir .gpu_data --budget-s 480 \\
        --job 150 "-m benchmarks.bench_train --repeats 30" \\
        --job 330 "experiments/hlstm.py tables --seeds 1 --workers 8 --datasets cellcycle_GO derisi_GO"

Back here::

    python experiments/gpu_sitting.py unpack /work/.device/.../sitting.tar.gz
    python experiments/hlstm.py tables --data-dir ../shared/data --seeds 1 --table-only

The arguments are checked before the first job starts (``check_sitting``): a mistyped job, a data folder
not carried or a budget that leaves no job time is one message, not minutes of the sitting spent first.

A job is a script under the checkout (``experiments/x.py ...``) or a module (``-m benchmarks.bench_x ...``),
given ``--data-dir`` unless it names one. A benchmark module writes its JSON to
``benchmarks/results/gpu/`` (``bench_train`` to ``train.json``: never over the CPU figures) unless it names
``--out``; ``python -m benchmarks.run_all --report-only`` adds those rows as a GPU section. The
pack holds every file made under ``runs/`` during the sitting except checkpoints (a run's
``config.json``, ``metrics.jsonl`` and ``results.json`` are what the tables read), the GPU benchmark
JSONs, each job's log and ``sitting/manifest.json`` (the jobs, their exit status or time-out, the
device). ``unpack`` adds only runs not finished here; a run started here and finished there moves the
local partial folder aside (``<run>.cpu-partial``) rather than mixing the two.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shlex
import signal
import subprocess
import sys
import tarfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:  # on the device hmljax is not installed: the checkout is the package
    sys.path.insert(1, ROOT)
PACKED = ("runs", os.path.join("benchmarks", "results", "gpu"), "sitting")
PACK_NAME = "sitting.tar.gz"
PACK_RESERVE_S = 30.0  # kept back from the budget for packing and the copy out
# A job's runs pause this long before its limit: the training process's exit and the job's own teardown
# (a table rebuilt, its workers joined) fit in it.
STOP_MARGIN_S = 20.0
STOP_BY_ENV = "HMLJAX_STOP_BY"  # hmljax.training.STOP_BY_ENV; not imported: the driver starts no jax
MIN_JOB_S = 20.0  # a job given less than this (its imports and compile alone take longer) is skipped


# ----------------------------------------------------------------------------- jobs

def job_argv(spec: str, *, data_dir: str | None) -> tuple[list[str], str]:
    """``(argv after the interpreter, label)`` for one ``--job`` spec."""
    argv = shlex.split(spec)
    if not argv:
        raise SystemExit("gpu_sitting: an empty --job")
    if argv[0] == "-m":
        if len(argv) < 2:
            raise SystemExit(f"gpu_sitting: --job {spec!r}: -m needs a module")
        label = argv[1].rsplit(".", 1)[-1]
        if argv[1].startswith("benchmarks.") and "--out" not in argv:
            # named as the CPU rows are (bench_train -> train.json), under results/gpu/
            argv += ["--out", os.path.join("benchmarks", "results", "gpu", f"{label.removeprefix('bench_')}.json")]
    else:
        label = os.path.splitext(os.path.basename(argv[0]))[0] + (f"_{argv[1]}" if len(argv) > 1 else "")
    if data_dir and "--data-dir" not in argv:
        argv += ["--data-dir", data_dir]
    return argv, label


def check_sitting(jobs: list[tuple[float, str]], *, root: str, data_dir: str | None, budget_s: float) -> list[str]:
    """What is wrong with a sitting's arguments, before anything runs: a lent machine's minutes are few, and a
    mistyped job found ten minutes in (or a budget that leaves no job any time) spends them for nothing."""
    import importlib.util

    problems = []
    if not budget_s >= PACK_RESERVE_S + MIN_JOB_S:
        problems.append(f"--budget-s {budget_s:g}: at least {PACK_RESERVE_S + MIN_JOB_S:g} (the pack keeps "
                        f"{PACK_RESERVE_S:g} s back, and a job needs {MIN_JOB_S:g} s)")
    if data_dir and not os.path.isdir(os.path.join(root, data_dir)):
        problems.append(f"--data-dir {data_dir}: no such folder under {root} (carried as the run tool's `carry`?)")
    for seconds, spec in jobs:
        if not seconds >= MIN_JOB_S:
            problems.append(f"--job {seconds:g} {spec!r}: give a job at least {MIN_JOB_S:g} s")
        argv = shlex.split(spec)
        if not argv or (argv[0] == "-m" and len(argv) < 2):
            continue  # job_argv names these
        if argv[0] == "-m":
            parts = argv[1].split(".")
            if os.path.exists(os.path.join(root, parts[0])) or os.path.exists(os.path.join(root, parts[0] + ".py")):
                found = (os.path.isfile(os.path.join(root, *parts) + ".py")
                         or os.path.isfile(os.path.join(root, *parts, "__init__.py")))
            else:  # an installed package (pytest, json.tool): its top level, found without importing anything
                found = importlib.util.find_spec(parts[0]) is not None
            if not found:
                problems.append(f"--job {spec!r}: no module {argv[1]} in {root}")
        elif not os.path.isfile(os.path.join(root, argv[0])):
            problems.append(f"--job {spec!r}: no script {argv[0]} in {root}")
    return problems


def _stop(proc: subprocess.Popen, grace_s: float = 10.0) -> None:
    """SIGTERM the job's whole process group (workers included), then SIGKILL what is left."""
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


def run_jobs(jobs: list[tuple[float, str]], *, root: str, data_dir: str | None, budget_s: float,
             python: str = sys.executable, clock=time.monotonic) -> list[dict]:
    """Runs ``[(seconds, spec)]`` in order from ``root``, each stopped at its seconds or at the budget
    (less :data:`PACK_RESERVE_S`); returns one record per job (its label, argv, status, seconds)."""
    os.makedirs(os.path.join(root, "sitting"), exist_ok=True)
    os.makedirs(os.path.join(root, "benchmarks", "results", "gpu"), exist_ok=True)
    env = dict(os.environ, PYTHONUNBUFFERED="1",
               PYTHONPATH=os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p))
    if data_dir:
        env["HMLJAX_DATA"] = data_dir
    t0, records = clock(), []
    for i, (seconds, spec) in enumerate(jobs):
        argv, label = job_argv(spec, data_dir=data_dir)
        left = budget_s - PACK_RESERVE_S - (clock() - t0)
        limit = min(seconds, left)
        rec = {"job": i, "label": label, "argv": argv, "limit_s": round(limit, 1)}
        if limit < MIN_JOB_S:
            records.append(rec | {"status": "skipped: the budget was spent"})
            continue
        log = os.path.join(root, "sitting", f"{i:02d}_{label}.log")
        start = clock()
        # The job's runs stop at a checkpoint before its limit (hmljax.training.STOP_BY_ENV) rather than die
        # mid-epoch at it, so the next call on the still-warm machine resumes them.
        env[STOP_BY_ENV] = f"{time.time() + limit - STOP_MARGIN_S:.3f}"
        with open(log, "w") as fh:
            proc = subprocess.Popen([python, *argv], cwd=root, env=env, stdout=fh, stderr=subprocess.STDOUT,
                                    start_new_session=True)
            try:
                rc = proc.wait(timeout=limit)
                status = "ok" if rc == 0 else f"exit {rc}"
            except subprocess.TimeoutExpired:
                _stop(proc)
                status = f"stopped at its limit ({limit:.0f} s)"
        records.append(rec | {"status": status, "seconds": round(clock() - start, 1),
                              "log": os.path.relpath(log, root)})
        print(f"[sitting] job {i} {label}: {status} after {clock() - start:.0f} s", flush=True)
    return records


def log_tail(path: str, lines: int = 3) -> list[str]:
    """The last ``lines`` non-blank lines of a job's log, progress bars split at their carriage returns: what
    the run tool's short output tail shows of each job (its last epoch rate, a benchmark's last rows), so the
    next call can be decided in the 30 s a lent machine stays warm."""
    try:
        with open(path, errors="replace") as fh:
            text = fh.read()
    except OSError:
        return []
    return [ln.rstrip() for ln in text.replace("\r", "\n").splitlines() if ln.strip()][-lines:]


def device_facts() -> dict:
    """What ran the sitting: the JAX backend and devices, and nvidia-smi's GPU line where there is one.

    Asked in a child process: a backend started in this driver would hold GPU memory the jobs need."""
    facts: dict = {}
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20)
        facts["nvidia_smi"] = out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        out = subprocess.run([sys.executable, "-c", "import jax; print(jax.default_backend(), jax.devices(), "
                              "jax.__version__)"], capture_output=True, text=True, timeout=120)
        facts["jax"] = out.stdout.strip() or out.stderr.strip()[-300:]
    except (OSError, subprocess.SubprocessError):
        pass
    return facts


# ----------------------------------------------------------------------------- pack / unpack

# A run's lock, and the digests of checkpoints that stay behind, mean nothing without the run's process
# and its checkpoints.
LEFT_BEHIND = (".lock", "checkpoints.sha256.json")


def _packable(rel: str) -> bool:
    parts = rel.split(os.sep)
    return (any(rel == p or rel.startswith(p + os.sep) for p in PACKED) and "checkpoints" not in parts
            and parts[-1] not in LEFT_BEHIND and not rel.endswith(".tmp"))


def pack(root: str, out_path: str, *, since: float) -> list[str]:
    """Writes a tar.gz of the files under :data:`PACKED` modified at or after ``since`` (checkpoints left
    out) to ``out_path`` atomically; returns their paths relative to ``root``."""
    names = []
    for top in PACKED:
        for d, dirs, files in os.walk(os.path.join(root, top)):
            dirs[:] = [x for x in dirs if x != "checkpoints"]
            for f in files:
                path = os.path.join(d, f)
                rel = os.path.relpath(path, root)
                if _packable(rel) and os.path.getmtime(path) >= since:
                    names.append(rel)
    names.sort()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for rel in names:
            tar.add(os.path.join(root, rel), arcname=rel, recursive=False)
    from hmljax.data import atomic_write_bytes

    atomic_write_bytes(out_path, buf.getvalue())
    return names


def _safe_member(m: tarfile.TarInfo) -> str:
    """The member's relative path if it is a plain file under :data:`PACKED`; SystemExit otherwise."""
    rel = os.path.normpath(m.name)
    if (not m.isfile() or os.path.isabs(m.name) or rel.startswith("..") or not _packable(rel)):
        raise SystemExit(f"gpu_sitting unpack: refusing member {m.name!r} (not a plain file under "
                         f"{', '.join(PACKED)})")
    return rel


def _run_dir_of(rel: str) -> str | None:
    """``runs/<...>/<run>`` for a file directly in a run folder, else None."""
    return os.path.dirname(rel) if rel.startswith("runs" + os.sep) else None


def unpack(pack_path: str, *, root: str = ROOT, stamp: str | None = None) -> dict:
    """Adds a sitting's pack to ``root``: runs not finished here (a local partial folder of one is
    renamed ``<run>.cpu-partial[-stamp]``), the GPU benchmark JSONs and the sitting's logs under
    ``sitting/<stamp>/``; runs stopped there before finishing are left out. Every file is written
    atomically. Returns ``{"added", "skipped", "moved", "unfinished"}`` (run folders)."""
    from hmljax.data import atomic_write_bytes

    stamp = stamp or time.strftime("%Y%m%d-%H%M%S")
    try:
        tar = tarfile.open(pack_path, mode="r:gz")
    except (OSError, tarfile.TarError) as e:
        raise SystemExit(f"gpu_sitting unpack: {pack_path}: not a readable sitting pack ({e})") from e
    with tar:
        members = [(m, _safe_member(m)) for m in tar.getmembers()]  # every member checked before any write
        runs = {r for _, rel in members if (r := _run_dir_of(rel))}
        done_there = {r for _, rel in members if (r := _run_dir_of(rel)) and os.path.basename(rel) == "results.json"}
        finished = {r for r in done_there if os.path.exists(os.path.join(root, r, "results.json"))}
        # A run stopped there has no checkpoint to resume from: it would only shadow a local one.
        unfinished = runs - done_there
        report: dict = {"added": [], "skipped": sorted(finished), "moved": [], "unfinished": sorted(unfinished)}
        for r in sorted(done_there - finished):
            local = os.path.join(root, r)
            if os.path.exists(local):
                aside = local + ".cpu-partial"
                aside = aside if not os.path.exists(aside) else f"{aside}-{stamp}"
                os.replace(local, aside)
                report["moved"].append(os.path.relpath(aside, root))
        for m, rel in members:
            if (r := _run_dir_of(rel)) in finished or r in unfinished:
                continue
            if rel.startswith("sitting" + os.sep):
                rel = os.path.join("sitting", stamp, os.path.relpath(rel, "sitting"))
            atomic_write_bytes(os.path.join(root, rel), tar.extractfile(m).read())
            if r:
                report["added"].append(r)
    report["added"] = sorted(set(report["added"]))
    return report


# ----------------------------------------------------------------------------- CLI

def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="run the jobs and pack what they made (on the device)")
    r.add_argument("--out", required=True, help="folder the pack is written to ($OUT on the device)")
    r.add_argument("--data-dir", default=None, help="the carried data folder, given to every job")
    r.add_argument("--budget-s", type=float, required=True, help="wall seconds for the whole sitting")
    r.add_argument("--job", nargs=2, action="append", metavar=("SECONDS", "SPEC"), default=[],
                   help="a job and its time limit; repeat, in the order to run")
    r.add_argument("--root", default=ROOT, help=argparse.SUPPRESS)
    u = sub.add_parser("unpack", help="add a sitting's pack to this checkout")
    u.add_argument("pack")
    u.add_argument("--root", default=ROOT, help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.cmd == "unpack":
        rep = unpack(args.pack, root=args.root)
        print(f"added {len(rep['added'])} runs, skipped {len(rep['skipped'])} already finished here and "
              f"{len(rep['unfinished'])} stopped there, moved {len(rep['moved'])} local partial runs aside")
        for what in ("added", "moved"):
            for x in rep[what]:
                print(f"  {what}: {x}")
        tops = sorted({os.path.join(*x.split(os.sep)[:2]) for x in rep["added"]})
        if tops:
            print("Rebuild the tables with each experiment's --table-only (runs under: " + ", ".join(tops) + ").")
        return 0

    try:
        jobs = [(float(s), spec) for s, spec in args.job]
    except ValueError as e:
        raise SystemExit(f"gpu_sitting: --job SECONDS SPEC: {e}") from e
    if not jobs:
        raise SystemExit("gpu_sitting: no --job given")
    for spec in (spec for _, spec in jobs):
        job_argv(spec, data_dir=None)  # an empty spec or a bare -m is refused here, not at its turn
    if problems := check_sitting(jobs, root=args.root, data_dir=args.data_dir, budget_s=args.budget_s):
        raise SystemExit("gpu_sitting: nothing was run:\n  " + "\n  ".join(problems))
    since = time.time() - 1.0  # mtime resolution: a file made in the first second still counts
    os.makedirs(args.out, exist_ok=True)
    records = run_jobs(jobs, root=args.root, data_dir=args.data_dir, budget_s=args.budget_s)
    manifest = {"jobs": records, "device": device_facts(), "budget_s": args.budget_s,
                "date": time.strftime("%Y-%m-%d %H:%M:%S")}
    with open(os.path.join(args.root, "sitting", "manifest.json"), "w") as fh:
        json.dump(manifest, fh, indent=2)
    names = pack(args.root, os.path.join(args.out, PACK_NAME), since=since)
    for j in records:
        for line in log_tail(os.path.join(args.root, j["log"])) if j.get("log") else []:
            print(f"[sitting] job {j['job']} {j['label']} | {line}")
    print(f"[sitting] packed {len(names)} files into {os.path.join(args.out, PACK_NAME)}: "
          + "; ".join(f"{j['label']}: {j['status']}" for j in records), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
