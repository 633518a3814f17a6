"""Crashes, faults and concurrent use (issue 14): a dead run never blocks the store; a waiting run stops on SIGTERM."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest

from equal_dagster.instance import pool_holders, prepare_dagster_home, release_dead_runs
from equal_dagster.core.settings import EqualPaths

POOL_JOB = Path(__file__).parent / "pool_job.py"


def _start(home: Path, seconds: float) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(POOL_JOB), str(home), str(seconds)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


def _wait_for(condition, what: str, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.3)


@pytest.fixture
def dagster_home(tmp_path: Path) -> Path:
    return prepare_dagster_home(EqualPaths(tmp_path / "home", tmp_path / "crawls"))


def _pending(instance: dg.DagsterInstance) -> set[str]:
    return {p.run_id for p in instance.event_log_storage.get_concurrency_info("duckdb").pending_steps}


def test_a_killed_run_does_not_hold_the_pool_and_a_waiting_run_stops_on_sigterm(dagster_home):
    instance = dg.DagsterInstance.from_config(str(dagster_home))
    holder = _start(dagster_home, 600)
    try:
        _wait_for(lambda: pool_holders(instance), "the first run to take the duckdb slot")
        dead_run = pool_holders(instance)[0]
        os.killpg(holder.pid, signal.SIGKILL)
        holder.wait(timeout=30)
        # what Dagster alone leaves: the run STARTED, holding the slot
        assert instance.get_run_by_id(dead_run).status == dg.DagsterRunStatus.STARTED
        assert pool_holders(instance) == [dead_run]

        # the next run frees it and goes through
        follower = _start(dagster_home, 0)
        out, _ = follower.communicate(timeout=120)
        assert follower.returncode == 0 and "DONE True" in out, out
        assert f"run {dead_run} (hold) had died" in out
        assert instance.get_run_by_id(dead_run).status == dg.DagsterRunStatus.FAILURE
        assert pool_holders(instance) == [] and release_dead_runs(instance) == []

        # a run waiting for a live holder stops on SIGTERM, and leaves no claim behind
        holder = _start(dagster_home, 600)
        _wait_for(lambda: pool_holders(instance), "the live holder")
        waiter = _start(dagster_home, 0)
        _wait_for(lambda: len(_pending(instance)) == 2, "the second run to wait for the slot")
        waiting_run = (_pending(instance) - set(pool_holders(instance))).pop()
        waiter.send_signal(signal.SIGTERM)
        out, _ = waiter.communicate(timeout=60)
        assert waiter.returncode == 143, out
        assert "stopped by a signal" in out
        assert instance.get_run_by_id(waiting_run).status == dg.DagsterRunStatus.FAILURE
        assert waiting_run not in _pending(instance)
    finally:
        for process in (holder,):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
