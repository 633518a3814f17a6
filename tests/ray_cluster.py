"""A throwaway Ray cluster for the tests of Ray jobs: `ray start --head --block` on 127.0.0.1 (free ports, its own
temporary folder, fractional work on this machine's CPUs) with its job server, in a process group of its own that
is stopped by its id (never `ray stop`, which would stop every Ray on the machine)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def ray_cluster(num_cpus: int = 2, start_timeout_s: float = 120.0) -> Iterator[str]:
    """Yields the job server's address (http://127.0.0.1:PORT)."""
    from ray.job_submission import JobSubmissionClient

    folder = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's socket paths must fit in 107 characters
    ray = Path(sys.executable).with_name("ray")
    dashboard = _free_port()
    command = [str(ray), "start", "--head", "--block", "--node-ip-address", "127.0.0.1", "--port", str(_free_port()),
               "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dashboard), "--include-dashboard", "true",
               "--ray-client-server-port", str(_free_port()), "--dashboard-agent-listen-port", str(_free_port()),
               "--num-cpus", str(num_cpus), "--temp-dir", folder, "--disable-usage-stats"]
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_ADDRESS", None)
    log = open(Path(folder) / "head.log", "w")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    address = f"http://127.0.0.1:{dashboard}"
    try:
        deadline = time.monotonic() + start_timeout_s
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"ray start exited with {process.returncode}: {(Path(folder) / 'head.log').read_text()[-3000:]}")
            try:
                JobSubmissionClient(address).list_jobs()
                break
            except Exception:  # the job server is not up yet
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)
        yield address
    finally:
        for sig, wait_s in ((signal.SIGTERM, 5), (signal.SIGKILL, 10)):
            try:
                os.killpg(process.pid, sig)
            except ProcessLookupError:
                break
            try:
                process.wait(wait_s)
                break
            except subprocess.TimeoutExpired:
                continue
        log.close()
        shutil.rmtree(folder, ignore_errors=True)
