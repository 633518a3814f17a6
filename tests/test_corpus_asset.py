"""The corpus asset materialized in process, from the Definitions, against a temporary DuckDB file."""

import dagster as dg
import pytest

from conftest import copy_fixture, write_jsonl
from equal_dagster.core.store import Store
from equal_dagster.definitions import build_definitions
from equal_dagster.partitions import crawls_partitions


@pytest.fixture
def instance():
    with dg.instance_for_test() as instance:
        yield instance


def materialize_crawl(paths, instance, crawl_id):
    instance.add_dynamic_partitions(crawls_partitions.name, [crawl_id])
    job = build_definitions(paths).resolve_job_def("ingest_crawl")
    result = job.execute_in_process(partition_key=crawl_id, instance=instance, raise_on_error=False)
    return result


def test_corpus_asset_writes_documents_and_reports_metadata(paths, instance, monkeypatch):
    monkeypatch.setenv("EQUAL_MAX_DOC_BYTES", "300")
    copy_fixture("quarantine/rows.jsonl", paths.crawl_dir / "crawl-a" / "rows.jsonl")
    result = materialize_crawl(paths, instance, "crawl-a")
    assert result.success
    metadata = {k: v.value for k, v in result.asset_materializations_for_node("corpus")[0].metadata.items()}
    assert metadata["rows_read"] == 12
    assert metadata["documents_kept"] == 2 and metadata["dagster/row_count"] == 2
    assert metadata["duplicates"] == 1 and metadata["quarantined"] == 9
    assert "| too_large | 1 |" in metadata["quarantined_by_reason"]
    assert "duplicate" not in metadata["quarantined_by_reason"]  # duplicates are counted apart, not quarantined
    assert "good-1" in metadata["preview"]
    assert [c.name for c in metadata["dagster/column_schema"].columns][:3] == ["doc_id", "crawl_id", "source_file"]
    assert all(c.description for c in metadata["dagster/column_schema"].columns)  # every column says what it holds
    with Store.open(paths.store, read_only=True) as store:
        assert store.documents("crawl-a")["doc_id"].to_list() == ["good-1", "good-2"]
    # progress and the counters reach the run log
    messages = [entry.user_message for entry in instance.all_logs(result.run_id)]
    assert any("12 rows read (" in m and "rows/s" in m for m in messages)
    assert any("9 quarantined" in m and "'too_large': 1" in m for m in messages)
    # the data rules as asset checks: 8 of 12 rows quarantined (duplicates aside) fails the share, as a warning
    checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
    assert not checks["quarantine_share"].passed and checks["quarantine_share"].severity == dg.AssetCheckSeverity.WARN
    assert "of 12 rows quarantined" in checks["quarantine_share"].description
    assert checks["no_id_conflict"].passed == ("id_conflict" not in metadata["quarantined_by_reason"])


def test_rematerializing_gives_the_same_rows(paths, instance):
    copy_fixture("formats/docs.parquet", paths.crawl_dir / "crawl-p" / "docs.parquet")
    assert materialize_crawl(paths, instance, "crawl-p").success
    with Store.open(paths.store, read_only=True) as store:
        first = store.documents("crawl-p").drop("ingested_at")
    assert materialize_crawl(paths, instance, "crawl-p").success
    with Store.open(paths.store, read_only=True) as store:
        assert store.documents("crawl-p").drop("ingested_at").equals(first)


def test_a_partition_naming_no_crawl_fails_with_a_clear_message(paths, instance):
    result = materialize_crawl(paths, instance, "missing-crawl")
    assert not result.success
    failure = result.failure_data_for_node("corpus")
    assert "does not exist" in failure.error.message and "missing-crawl" in failure.error.message
    write_jsonl(paths.crawl_dir.parent / "elsewhere" / "x.jsonl", [{"text": "x"}])
    (paths.crawl_dir / "sneaky").symlink_to(paths.crawl_dir.parent / "elsewhere")
    result = materialize_crawl(paths, instance, "sneaky")
    assert "outside" in result.failure_data_for_node("corpus").error.message
