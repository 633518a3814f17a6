"""The persistent Dagster instance of an EQUAL home ($EQUAL_HOME/dagster), shared by `equal` and `make ui`."""

from __future__ import annotations

import fcntl
import json
import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import dagster as dg
import psutil
from dagster._utils.interrupts import check_captured_interrupt

from equal_dagster.core.settings import EqualPaths


def prepare_dagster_home(paths: EqualPaths) -> Path:
    """Create ``$EQUAL_HOME/dagster`` with the project's dagster.yaml (telemetry off; Dagster's SQLite storage in that
    folder, claiming pool slots in turn (:mod:`equal_dagster.instance_storage`); the writers' pool limited to one run
    for a DuckDB file, to :attr:`EqualPaths.writers` for a DuckLake store)."""
    paths.dagster_home.mkdir(parents=True, exist_ok=True)
    settings = resources.files("equal_dagster").joinpath("dagster.yaml").read_text()
    settings = settings.replace("base_dir: DAGSTER_HOME_PATH",
                                f"base_dir: {json.dumps(str(paths.dagster_home.resolve()), ensure_ascii=False)}")
    if paths.writers != 1:
        settings = settings.replace("    default_limit: 1", f"    default_limit: {paths.writers}  # EQUAL_STORE: DuckLake")
    target = paths.dagster_home / "dagster.yaml"
    if not target.exists() or target.read_text() != settings:
        target.write_text(settings)
    return paths.dagster_home


def persistent_instance(paths: EqualPaths) -> dg.DagsterInstance:
    """The home's instance. Opening it the first time creates and migrates its SQLite storages: two processes doing
    that at once collide, so they take turns (a file lock)."""
    home = prepare_dagster_home(paths)
    with open(home / ".instance.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            instance = dg.DagsterInstance.from_config(str(home))
            instance.get_runs(limit=1)  # the run storage migrated before another process may open it
            return instance
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def serve_ui(port: int, host: str = "127.0.0.1") -> None:
    """The Dagster UI (webserver and daemon) on ``host:port`` for ``$DAGSTER_HOME``, loading this package's
    definitions; until interrupted. What `dagster dev` does, called directly: its command line is superseded by
    `dg dev`, which needs a dg project, and warns on every start."""
    from dagster._cli.dev import dev_command_impl
    from dagster_shared.cli import WorkspaceOpts

    dev_command_impl(code_server_log_level="warning", log_level="info", log_format="colored", port=str(port), host=host,
                     use_legacy_code_server_behavior=False, shutdown_pipe=None, verbose=False,
                     workspace_opts=WorkspaceOpts(module_name=("equal_dagster.definitions",)))


# -- runs that died --------------------------------------------------------------------------------------------------
# A process killed with SIGKILL (or a machine that went down) leaves its Dagster run STARTED for ever, holding its slot
# of the `duckdb` pool, so every later write waits behind it (Dagster frees slots only for runs that end). A run whose
# process is gone is failed here with the reason, and its slots freed. Dagster's run monitoring cannot see it: the
# default run launcher and in-process runs have no worker health check.
LIVE_STATUSES = (dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING)
HOST_TAG = "equal/host"  # the machine a run executes on (set by `equal`'s runs): a pid means something only there


@dataclass(frozen=True)
class DeadRun:
    run_id: str
    job_name: str
    pid: int | None
    reason: str


def run_pid(instance: dg.DagsterInstance, run_id: str) -> int | None:
    """The process that executes the run (the pid on its RUN_START event); None before it started."""
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.RUN_START, limit=1).records
    for record in records:
        event = record.event_log_entry.dagster_event
        if event is not None and event.pid is not None:
            return int(event.pid)
    return None


# A run `equal` executes holds an exclusive lock on <instance root>/run-locks/<run id>.lock for as long as its process
# lives; the kernel drops it when the process dies, SIGKILL included. Whether that lock is held says whether the run
# is alive without trusting pids and clocks: a process's start time (boot time plus ticks) drifts from the wall clock
# on virtual machines, and a live run was once taken for dead that way and lost its slot of the pool.
RUN_LOCKS = "run-locks"


def _run_lock_path(instance: dg.DagsterInstance, run_id: str) -> Path:
    return Path(instance.root_directory) / RUN_LOCKS / f"{run_id}.lock"


class RunLock:
    """Held by the process that executes ``run_id`` from before the run starts until it ends (see above)."""

    def __init__(self, instance: dg.DagsterInstance, run_id: str):
        self.path = _run_lock_path(instance, run_id)
        self._file = None

    def __enter__(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # locked under a temporary name, then renamed: a watcher never sees the file unlocked while its run lives
        temporary = self.path.with_suffix(f".{os.getpid()}.tmp")
        self._file = open(temporary, "w")  # noqa: SIM115 - held until __exit__
        try:
            fcntl.flock(self._file, fcntl.LOCK_EX)
            temporary.replace(self.path)
        except OSError:
            self._file.close()
            self._file = None
            temporary.unlink(missing_ok=True)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self._file is not None:
            self.path.unlink(missing_ok=True)
            self._file.close()
            self._file = None


def _run_lock_held(instance: dg.DagsterInstance, run_id: str) -> bool | None:
    """Whether the run's process still holds its lock; None when the run has no lock file (a run launched by the UI or
    the daemon, or one that already ended)."""
    path = _run_lock_path(instance, run_id)
    try:
        handle = open(path)  # noqa: SIM115
    except FileNotFoundError:
        return None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        path.unlink(missing_ok=True)  # its process is gone: the lock (taken here) and the file go too
        return False


def _process_alive(pid: int, started_at: float | None) -> bool:
    """Whether ``pid`` is alive and is the process that started the run (not a later process given the same pid)."""
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        return started_at is None or process.create_time() <= started_at + 1.0
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def dead_runs(instance: dg.DagsterInstance) -> list[DeadRun]:
    """Runs the instance thinks are running whose process is gone."""
    found = []
    for record in instance.get_run_records(dg.RunsFilter(statuses=list(LIVE_STATUSES))):
        run = record.dagster_run
        if run.tags.get(HOST_TAG, socket.gethostname()) != socket.gethostname():
            continue  # another machine's run: its pid says nothing here
        pid = run_pid(instance, run.run_id)
        if pid is None:
            continue  # not started yet (a launcher or the daemon is still on it)
        held = _run_lock_held(instance, run.run_id)
        if held is False or (held is None and not _process_alive(pid, record.start_time)):
            found.append(DeadRun(run.run_id, run.job_name, pid, f"its process (pid {pid}) is gone"))
    return found


def release_dead_runs(instance: dg.DagsterInstance, say: Callable[[str], None] | None = None) -> list[DeadRun]:
    """Fail every dead run (see above) with the reason and free its concurrency slots; returns them."""
    released = []
    for dead in dead_runs(instance):
        run = instance.get_run_by_id(dead.run_id)
        if run is None or run.status not in LIVE_STATUSES:
            continue  # it ended meanwhile (its lock released as it finished): Dagster freed its slots
        released.append(dead)
        instance.report_run_failed(run, f"equal-dagster: {dead.reason}; the run is marked failed and its slot of "
                                        "the duckdb pool freed so that later runs can write")
        instance.event_log_storage.free_concurrency_slots_for_run(dead.run_id)
        if say is not None:
            say(f"run {dead.run_id} ({dead.job_name}) had died: {dead.reason}; marked failed, its duckdb slot freed")
    return released


def pool_holders(instance: dg.DagsterInstance, pool: str = "duckdb") -> list[str]:
    """The runs holding a slot of ``pool``."""
    return [slot.run_id for slot in instance.event_log_storage.get_concurrency_info(pool).claimed_slots]


class PoolWatch:
    """Runs beside a run of this process that may wait for the ``duckdb`` pool: every ``every_s`` seconds it frees
    the slots of dead runs (so a holder killed meanwhile does not block this run), and when a SIGTERM or SIGINT came
    while this run was still waiting for the pool (Dagster's wait ignores them), it marks this run failed, frees
    its place in the queue and ends the process (exit 143): nothing of the step has run yet."""

    def __init__(self, instance: dg.DagsterInstance, run_id: str, say: Callable[[str], None] | None = None,
                 every_s: float = 2.0):
        self.instance, self.run_id, self.say, self.every_s = instance, run_id, say, every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="equal-pool-watch", daemon=True)
        self._told: set[str] = set()

    def __enter__(self) -> PoolWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _watch(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                self._check()
            except Exception:  # noqa: BLE001 - the watch must never take the run down
                continue

    def _check(self) -> None:
        info = self.instance.event_log_storage.get_concurrency_info("duckdb")
        holders = {slot.run_id for slot in info.claimed_slots}
        waiting = self.run_id not in holders and any(p.run_id == self.run_id for p in info.pending_steps)
        if not waiting:
            return
        if check_captured_interrupt():
            run = self.instance.get_run_by_id(self.run_id)
            if run is not None:
                self.instance.report_run_failed(run, "stopped by a signal while waiting for the duckdb pool")
            self.instance.event_log_storage.free_concurrency_slots_for_run(self.run_id)
            if self.say:
                self.say(f"run {self.run_id} stopped by a signal while it waited for the store")
            os._exit(143)
        release_dead_runs(self.instance, self.say)
        for holder in holders - self._told:
            self._told.add(holder)
            if self.say:
                run = self.instance.get_run_by_id(holder)
                self.say(f"waiting for run {holder} ({run.job_name if run else '?'}, pid "
                         f"{run_pid(self.instance, holder)}), which is writing to the store")
