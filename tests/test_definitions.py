import importlib
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import duckdb
import yaml
from packaging.version import Version

ROOT = Path(__file__).parent.parent


def test_definitions_load_from_the_workspace_target():
    target = yaml.safe_load((ROOT / "workspace.yaml").read_text())["load_from"][0]["python_module"]
    defs = getattr(importlib.import_module(target["module_name"]), target["attribute"])
    assert isinstance(defs, dg.Definitions)
    graph = defs.resolve_asset_graph()
    corpus = graph.get(dg.AssetKey("corpus"))
    assert corpus.group_name == "ingest"
    assert defs.resolve_assets_def("corpus").node_def.pool == "duckdb"
    assert {"duckdb", "polars"} <= set(corpus.kinds)
    assert "quarantine" in corpus.description
    assert defs.resolve_job_def("ingest_crawl") is not None
    assert defs.resolve_sensor_def("new_crawl_sensor") is not None


def test_dagster_definitions_validate_passes(tmp_path):
    result = subprocess.run(
        [str(Path(sys.executable).parent / "dagster"), "definitions", "validate", "-w", "workspace.yaml"],
        cwd=ROOT, capture_output=True, text=True, timeout=240, env={"PATH": "/usr/bin:/bin", "EQUAL_HOME": str(tmp_path),
                                                                  "DAGSTER_HOME": str(tmp_path), "HOME": str(tmp_path)},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "All code locations passed validation" in result.stdout + result.stderr


def test_instance_settings_put_duckdb_writers_in_one_pool():
    settings = yaml.safe_load((ROOT / "equal_dagster" / "dagster.yaml").read_text())
    assert settings["concurrency"]["pools"]["default_limit"] == 1


def test_duckdb_stays_below_2():
    """duckdb 2.0.0 broke dagster-duckdb's polars path here (DuckDBPyConnection has no `arrow`); pyproject pins
    duckdb<2 and this test fails if that pin is lost."""
    assert Version(duckdb.__version__) < Version("2"), duckdb.__version__
    conn = duckdb.connect()
    assert conn.execute("SELECT 42 AS x").pl()["x"].to_list() == [42]


def test_every_asset_is_described_grouped_and_typed_and_round_automation_starts_off():
    from equal_dagster.definitions import defs

    graph = defs.resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        assert node.description and node.group_name and node.kinds, key
    rounds = graph.get(dg.AssetKey("bandit_rounds"))
    assert rounds.partitions_def.name == "rounds" and rounds.group_name == "extract"
    assert defs.resolve_assets_def("bandit_rounds").node_def.pool == "duckdb"
    assert defs.resolve_sensor_def("next_round_sensor").default_status == dg.DefaultSensorStatus.STOPPED
    assert defs.resolve_sensor_def("dead_run_sensor").default_status == dg.DefaultSensorStatus.RUNNING  # a safety net
    assert defs.resolve_schedule_def("reextraction_schedule").default_status == dg.DefaultScheduleStatus.STOPPED
    assert defs.resolve_job_def("bandit_round").partitions_def.name == "rounds"


def test_every_environment_variable_read_is_documented_and_every_documented_one_is_read():
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    read = {m for p in (root / "equal_dagster").rglob("*.py") for m in re.findall(r'"(EQUAL_[A-Z0-9_]+)"', p.read_text())}
    documented = set(re.findall(r"`(EQUAL_[A-Z0-9_]+)`", (root / "docs" / "configuration.md").read_text()))
    assert read == documented, {"read, not documented": read - documented, "documented, not read": documented - read}


def test_every_asset_has_its_data_rules_as_asset_checks():
    from equal_dagster.definitions import build_definitions

    graph = build_definitions().resolve_asset_graph()
    checked = {key.asset_key.to_user_string() for key in graph.asset_check_keys}
    assets = {key.to_user_string() for key in graph.get_all_asset_keys()}
    assert checked == assets, assets - checked


def test_the_package_sets_openblas_thread_timeout_before_numpy_can_load():
    """Importing equal_dagster sets OPENBLAS_THREAD_TIMEOUT (idle OpenBLAS threads spin 2^24 cycles, not 2^28: see
    the package's docstring) before numpy is loaded, so that numpy's OpenBLAS reads it; a user's own value wins."""
    code = ("import os, sys, equal_dagster; from equal_dagster.core import store; "
            "print(os.environ['OPENBLAS_THREAD_TIMEOUT'], 'numpy' in sys.modules)")
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_THREAD_TIMEOUT"}

    def run(**extra: str) -> list[str]:
        return subprocess.run([sys.executable, "-c", code], env={**env, **extra}, capture_output=True, text=True,
                              check=True).stdout.split()

    assert run() == ["24", "True"]  # the store loads numpy (with pyarrow), after the package set the default
    assert run(OPENBLAS_THREAD_TIMEOUT="28") == ["28", "True"]
    first = subprocess.run([sys.executable, "-c", "import sys, equal_dagster; print('numpy' in sys.modules)"],
                           env=env, capture_output=True, text=True, check=True).stdout.strip()
    assert first == "False"
