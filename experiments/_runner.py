"""Run many independent training runs, in parallel worker processes.

Shared by the experiment scripts. Each task is ``(TrainConfig as a dict,
run_dir)``; a run with a checkpoint directory resumes, so an interrupted
sitting loses at most ``checkpoint_every`` epochs or ``checkpoint_minutes`` (10) per run.

Why each worker is pinned to its own CPUs: XLA's CPU client sizes its thread
pool by the CPUs the process may use and runs a jitted epoch's independent
ops and large loops on it, whatever ``XLA_FLAGS`` says
(``--xla_cpu_multi_thread_eigen=false`` only affects Eigen's matmuls; the
``intra_op_parallelism_threads=1`` often quoted with it is not an XLA flag).
So one unpinned run uses both cores of this 2-core machine (ImCLEF07A's HLSTM:
1.5-1.8 cores, 34.5 s an epoch alone; 55 s pinned to one core), and two
unpinned runs side by side oversubscribe them: 82 s an epoch each, less work in
all than one run alone. Pinned to a core each (``os.sched_setaffinity`` in the
worker, before jax starts its pool) the pair takes 60.5 s each, 14 % more work
in all than one alone (measured 2026-12-03, 3 epochs each, AMD EPYC; the
README's HLSTM "Cost and what is left" has the FUN- and GO-sized figures).
Workers split the CPUs this process may use into equal disjoint sets
(:func:`cpu_slots`); two commands started by hand share a machine best under
``taskset -c 0`` and ``taskset -c 1``. ``--plan`` estimates from whatever load
the logged epochs had.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import json
import multiprocessing
import os
import shutil
import statistics
import tempfile

SINGLE_THREAD_XLA = "--xla_cpu_multi_thread_eigen=false"  # Eigen's matmuls on the calling thread


def _pin_source_commit() -> None:
    """Asks the checkout's commit now, as the script starts: source_commit keeps its first answer, so tables
    written hours later by this process name the code it runs, not a commit made meanwhile (a long
    training process had stamped tables with a HEAD whose table code it was not running)."""
    from hmljax.training import source_commit

    source_commit()
    source_commit(dirty=True)


_pin_source_commit()


def check_datasets(parser, names, data_dir: str | None) -> None:
    """Stops the script with ``parser.error`` (its usage line, exit status 2) when ``--datasets`` names a dataset
    hmljax does not know, before any run starts: a typo would otherwise plan zero-cost runs, or fail run by
    run in the workers. Looked up as the runs will look them up (``hmljax.data.get_spec``, the data directory
    included), so the message is the registry's, with its nearest-name guess."""
    from hmljax.data import DataError, get_spec, resolve_data_dir

    try:
        data_dir = resolve_data_dir(data_dir)
        for name in names or ():
            get_spec(name, data_dir)
    except DataError as err:
        parser.error(f"--datasets: {err}")


def int_at_least(minimum: int):
    """argparse ``type=`` for counts (``--seeds``, ``--workers``: 1; ``--folds``: 2): ``--seeds 0`` or a negative
    count planned no runs and exited as if the table were complete."""
    import argparse

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    parse.__name__ = f"integer >= {minimum}"
    return parse


def config_from(base: dict, keys) -> TrainConfig:  # noqa: F821 - imported lazily, as everywhere here
    """``TrainConfig(**base).override(keys)`` for an experiment's run, the ``--override`` settings among ``keys``.
    A key the run's method does not have, or a value that does not convert, ends the script with one line naming
    it, not a traceback from deep in the task list."""
    from hmljax.training import TrainConfig

    try:
        return TrainConfig(**base).override(list(keys))
    except ValueError as err:
        raise SystemExit(f"error: {err}") from None


def check_configs(tasks) -> None:
    """Resolves and checks every task's config before anything is planned or trained; exits naming the first
    bad one. A bad ``--override`` (``lr=-1``, a key the method does not have) otherwise failed in every run, one
    FAILED line each, and still wrote a table of none. A run whose data cannot be found is left to fail on its own
    (the others go on), as before."""
    from hmljax.data import DataError
    from hmljax.training import TrainConfig

    checked = set()
    for cfg_dict, run_dir in tasks:
        key = json.dumps({k: v for k, v in cfg_dict.items() if k not in ("seed", "fold")}, sort_keys=True, default=str)
        if key in checked:  # seeds and folds of one cell share everything that can be wrong
            continue
        try:
            TrainConfig(**cfg_dict).resolved()
        except DataError:  # data this run cannot find: its own failure to report, the other runs go on
            pass
        except (ValueError, TypeError) as err:
            raise SystemExit(f"error: {run_dir}: {err}") from None  # checked before any run or plan
        checked.add(key)


def identity_settings(settings) -> list[str]:
    """The ``key=value`` settings that change what a run computes: all but the bookkeeping keys
    (``hmljax.training.BOOKKEEPING``: where the data is read from, how often checkpoints are written), which a
    run's config leaves out of its identity too. A GPU sitting sets ``checkpoint_every`` to 0 or above 10 (its
    checkpoints do not come back, and writing a seq_GO LSTM's 5-11 GB state every 10 epochs costs its budget)
    and still finishes the table's own run."""
    from hmljax.training import BOOKKEEPING

    return [s for s in settings if s.split("=", 1)[0].strip() not in BOOKKEEPING]


def variant_suffix(settings) -> str:
    """``"__a=1_b=x"`` for settings applied to every run of an experiment (``--override`` and the like), ``""``
    for none: a variant is another experiment, with its own run folders and outputs, so that neither refuses
    (another config) nor overwrites the other's runs and tables. Bookkeeping settings
    (:func:`identity_settings`) make no variant."""
    settings = identity_settings(settings)
    return "__" + "".join(c if c.isalnum() or c in "=.-" else "_" for c in "_".join(settings)) if settings else ""


# ``run_one``'s error for a run another process is training now (the same command started twice, to use
# another core): not a failure; that process finishes and records it.
BUSY = "busy"
# ``run_one``'s error prefix for a run that stopped at a checkpoint before its deadline ($HMLJAX_STOP_BY):
# not a failure either; the same command resumes it.
PAUSED = "paused: "
# ... and for one that never started: SIGTERM came first. Set by :func:`_note_sigterm` in the process that got it.
NOT_STARTED = "not started"
_TERMINATED = [False]


def _note_sigterm(signum, frame) -> None:
    """The SIGTERM handler of a runner and its workers (chained to by the one ``train_and_evaluate`` installs for
    a run): no run starts after it."""
    _TERMINATED[0] = True


def _init_worker(slot_dir: str, slots: list[list[int]] | None) -> None:
    """A pool worker's initializer: it notes SIGTERM (:func:`run_one` then starts nothing), and takes a CPU slot."""
    import signal

    signal.signal(signal.SIGTERM, _note_sigterm)
    if slots:
        pin_worker(slot_dir, slots)


def _not_failed(run_dir: str, err: str | None) -> str | None:
    """The line to print for a run that ended unfinished but did not fail (busy or paused), else None."""
    if err == BUSY:
        return f"skipped {run_dir}: another process is training it"
    if err and err.startswith(PAUSED):
        return f"paused {run_dir} at {err[len(PAUSED):]}"
    if err == NOT_STARTED:
        return f"not started {run_dir}: stopped on SIGTERM"
    return None


def cpu_slots(workers: int, cpus=None) -> list[list[int]] | None:
    """Disjoint CPU sets, one per worker: the CPUs this process may use (``cpus``, default its affinity) split
    into ``workers`` equal runs, the remainder left out. None (no pinning) for one worker, where the run should
    have every core, or when there are fewer CPUs than workers, or off Linux."""
    if cpus is None:
        if not hasattr(os, "sched_getaffinity"):
            return None
        cpus = os.sched_getaffinity(0)
    cpus = sorted(cpus)
    if workers < 2 or len(cpus) < workers:
        return None
    per = len(cpus) // workers
    return [cpus[i * per:(i + 1) * per] for i in range(workers)]


_SLOT_LOCK = None  # the pinned worker's claim on its slot, held (open) for the process's life


def pin_worker(slot_dir: str, slots: list[list[int]], wait_s: float = 30.0) -> list[int] | None:
    """A worker's initializer: claims a free slot of ``slots`` and pins this process, every thread it has so far
    included, to that slot's CPUs, before jax creates its thread pool; returns the CPUs, or None if no slot came
    free within ``wait_s`` (the worker then runs unpinned). A claim is an ``flock`` on ``slot_dir/<i>``, which the
    OS drops when the worker exits, so a worker the pool starts in place of a finished one
    (``tasks_per_worker``) takes over that one's CPUs."""
    import fcntl
    import time

    global _SLOT_LOCK
    deadline = time.monotonic() + wait_s
    while True:
        for i, cpus in enumerate(slots):
            fh = open(os.path.join(slot_dir, str(i)), "a")  # noqa: SIM115 - held open as the claim
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                fh.close()
                continue
            _SLOT_LOCK = fh
            from hmljax.training import pin_cpus

            return pin_cpus(cpus)
        if time.monotonic() > deadline:
            print(f"worker {os.getpid()}: no CPU slot came free in {wait_s:g} s; running unpinned", flush=True)
            return None
        time.sleep(0.05)


def run_one(task, progress: bool = False) -> tuple[str, str | None]:
    """One training run (in a worker, or in this process). Returns ``(run_dir, error or None)``; the error
    is :data:`BUSY` when another process holds the run's lock, and starts with :data:`PAUSED` when the run
    stopped at a checkpoint before its deadline (``$HMLJAX_STOP_BY``)."""
    cfg_dict, run_dir = task
    if _TERMINATED[0]:
        return run_dir, NOT_STARTED
    from hmljax.training import RunInUseError, TrainConfig, TrainingPaused, train_and_evaluate

    try:
        cfg = TrainConfig(**cfg_dict)
        resume = os.path.isdir(os.path.join(run_dir, "checkpoints"))
        train_and_evaluate(cfg, run_dir, resume=resume, progress=progress)
        return run_dir, None
    except RunInUseError:
        return run_dir, BUSY
    except TrainingPaused as e:
        return run_dir, PAUSED + f"epoch {e.epoch} of {e.epochs}, {e.why}; the same command resumes it"
    except Exception as e:  # noqa: BLE001 - reported by the caller, and the other runs go on
        return run_dir, f"{type(e).__name__}: {e}"


def run_tasks(tasks, *, workers: int = 1, tasks_per_worker: int | None = None, desc: str = "runs",
              on_done=None, records: RunRecords | None = None, poll_s: float = 5.0) -> list[tuple[str, str]]:
    """Runs every task; returns ``[(run_dir, error)]`` for the ones that failed.

    A run another process is training (its lock held: the same command started again to use another
    core) is skipped, not failed: that process finishes and records it, and this one goes on to the
    next run, so a second command on the same table takes the runs the first has not reached.

    ``on_done(run_dir)`` is called in the parent after each successful run
    (the scripts rewrite their tables there, so a table is never stale by more
    than the runs still in flight). One worker and no ``tasks_per_worker`` runs
    in this process, with progress bars; ``tasks_per_worker=1`` gives every run
    a fresh process (for per-run peak memory). With workers, the bar counts
    epochs over all runs (polled every ``poll_s`` seconds from the runs'
    ``metrics.jsonl``), so an hours-long table shows its progress and ETA.
    With ``records``, each finished run is recorded (:class:`RunRecords`) before ``on_done``.
    """
    check_configs(tasks)
    if records is not None:
        for _cfg, run_dir in tasks:
            if line := records.lost_progress(run_dir):
                print(line, flush=True)
        user_done = on_done

        def on_done(run_dir, _user=user_done):
            records.save(run_dir)
            if _user is not None:
                _user(run_dir)

    from tqdm.auto import tqdm

    failures: list[tuple[str, str]] = []
    if not tasks:
        return failures
    if workers <= 1 and tasks_per_worker is None:  # in this process, with each run's epoch progress bar
        with _sigterm_stops_the_pool(None, {}):  # after a SIGTERM, the runs left are "not started"
            for t in tasks:
                run_dir, err = run_one(t, progress=True)
                if line := _not_failed(run_dir, err):
                    print(line, flush=True)
                elif err:
                    failures.append((run_dir, err))
                    print(f"FAILED {run_dir}: {err}", flush=True)
                elif on_done is not None:
                    on_done(run_dir)
        return failures
    os.environ.setdefault("XLA_FLAGS", SINGLE_THREAD_XLA)
    # On a GPU each worker would otherwise grab 75% of its memory at start, and the second one fails.
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    ctx = multiprocessing.get_context("spawn")  # jax is not fork-safe
    totals = [_epochs_planned(cfg) for cfg, _ in tasks]
    slots = cpu_slots(workers)
    with tempfile.TemporaryDirectory(prefix="hmljax-cpu-slots-") as slot_dir, \
            cf.ProcessPoolExecutor(workers, mp_context=ctx, max_tasks_per_child=tasks_per_worker,
                                   initializer=_init_worker, initargs=(slot_dir, slots)) as pool, \
            tqdm(total=sum(totals), desc=desc, unit="epoch",
                 # Resumed epochs are not this sitting's work: counted from the start, they would make the
                 # rate (and so the time left) many times too good for the first hours of a resumed table.
                 initial=sum(_resumes_from(rd) for _, rd in tasks)) as bar:
        if slots:
            tqdm.write(f"{workers} workers pinned to CPUs {', '.join(map(str, slots))}")
        futs = {pool.submit(run_one, t): i for i, t in enumerate(tasks)}
        pending, finished, unfinished = set(futs), 0, set()
        with _sigterm_stops_the_pool(pool, futs):
            while pending:
                done, pending = cf.wait(pending, timeout=poll_s, return_when=cf.FIRST_COMPLETED)
                finished = _collect(done, tasks, futs, finished, unfinished, failures, on_done)
                # Epoch-level progress: a long table's bar moves with every epoch of the runs in flight,
                # read from their metrics.jsonl (finished runs count in full, failed ones as planned, paused
                # or skipped ones as far as they got).
                epochs = sum(totals[futs[f]] if f not in pending and f not in unfinished
                             else _epochs_logged(tasks[futs[f]][1]) for f in futs)
                bar.n = epochs
                bar.set_postfix(runs=f"{finished}/{len(tasks)}")
    return failures


@contextlib.contextmanager
def _sigterm_stops_the_pool(pool, futs):
    """Within: SIGTERM to this process (a scheduler's stop, or ``kill PID``) starts no new run and passes the
    signal to the workers, whose runs then stop at a checkpoint after the epoch in flight (``train_and_evaluate``);
    this process waits for them and returns, rather than dying and leaving them orphaned. Main thread only.
    ``pool`` None: the runs train in this process, whose ``train_and_evaluate`` takes the signal itself."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    seen = []

    def on_term(signum, frame):
        _note_sigterm(signum, frame)
        if seen or pool is None:
            return
        seen.append(signum)
        from tqdm.auto import tqdm

        tqdm.write("SIGTERM: no new run starts; the runs in flight stop at a checkpoint after their epoch")
        for f in futs:
            f.cancel()  # only those not started yet
        for proc in list(getattr(pool, "_processes", {}).values()):  # a group-wide signal reached them already
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
        _TERMINATED[0] = False  # the next table in this process starts afresh


def _collect(done, tasks, futs, finished: int, unfinished: set, failures: list, on_done) -> int:
    """Reports each future in ``done`` (failures appended, ``on_done`` called); returns the runs ended so far."""
    from tqdm.auto import tqdm

    for f in done:
        finished += 1
        if f.cancelled():
            unfinished.add(f)
            tqdm.write(f"not started {tasks[futs[f]][1]}: stopped on SIGTERM")
            continue
        run_dir, err = f.result()
        if line := _not_failed(run_dir, err):
            unfinished.add(f)
            tqdm.write(line)
        elif err:
            failures.append((run_dir, err))
            tqdm.write(f"FAILED {run_dir}: {err}")
        else:
            tqdm.write(f"done {run_dir}")
            if on_done is not None:
                on_done(run_dir)
    return finished


def pending(runs) -> tuple[list, int]:
    """``(tasks, finished)`` from ``[(TrainConfig, run_dir)]``: a run whose folder holds results of the same
    config is finished and skipped; a folder holding another config is refused (never overwritten)."""
    from hmljax.training import config_diff

    todo, done = [], 0
    for cfg, rd in runs:
        same = os.path.exists(os.path.join(rd, "config.json")) and not config_diff(rd, cfg)
        if same and os.path.exists(os.path.join(rd, "results.json")):
            done += 1
        elif os.path.exists(os.path.join(rd, "config.json")) and not same:
            raise SystemExit(f"{rd} holds a run of another config: move it away or pass another --runs")
        else:
            todo.append((cfg.to_dict(), rd))
    return todo, done


def adopt_twins(runs, twins: dict[str, str]) -> list[str]:
    """Finishes runs from finished runs of the same config elsewhere (one experiment's cell that is another's:
    HLSTM's Fig. 7 at b_r = 0.5 is Tables II-V's HLSTM); returns the run folders it finished.

    ``runs`` is ``[(TrainConfig, run_dir)]`` and ``twins`` maps a run folder to its twin's. A run is given its
    twin's record (config.json, metrics.jsonl, results.json; the twin's machine with it) only when the twin
    has finished with the same config (``config_diff``: the keys that change results) and the run has not,
    and never over a folder of another config (:func:`pending` refuses that one by name). Training the same
    config again would only repeat the twin (bitwise on CPU; tested in tests/test_training.py), at up to
    hours of a core for a GO or ImCLEF07A HLSTM."""
    from hmljax.training import config_diff

    adopted = []
    for cfg, rd in runs:
        twin = twins.get(rd)
        if (twin is None or os.path.exists(os.path.join(rd, "results.json"))
                or not os.path.exists(os.path.join(twin, "results.json")) or config_diff(twin, cfg)
                or (os.path.exists(os.path.join(rd, "config.json")) and config_diff(rd, cfg))):
            continue
        _copy_record(twin, rd)
        adopted.append(rd)
    return adopted


def finished_run(run_dir: str) -> dict | None:
    """A finished run's ``results.json`` with its ``machine`` (from config.json) and ``curve`` (the
    metrics.jsonl records), or None if it has not finished."""
    try:
        with open(os.path.join(run_dir, "results.json")) as fh:
            res = json.load(fh)
        with open(os.path.join(run_dir, "config.json")) as fh:
            res["machine"] = json.load(fh).get("machine", {})
        with open(os.path.join(run_dir, "metrics.jsonl")) as fh:
            res["curve"] = [json.loads(x) for x in fh if x.strip()]
    except (OSError, ValueError):
        return None
    return res


CARRIED_NOTE = ("‡ carried from the committed table: these runs are not in this checkout (made before runs were "
                "recorded, or elsewhere), so their values come from the table's JSON; a row is replaced once this "
                "checkout has as many runs of it.")


def committed_groups(committed_json: str) -> list[str]:
    """The row groups (``"scene/mlp"``, ``"cellcycle_FUN"``) of a committed table's JSON, in its order; [] if none."""
    try:
        with open(committed_json) as fh:
            rows = json.load(fh).get("rows", {})
    except (OSError, ValueError, AttributeError):
        return []
    return list(rows) if isinstance(rows, dict) else []


def carry_committed_runs(found: dict, committed_json: str, key_of=lambda group: group) -> list[str]:
    """Adds to ``found`` (``{key: {arm: [run results]}}``) the runs a committed table holds and this checkout
    does not, so rebuilding a table never drops its rows; returns the ``"group / arm"`` cells carried.

    ``committed_json`` is the table's JSON, ``{"rows": {group: {arm: {metric: [one value per run], ...}}}}``
    (``key_of(group)`` is ``found``'s key for a group). A cell is carried when the committed table had more
    runs of it than are found here: each run becomes a result ``{"test": {metric: value}, "best_epoch",
    "median_epoch_seconds", "machine": None, "carried": True}`` (no ``curve``), enough for the tables and
    their tests. Without this, a table whose runs predate the run records, rebuilt by ``--table-only`` or
    by a command on another dataset, lost every such row."""
    try:
        with open(committed_json) as fh:
            rows = json.load(fh).get("rows", {})
    except (OSError, ValueError, AttributeError):
        return []
    carried = []
    for group, arms in rows.items():
        for arm, vals in (arms.items() if isinstance(arms, dict) else ()):
            lists = {k: v for k, v in vals.items() if isinstance(v, list)}
            n = max((len(v) for v in lists.values()), default=0)
            key = key_of(group)
            if n <= len(found.get(key, {}).get(arm, [])):
                continue
            scalars = {k: v for k, v in vals.items() if not isinstance(v, list)}
            best = lists.pop("best_epoch", [None] * n)
            found.setdefault(key, {})[arm] = [
                {"test": {k: v[i] for k, v in lists.items() if i < len(v)}, "best_epoch": best[i], **scalars,
                 "machine": None, "carried": True} for i in range(n)]
            carried.append(f"{group} / {arm}")
    return carried


def _epochs_planned(cfg_dict) -> int:
    from hmljax.training import TrainConfig

    try:
        return int(TrainConfig(**cfg_dict).resolved().epochs)
    except Exception:  # noqa: BLE001 - a bad config is the worker's to report, with its run_dir
        return int(cfg_dict.get("epochs") or 1)


def _epochs_logged(run_dir: str) -> int:
    """The last epoch in a run's metrics.jsonl (0 before it has one)."""
    try:
        with open(os.path.join(run_dir, "metrics.jsonl"), "rb") as fh:
            lines = fh.read().splitlines()
        return int(json.loads(lines[-1])["epoch"]) if lines else 0
    except (OSError, ValueError, KeyError, IndexError):  # not started, or a line being written
        return 0


# ----------------------------------------------------------------------------- run records

# What of a finished run is kept in the repository: enough to rebuild every table and figure (results),
# to know what made them (config, machine) and to time what is left (the per-epoch log). Checkpoints stay out.
RECORD_FILES = ("config.json", "results.json", "metrics.jsonl")


class RunRecords:
    """The committed copies of finished runs, ``<results>/runs/<name of the runs root>/<run path>/``.

    A run directory (``runs/...``) holds checkpoints and is never committed, so a fresh checkout has none,
    and a table rebuilt from its runs would shrink to the ones made since. Each finished run's small
    files (:data:`RECORD_FILES`, ~10 KB) are therefore copied beside the tables, and :meth:`sync` puts
    back any run missing here: a table grows over sessions and machines, finished runs are never trained
    twice, and ``--plan`` times what is left from the epochs they logged.
    """

    def __init__(self, runs_root: str, results_dir: str):
        self.runs_root = runs_root
        self.root = os.path.join(results_dir, "runs", os.path.basename(os.path.normpath(runs_root)))
        # Timing records: the config and epoch log of runs that had not finished when last synced (a run
        # longer than one sitting never will here), so that ``--plan`` in a fresh checkout still knows what
        # such a run costs. Kept apart from the records, which mark finished runs; only plans read them.
        self.timings = os.path.join(results_dir, "timings", os.path.basename(os.path.normpath(runs_root)))

    def _finished(self, base: str) -> dict[str, str]:
        """``{run path relative to base: its directory}`` for every finished run under ``base``."""
        out = {}
        for d, dirs, files in os.walk(base):
            dirs[:] = [x for x in dirs if x != "checkpoints"]
            if "results.json" in files and "config.json" in files:
                out[os.path.relpath(d, base)] = d
        return out

    def save(self, run_dir: str) -> bool:
        """Copies a finished run's record; False if ``run_dir`` is not a finished run under the runs root."""
        rel = os.path.relpath(run_dir, self.runs_root)
        if rel.startswith(os.pardir) or not os.path.exists(os.path.join(run_dir, "results.json")):
            return False
        _copy_record(run_dir, os.path.join(self.root, rel))
        timing = os.path.join(self.timings, rel)
        if os.path.isdir(timing):  # the finished run's own log now times it
            shutil.rmtree(timing, ignore_errors=True)
        return True

    def lost_progress(self, run_dir: str) -> str | None:
        """A line saying so when this run starts behind where a sitting before this checkout took it (its timing
        record logged more epochs than the run's latest checkpoint here): that progress is gone with the other
        checkout's ``runs/``, and the run trains those epochs again. When this checkout's own log reached the
        record, only the epochs after the latest checkpoint are lost, and the line says that instead. None when
        nothing was lost."""
        rel = os.path.relpath(run_dir, self.runs_root)
        if rel.startswith(os.pardir):
            return None
        reached, start = _epochs_logged(os.path.join(self.timings, rel)), _resumes_from(run_dir)
        if reached <= start:
            return None
        if _epochs_logged(run_dir) >= reached:  # this checkout trained them: only the epochs since its checkpoint
            return (f"{run_dir}: resumes from its checkpoint at epoch {start}; epochs {start + 1}-{reached}, "
                    "trained after it before the last stop, train again")
        return (f"{run_dir}: starts at epoch {start}, but a sitting before this checkout took it to epoch {reached} "
                f"(experiments/results/timings); its checkpoints are not here, so those epochs train again")

    def save_timings(self) -> int:
        """Records the config and epoch log of every unfinished run under the runs root that has timed at least
        one epoch past the first (which includes compiling); returns how many records it wrote. A record is
        only replaced by a longer log (a fresh checkout restarting the run must not shorten it), and a log
        being written (a torn last line) is skipped until the next sync."""
        written = 0
        for d, dirs, files in os.walk(self.runs_root) if os.path.isdir(self.runs_root) else ():
            dirs[:] = [x for x in dirs if x != "checkpoints"]
            if "results.json" in files or not {"config.json", "metrics.jsonl"} <= set(files):
                continue
            dst = os.path.join(self.timings, os.path.relpath(d, self.runs_root))
            timed = len(_epoch_seconds(d))
            if timed < 1 or len(_epoch_seconds(dst)) >= timed:
                continue
            try:
                _copy_record(d, dst, names=("config.json", "metrics.jsonl"))
            except ValueError:
                continue
            written += 1
        # A run recorded finished (here, or by code that did not yet drop its timing) is timed by its record.
        for d, dirs, files in os.walk(self.timings) if os.path.isdir(self.timings) else ():
            rel = os.path.relpath(d, self.timings)
            if "config.json" in files and os.path.exists(os.path.join(self.root, rel, "results.json")):
                shutil.rmtree(d, ignore_errors=True)
                dirs[:] = []
        for d, _dirs, _files in os.walk(self.timings, topdown=False) if os.path.isdir(self.timings) else ():
            if not os.listdir(d):  # a dataset's folder whose runs have all finished
                os.rmdir(d)
        return written

    def sync(self) -> tuple[int, int]:
        """Restores the recorded runs missing under the runs root and records the finished ones not yet
        recorded; returns ``(restored, recorded)``. A local directory holding an unfinished run of the
        same config gets the finished record (its checkpoints stay, unused); one of another config is
        left alone (:func:`pending` refuses it by name)."""
        restored = recorded = 0
        here = self._finished(self.runs_root) if os.path.isdir(self.runs_root) else {}
        for rel, rec in self._finished(self.root).items() if os.path.isdir(self.root) else ():
            if rel in here:
                continue
            dst = os.path.join(self.runs_root, rel)
            local_cfg = os.path.join(dst, "config.json")
            if os.path.exists(local_cfg) and not _same_config_file(local_cfg, os.path.join(rec, "config.json")):
                print(f"run records: {dst} holds another config than its record {rec}: left as it is")
                continue
            _copy_record(rec, dst)
            restored += 1
        recs = self._finished(self.root) if os.path.isdir(self.root) else {}
        for rel, d in here.items():
            if rel not in recs and self.save(d):
                recorded += 1
        self.save_timings()
        return restored, recorded


def _copy_record(src_dir: str, dst_dir: str, *, names=RECORD_FILES) -> None:
    """Copies the files ``names`` there are, each checked and written atomically, results.json last
    (it is what marks a run finished, so an interrupted copy is an unfinished run, never a torn one)."""
    from hmljax.data import atomic_write_bytes

    for name in sorted(names, key=lambda n: n == "results.json"):
        src = os.path.join(src_dir, name)
        if os.path.exists(src):
            with open(src, "rb") as fh:
                atomic_write_bytes(os.path.join(dst_dir, name), _checked(src, fh.read()))


def _checked(path: str, data: bytes) -> bytes:
    """``data`` if it parses as the JSON (or JSON lines) its name says; a record is never a torn file."""
    try:
        text = data.decode()
        if path.endswith(".jsonl"):
            [json.loads(x) for x in text.splitlines() if x.strip()]
        else:
            json.loads(text)
    except (UnicodeDecodeError, ValueError) as e:
        raise ValueError(f"{path}: not valid JSON ({e}); the run record was not copied") from e
    return data


def _same_config_file(a: str, b: str) -> bool:
    from hmljax.training import TrainConfig

    def ident(p):
        with open(p) as fh:
            cfg = json.load(fh)["config"]
        return TrainConfig.from_saved({**cfg, "data_dir": None}).identity()

    try:
        return ident(a) == ident(b)
    except (OSError, ValueError, KeyError, TypeError):
        return False


# ----------------------------------------------------------------------------- plans

# What an epoch's cost depends on, to first order: the data (and its resampling: HROS-PD's two rules copy
# 35-43 % against 76-81 % of GO's rows) and how many networks train.
_COST_KEYS = ("dataset", "method", "resample", "hros_rule", "ensemble", "mc_passes", "focal")


def _cost_key(cfg_dict, *, saved: bool = False) -> tuple:
    """The cost key of a config dict: a task's ``TrainConfig.to_dict()`` or, with ``saved``, a run's saved
    config (read as :meth:`TrainConfig.from_saved` reads it, so a key added since takes the value older runs
    had). Both are resolved first: a key left unset is today's default, as the run would train it."""
    from hmljax.training import TrainConfig

    try:
        cfg = TrainConfig.from_saved(cfg_dict) if saved else TrainConfig(**cfg_dict)
        cfg_dict = cfg.resolved().to_dict()
    except Exception:  # noqa: BLE001 - an unreadable config still gets a key, from what it says
        cfg_dict = {"method": "chmcnn", **cfg_dict}  # configs saved before methods had names were C-HMCNN's
    return tuple(str(cfg_dict.get(k)) for k in _COST_KEYS)


def _epoch_seconds(run_dir: str) -> list[float]:
    """The run's logged epoch times, less the first (it includes compilation); for a run with no epoch log
    (a record rebuilt from a table: ``records_from_tables.py``), the median its table kept."""
    try:
        with open(os.path.join(run_dir, "metrics.jsonl")) as fh:
            rows = [json.loads(line) for line in fh if line.strip()]
    except (OSError, ValueError):
        return []
    if not rows:
        try:
            with open(os.path.join(run_dir, "results.json")) as fh:
                return [float(json.load(fh)["median_epoch_seconds"])]
        except (OSError, ValueError, KeyError, TypeError):
            return []
    return [r["epoch_s"] for r in rows[1:] if "epoch_s" in r]


# What of a run's recorded machine (config.json) its epoch times depend on, besides its config.
_MACHINE_KEYS = ("backend", "cpus", "compiler_options")


def current_machine() -> dict:
    """This machine's values of the ``_MACHINE_KEYS`` and its CPU model, as a run made here now would record them."""
    import jax

    from hmljax.training import cpu_model, train_compiler_options

    return {"backend": jax.default_backend(), "cpus": os.cpu_count(), "compiler_options": train_compiler_options(),
            "cpu_model": cpu_model()}


def measured_epoch_seconds(roots, *, machine: dict | None = None) -> dict[tuple, float]:
    """``{cost key: median epoch seconds}`` over every run under the ``roots`` folders with a config and metrics.

    With ``machine`` (see :func:`current_machine`), a kind's estimate comes from the runs that recorded
    that machine and its CPU model, if it has any; else from those that recorded that machine (runs made
    before runs named their CPU model, or on another model); else from all its runs: times logged by older
    code (before jit_train, or before runs recorded their compiler options) or on another machine can be
    2-3x off. A run that recorded another backend is left out: seq_GO's CHMC-LSTM took 6.1 s an epoch on a
    GPU and ~2,040 s on one core here, so a GPU run prices no CPU run (nor one of its dataset's family,
    scaled from it), and the reverse.
    """
    logs: dict[tuple, tuple[tuple, int, list[float]]] = {}
    for root, _dirs, files in (w for r in roots for w in os.walk(r)):
        if "config.json" in files and "metrics.jsonl" in files:
            try:
                with open(os.path.join(root, "config.json")) as fh:
                    saved = json.load(fh)
                cfg, ran_on = saved["config"], saved.get("machine", {})
            except (OSError, ValueError, KeyError):
                continue
            backends = (ran_on.get("backend"), (machine or {}).get("backend"))
            if all(backends) and backends[0] != backends[1]:
                continue
            same = machine is not None and all(ran_on.get(k) == machine.get(k) for k in _MACHINE_KEYS)
            tier = (0 if ran_on.get("cpu_model") == machine.get("cpu_model") else 1) if same else 2
            secs = _epoch_seconds(root)
            # One log seen twice (a run here and its timing record, or its record restored into another
            # root) counts once, its longer copy: the same first timings, to the clock's last digit.
            ident = (root,) if len(secs) < 2 else tuple(secs[:2])
            if ident not in logs or len(secs) > len(logs[ident][2]):
                logs[ident] = (_cost_key(cfg, saved=True), tier, secs)
    times: dict[tuple, tuple[list[float], list[float], list[float]]] = {}
    for key, tier, secs in logs.values():
        times.setdefault(key, ([], [], []))[tier].extend(secs)
    return {k: statistics.median(next(t for t in tiers if t)) for k, tiers in times.items() if any(tiers)}


def _scaled_from_other_sizes(measured: dict, cfg_dict) -> tuple[float, int] | None:
    """``(seconds, E')``: an epoch time for an ensemble size not yet measured, scaled linearly from the
    nearest measured size E' of the same kind (an ensemble step's cost grows about in proportion to E)."""
    key = _cost_key(cfg_dict)
    i = _COST_KEYS.index("ensemble")
    try:  # ensemble = 0 is one plain network: costs as E = 1
        size = max(int(key[i]), 1)
        sizes = {max(int(k[i]), 1): v for k, v in measured.items() if k[:i] + k[i + 1:] == key[:i] + key[i + 1:]}
    except ValueError:
        return None
    if not sizes:
        return None
    near = min(sizes, key=lambda e: (abs(e - size), -e))
    return sizes[near] * size / near, near


REPRODUCTION = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "chmcnn_reproduction.json")


def dataset_cost_ratios(path: str = REPRODUCTION) -> dict[str, float]:
    """``{dataset: plain C-HMCNN's median epoch seconds}`` from the reproduction's table (every FUN/GO
    dataset, Diatoms, Enron_corr and ImCLEF07A, timed in one sitting on one machine): only their ratios
    are used. Empty if the table is missing or unreadable."""
    try:
        with open(path) as fh:
            return {d: float(r["median_epoch_seconds"]) for d, r in json.load(fh).items()
                    if isinstance(r, dict) and r.get("median_epoch_seconds")}
    except (OSError, ValueError, TypeError, KeyError):
        return {}


def _family(dataset: str) -> str:
    """``FUN`` / ``GO`` for the gene datasets' annotation families; any other dataset is its own family."""
    head, _, tail = dataset.rpartition("_")
    return tail if head and tail in ("FUN", "GO") else dataset


_PARAMETERS: dict[str, int | None] = {}


def parameter_count(cfg_dict) -> int | None:
    """Trainable parameters of the network a config trains, counted from shapes (``jax.eval_shape`` of the
    method's init: nothing allocated, though the dataset is loaded for its sizes); ``None`` if the config or
    its dataset cannot be built here. Cached per config (seeds share a count)."""
    from hmljax.models import count_params
    from hmljax.training import TrainConfig, build_method

    ident = json.dumps({k: v for k, v in cfg_dict.items() if k != "seed"}, sort_keys=True, default=str)
    if ident not in _PARAMETERS:
        try:
            import jax

            _, method, _ = build_method(TrainConfig(**cfg_dict).resolved())
            shapes = jax.eval_shape(lambda k: method.model.init(k)[0], jax.random.key(0))
            _PARAMETERS[ident] = count_params({"params": shapes})
        except Exception:  # noqa: BLE001 - no count is an answer: the estimate then goes without it
            _PARAMETERS[ident] = None
    return _PARAMETERS[ident]


def _size_factor(cfg_dict, timed_on: str, sizes) -> float | None:
    """How much more this kind's network grows than plain C-HMCNN's from ``timed_on`` to the config's dataset:
    ``(P_kind / P_chmcnn)(here) / (P_kind / P_chmcnn)(timed_on)``, from ``sizes(cfg_dict) -> parameters``;
    ``None`` where a count is missing."""
    plain = {k: cfg_dict[k] for k in ("data_dir", "preprocessing") if k in cfg_dict}
    counts = [sizes(c) for c in (cfg_dict, {**plain, "dataset": cfg_dict["dataset"]},
                                 {**cfg_dict, "dataset": timed_on}, {**plain, "dataset": timed_on})]
    if any(not c for c in counts):
        return None
    return (counts[0] / counts[1]) / (counts[2] / counts[3])


def _scaled_from_other_datasets(measured: dict, cfg_dict, ratios: dict[str, float],
                                sizes=parameter_count) -> tuple[float, list[str], float | None] | None:
    """``(seconds, datasets, size factor)``: an epoch time for a dataset this kind of run has not been timed on,
    from the datasets it has, each scaled by plain C-HMCNN's epoch-time ratio between the two (``ratios``) and
    by how much faster this kind's network grows than C-HMCNN's between them (:func:`_size_factor`, the median
    factor reported; ``None`` if the parameters could not be counted: then the ratio alone).

    A batch-4 epoch's cost is its steps times the step's pass over the parameters (memory-bound for large
    networks, and its FLOPs are about 2 per parameter per row for small ones), so C-HMCNN's ratio carries the
    rows and the per-dataset sizes over, and the parameter factor what C-HMCNN's widths do not: seq_GO's
    hidden 9,000 grows C-HMCNN's network 24x over cellcycle_GO's but an LSTM's 45-49x (its gate weights are
    hidden-squared). It is a lower bound where the network leaves the cache while the timed ones fit it: a
    batch-4 LSTM reads its recurrent kernel once per level forward and once backward, from L3 on cellcycle_GO
    (16 MB) but from memory on seq_GO (1.3 GB), so the run's own epochs, once logged, replace the estimate.
    Only datasets of one annotation family are compared (FUN with FUN, GO with GO): from FUN
    to GO, C-HMCNN's ratio (26x on cellcycle) overstates an LSTM's (about 5x per step: its width does not
    change, only its heads do) several times over. The median over the timed datasets is used."""
    key = _cost_key(cfg_dict)
    if key[0] not in ratios:
        return None
    family = _family(key[0])
    timed = sorted(k[0] for k in measured if k[1:] == key[1:] and k[0] != key[0] and k[0] in ratios
                   and _family(k[0]) == family)
    if not timed:
        return None
    factors = {d: _size_factor(cfg_dict, d, sizes) for d in timed}
    per = statistics.median(measured[(d,) + key[1:]] * ratios[key[0]] / ratios[d] * (factors[d] or 1.0)
                            for d in timed)
    known = [f for f in factors.values() if f]
    return per, timed, (statistics.median(known) if len(known) == len(timed) else None)


def _plain_cost_key(dataset: str) -> tuple:
    """The cost key of plain C-HMCNN (every key at its default) on ``dataset``."""
    from hmljax.training import TrainConfig

    return _cost_key(TrainConfig(dataset=dataset).to_dict())


def _resumes_from(run_dir: str) -> int:
    """The epoch of the run's latest finished checkpoint (0 if none): where a resumed run starts."""
    try:
        steps = [int(s) for s in os.listdir(os.path.join(run_dir, "checkpoints")) if s.isdigit()]
    except OSError:
        return 0
    return max(steps, default=0)


# How many of a started run's latest epochs price the rest of it in :func:`plan`.
RECENT_EPOCHS = 50


def plan(tasks, *, timing_roots, finished: int = 0, workers: int = 1, machine: dict | None = None,
         ratios: dict[str, float] | None = None, replacing_carried: int = 0, sizes=parameter_count) -> str:
    """A report of the runs still to do: where each resumes, its epochs left and an estimated time.

    Estimates use the median epoch time logged by runs under ``timing_roots`` with
    the same dataset, resampling (and HROS-PD rule), ensemble size, MC passes and focal term
    (a started run's own last ``RECENT_EPOCHS`` epochs first), preferring runs made on
    ``machine`` (default: this one, with today's compiler options). A kind not yet timed at some ensemble
    size is scaled in proportion to E from another size; one not timed on some dataset, from the datasets
    of its family it was timed on by plain C-HMCNN's epoch-time ratio (``ratios``, default: the
    reproduction table's; see :func:`dataset_cost_ratios`) and by how much faster its network grows than
    C-HMCNN's between the two (parameters counted by ``sizes(cfg_dict)``, default :func:`parameter_count`;
    see :func:`_scaled_from_other_datasets`). Those times were measured
    under whatever load their sittings had, so treat the total as a guide.
    Pinned side-by-side workers do 1.1-1.2x the work of one memory-bound run alone and ~4x that of a
    FUN-sized one (see this module's docstring), so the wall time is quoted for one worker.
    ``replacing_carried`` of the tasks belong to rows the committed table already shows from runs not in
    this checkout (‡): said apart, since training them replaces values rather than adding any.
    """
    check_configs(tasks)
    measured = measured_epoch_seconds(timing_roots, machine=current_machine() if machine is None else machine)
    ratios = dataset_cost_ratios() if ratios is None else ratios
    some = "all" if replacing_carried == len(tasks) else str(replacing_carried)
    lines = [f"{finished} runs finished, {len(tasks)} to do"
             + (f" ({some} of them would retrain rows the committed table already shows, carried ‡ from runs not "
                "in this checkout" + ("" if some == "all" else "; the rest are new") + ")" if replacing_carried
                else "")]
    if tasks:  # no empty table when everything is done
        lines += ["", "| run | resumes at epoch | epochs left | s/epoch | est. hours |", "|---|---|---|---|---|"]
    total_s, unknown, scaled, rescaled, reproduced = 0.0, 0, 0, 0, 0
    for cfg, run_dir in tasks:
        start, planned = _resumes_from(run_dir), _epochs_planned(cfg)
        left = max(planned - start, 0)
        own, key = _epoch_seconds(run_dir), _cost_key(cfg)
        # A started run is priced by its recent pace: its early epochs may have run beside other work or been
        # paused (a benchmark stops the runs), and the epochs left will run as the latest ones did.
        per, how = (statistics.median(own[-RECENT_EPOCHS:]) if own else measured.get(key)), ""
        if per is None and (guess := _scaled_from_other_sizes(measured, cfg)):
            per, near = guess
            how, scaled = f" (from E={near})", scaled + 1
        if per is None and (guess := _scaled_from_other_datasets(measured, cfg, ratios, sizes)):
            per, timed, factor = guess
            grown = f"; x{factor:.2f} for the network's size" if factor and abs(factor - 1) > 0.005 else ""
            how, rescaled = f" (from {', '.join(timed)}{grown})", rescaled + 1
        if per is None and key[0] in ratios and key[1:] == _plain_cost_key(key[0])[1:]:
            # plain C-HMCNN never timed here: the reproduction table's own measurement of it
            per, how, reproduced = ratios[key[0]], " (the C-HMCNN reproduction's)", reproduced + 1
        if per is None:
            unknown += 1
            lines.append(f"| {run_dir} | {start} | {left} | ? | ? |")
            continue
        total_s += left * per
        lines.append(f"| {run_dir} | {start} | {left} | {per:.2f}{how} | {left * per / 3600:.2f} |")
    known = len(tasks) - unknown
    lines += ["", f"Estimated {total_s / 3600:.1f} hours for {known} runs"
              + (f" ({scaled} scaled in proportion to E from another ensemble size of their kind)" if scaled else "")
              + (f" ({rescaled} scaled from the datasets their kind was timed on, by plain C-HMCNN's epoch-time "
                 "ratio between the datasets in experiments/results/chmcnn_reproduction.json and, where shown, by "
                 "how much more their network grows than C-HMCNN's in parameters)" if rescaled else "")
              + (f" ({reproduced} plain C-HMCNN timed by that table itself)" if reproduced else "")
              + (f"; {unknown} runs have no measured epoch time of their kind (dataset, resampling, E, MC "
                 "passes, focal term, HROS-PD rule) yet" if unknown else "")
              + (f"; with --workers {workers} (pinned, one share of the CPUs each) the wall time is about that / "
                 f"{workers} for small runs and that / 1.2 for memory-bound ones" if workers > 1 else "") + "."]
    return "\n".join(lines)


def save_png(fig, path: str, *, dpi: int = 110) -> None:
    """Writes a matplotlib figure as a PNG atomically (an interrupted run never leaves half a picture) and
    closes it."""
    import io

    import matplotlib.pyplot as plt

    from hmljax.data import atomic_write_bytes

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
