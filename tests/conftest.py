import fcntl
import json
import os
import pickle
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from equal_dagster.core.settings import EqualPaths  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def paths(tmp_path: Path) -> EqualPaths:
    """An empty EQUAL home with its crawl folder."""
    home = tmp_path / "home"
    (home / "crawls").mkdir(parents=True)
    return EqualPaths(home, home / "crawls")


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def copy_fixture(name: str, dest: Path) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(FIXTURES / name, dest)
    return dest


def bandit_for(paths: EqualPaths, **overrides):
    from equal_dagster.resources.bandit import BanditResource

    settings = {"arms_per_round": 2, "docs_per_arm": 4, "budget": "100%", "seed": 0}
    settings.update(overrides)
    return BanditResource(reference=str(paths.reference_dir / "reference.jsonl"), **settings)


@pytest.fixture(scope="session")
def clustering(tmp_path_factory) -> tuple[EqualPaths, dict]:
    """Both demo crawls (1,500 rows) ingested, the rules warm-up, the first crawl embedded (base MiniLM), clusters;
    and the metadata of that ``clusters`` materialization. Shared by the tests of clusters, rounds, faults, Ray and the
    UI: copy the home before writing (``shutil.copytree``). Under pytest-xdist the workers share one build: the first
    to ask builds it under a file lock, the others wait for it and read it."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the folder of this session that every worker's folder is in
    home, built = root / "clustered", root / "clustered.pickle"
    with open(root / "clustered.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not built.exists():
            shutil.rmtree(home, ignore_errors=True)  # a worker's build that failed leaves a partial home
            built.write_bytes(pickle.dumps(_build_clustered(home)))
    return EqualPaths(home, home / "crawls"), pickle.loads(built.read_bytes())


def _build_clustered(home: Path) -> dict:
    import dagster as dg

    from equal_dagster.definitions import build_definitions
    from equal_dagster.demo.corpus import CRAWL_NAMES, write_demo_data
    from equal_dagster.partitions import crawls_partitions
    from equal_dagster.resources.llm import ExtractionResource

    paths = EqualPaths(home, home / "crawls")
    write_demo_data(paths.crawl_dir, paths.reference_dir / "reference.jsonl", seed=0, n_documents=1500)
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(crawls_partitions.name, list(CRAWL_NAMES))
        defs = build_definitions(paths, llm=ExtractionResource(), bandit=bandit_for(paths))
        for crawl in CRAWL_NAMES:
            assert defs.resolve_job_def("ingest_crawl").execute_in_process(partition_key=crawl, instance=instance).success
        assert defs.resolve_job_def("warmup").execute_in_process(instance=instance).success
        assert defs.resolve_job_def("embed_crawl").execute_in_process(partition_key=CRAWL_NAMES[0], instance=instance).success
        result = defs.resolve_job_def("cluster").execute_in_process(instance=instance)
        assert result.success
        return {k: v.value for k, v in result.asset_materializations_for_node("clusters")[0].metadata.items()}


@pytest.fixture(scope="session")
def clustered(clustering) -> EqualPaths:
    """The home of :func:`clustering`: copy it before writing."""
    return clustering[0]


from postgres import postgres  # noqa: E402,F401  (the session's throwaway Postgres, for DuckLake stores)


@pytest.fixture(params=["duckdb", "ducklake"])
def store_at(request, tmp_path: Path):
    """Where a test's new store goes, once per backend: a DuckDB file, and a DuckLake store (its own database in the
    session's Postgres, its Parquet files in the test's folder)."""
    if request.param == "duckdb":
        return tmp_path / "s.duckdb"
    return request.getfixturevalue("postgres").new_lake(tmp_path / "lake")


# The longest test files first (measured with `pytest --durations=0`, 2026-11-30): `make test`'s workers take a file
# at a time in this order (`--no-loadscope-reorder`), so that the last files to start are short ones and the workers
# finish together. test_ray.py builds the shared `clustering` home first while test_demo_cli.py, which does not need
# it, runs beside it.
LONGEST_FIRST = ("test_ray.py", "test_demo_cli.py", "test_faults.py", "test_rounds.py", "test_ray_jobs.py",
                 "test_store_lake.py", "test_training.py", "test_headless.py", "test_training_assets.py",
                 "test_embedder.py", "test_real_text.py", "test_ui.py")


def pytest_collection_modifyitems(items):
    rank = {name: place for place, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: a file's own order stays
