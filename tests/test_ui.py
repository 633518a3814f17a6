"""`equal ui` (what `make ui` runs) serves the Dagster UI on 127.0.0.1, and its GraphQL API lists our assets."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def graphql(port: int, query: str) -> dict:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/graphql", data=json.dumps({"query": query}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


@pytest.mark.slow
def test_equal_ui_serves_the_asset_graph(tmp_path):
    port = free_port()
    env = {**os.environ, "EQUAL_HOME": str(tmp_path / "home")}
    env.pop("DAGSTER_HOME", None)
    log = open(tmp_path / "ui.log", "w")
    process = subprocess.Popen([str(Path(sys.executable).parent / "equal"), "ui", "--port", str(port)],
                               env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 180
        nodes = None
        while time.monotonic() < deadline and process.poll() is None:
            try:
                data = graphql(port, "{ assetNodes { assetKey { path } groupName } }")
                nodes = data.get("data", {}).get("assetNodes")
                if nodes:
                    break
            except OSError:
                pass
            time.sleep(1)
        assert nodes, (tmp_path / "ui.log").read_text()[-3000:]
        assert {"path": ["corpus"]} in [n["assetKey"] for n in nodes]
        # the persistent instance lives under EQUAL_HOME
        assert (tmp_path / "home" / "dagster" / "dagster.yaml").exists()
    finally:
        stop_group(process)
        log.close()


def stop_group(process: subprocess.Popen) -> None:
    """Stop `dagster dev` and its children (webserver, daemon, code server) by their process group."""
    for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue
