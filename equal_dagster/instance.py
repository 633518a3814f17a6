"""The persistent Dagster instance of an EQUAL home ($EQUAL_HOME/dagster), shared by `equal` and `make ui`."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import dagster as dg

from equal_dagster.core.settings import EqualPaths


def prepare_dagster_home(paths: EqualPaths) -> Path:
    """Create ``$EQUAL_HOME/dagster`` with the project's dagster.yaml (concurrency pool, telemetry off)."""
    paths.dagster_home.mkdir(parents=True, exist_ok=True)
    settings = resources.files("equal_dagster").joinpath("dagster.yaml").read_text()
    target = paths.dagster_home / "dagster.yaml"
    if not target.exists() or target.read_text() != settings:
        target.write_text(settings)
    return paths.dagster_home


def persistent_instance(paths: EqualPaths) -> dg.DagsterInstance:
    return dg.DagsterInstance.from_config(str(prepare_dagster_home(paths)))
