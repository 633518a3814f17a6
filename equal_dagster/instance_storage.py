"""The instance's SQLite storage, with the slots of a concurrency pool claimed in turn by the processes sharing it.

Dagster's SQL event log claims a slot by reading a free slot's row and then updating it (``SELECT ... FOR UPDATE SKIP
LOCKED``). SQLite has no row locks: two processes claiming at the same moment read the same free row, both update it,
and both are told CLAIMED, while the pool records one of them. Measured here: six `equal` processes claiming a pool of
one slot at once were admitted up to four at a time, and a live run's slot was then shown as held by another run.
The pool `duckdb` is what keeps a second writer off a DuckDB file, so claims must be exclusive. This storage is
Dagster's own (:class:`DagsterSqliteStorage`, same files, same schema) whose event log takes an exclusive file lock
around every change to the pools' slots and queue; the SQL is Dagster's. `prepare_dagster_home` writes it into the
home's dagster.yaml.
"""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage
from dagster._core.storage.sqlite_storage import DagsterSqliteStorage, _event_logs_directory
from dagster._serdes import ConfigurableClassData

POOLS_LOCK = ".pools.lock"  # in the event log's folder, beside its index database


class PoolLock:
    """An exclusive lock shared by this process's threads (re-entrant) and by every process on the machine that opens
    the same event log (``flock`` on one file)."""

    def __init__(self, path: str):
        self.path = path
        self._lock = threading.RLock()
        self._depth = 0
        self._file = None

    @contextmanager
    def held(self) -> Iterator[None]:
        with self._lock:
            if self._depth == 0:
                handle = open(self.path, "a")  # noqa: SIM115 - closed when the outermost hold ends
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX)
                except BaseException:  # interrupted while waiting: nothing held
                    handle.close()
                    raise
                self._file = handle
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
                if self._depth == 0:
                    self._file.close()  # closing drops the flock
                    self._file = None


# Every method of Dagster's SQL event log that changes the pools' slots or queue (claims, frees, assignment, sizing).
POOL_METHODS = ("claim_concurrency_slot", "free_concurrency_slots_for_run", "free_concurrency_slot_for_step",
                "assign_pending_steps", "initialize_concurrency_limit_to_default", "set_concurrency_slots",
                "delete_concurrency_limit")


def _holding_pool_lock(name: str) -> Callable:
    def method(self, *args, **kwargs):
        with self._pool_lock.held():
            return getattr(SqliteEventLogStorage, name)(self, *args, **kwargs)

    method.__name__ = name
    method.__doc__ = f"Dagster's ``{name}``, holding :class:`PoolLock`."
    return method


class PoolLockedSqliteEventLogStorage(SqliteEventLogStorage):
    """Dagster's SQLite event log; each of :data:`POOL_METHODS` holds :class:`PoolLock`."""

    def __init__(self, base_dir: str, inst_data: ConfigurableClassData | None = None):
        super().__init__(base_dir, inst_data)
        self._pool_lock = PoolLock(os.path.join(self._base_dir, POOLS_LOCK))


for _name in POOL_METHODS:
    setattr(PoolLockedSqliteEventLogStorage, _name, _holding_pool_lock(_name))


class PoolLockedSqliteStorage(DagsterSqliteStorage):
    """Dagster's default storage for a home (runs, event logs and schedules in SQLite under ``base_dir``), with the
    event log above."""

    def __init__(self, base_dir: str, inst_data: ConfigurableClassData | None = None):
        super().__init__(base_dir, inst_data)
        self._event_log_storage.dispose()
        self._event_log_storage = PoolLockedSqliteEventLogStorage(_event_logs_directory(base_dir))

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData, config_value) -> PoolLockedSqliteStorage:
        return cls.from_local(inst_data=inst_data, **config_value)
