"""`equal demo` end to end on a temporary home: data written, crawls materialized on a persistent instance."""

import dagster as dg

from equal_dagster.cli import main
from equal_dagster.core.settings import EqualPaths
from equal_dagster.core.store import Store
from equal_dagster.demo.corpus import CRAWL_NAMES


def test_equal_demo_materializes_the_demo_crawls(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("EQUAL_CRAWL_DIR", raising=False)
    assert main(["--home", str(tmp_path / "home"), "demo"]) == 0
    out = capsys.readouterr().out
    assert "| crawl | rows read | documents | duplicates | quarantined |" in out
    paths = EqualPaths.from_env(tmp_path / "home")
    with Store.open(paths.store, read_only=True) as store:
        counts = {c.crawl_id: c for c in store.crawl_counts()}
    assert set(counts) == set(CRAWL_NAMES)
    assert sum(c.documents for c in counts.values()) > 5000
    assert counts[CRAWL_NAMES[1]].quarantined["duplicate"] > 0  # re-crawled pages of the first crawl
    for reason in ("invalid_json", "not_an_object", "not_utf8", "missing_text", "empty_text", "id_conflict"):
        assert sum(c.quarantined.get(reason, 0) for c in counts.values()) > 0, reason
    # the runs live on the home's persistent instance, where `make ui` finds them
    instance = dg.DagsterInstance.from_config(str(paths.dagster_home))
    runs = instance.get_runs()
    assert len(runs) == 2 and all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)
    assert sorted(instance.get_dynamic_partitions("crawls")) == sorted(CRAWL_NAMES)
