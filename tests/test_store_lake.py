"""The store on DuckLake with a Postgres catalog: snapshots, several writers at once, a writer killed mid-write, two
writers of the same partition. (tests/test_store.py runs the store's other tests on both backends.)"""

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from importlib.metadata import version
from pathlib import Path

import dagster as dg
import duckdb
import polars as pl
import pytest

from equal_dagster.core.store import (
    SCHEMA_VERSION, LakeLocation, PartitionConflict, Store, StoreError, _without_constraints, store_location,
)
from lake_writer import documents, quarantined
from test_store import doc_rows, rows_stored

WRITER = Path(__file__).parent / "lake_writer.py"


def test_the_extension_wheels_are_built_for_the_duckdb_installed():
    """An extension loads only into the DuckDB version it was built for: the pins must move together."""
    for name in ("ducklake", "postgres", "sqlite", "httpfs"):
        assert version(f"duckdb-extension-{name}") == duckdb.__version__, name


def test_the_store_location_comes_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("EQUAL_STORE", raising=False)
    assert store_location(tmp_path / "equal.duckdb") == tmp_path / "equal.duckdb"
    monkeypatch.setenv("EQUAL_STORE", "ducklake:postgres:dbname=equal host=db password=s3cret")
    monkeypatch.setenv("EQUAL_STORE_DATA", str(tmp_path / "lake"))
    location = store_location(tmp_path / "equal.duckdb")
    assert location == LakeLocation("postgres:dbname=equal host=db password=s3cret", f"{tmp_path / 'lake'}/")
    assert "s3cret" not in str(location) and location.extensions == ["ducklake", "postgres"]
    monkeypatch.setenv("EQUAL_STORE_DATA", "s3://bucket/equal/")
    assert store_location("x").extensions == ["ducklake", "postgres", "httpfs"]
    with pytest.raises(StoreError, match="unknown DuckLake catalog"):
        LakeLocation.parse("ducklake:mysql:db=x")
    assert _without_constraints("CREATE TABLE t (a VARCHAR NOT NULL,\n  PRIMARY KEY (a, b)\n)") == \
        "CREATE TABLE t (a VARCHAR NOT NULL\n)"
    assert _without_constraints("CREATE TABLE v (version INTEGER PRIMARY KEY, at TIMESTAMP)") == \
        "CREATE TABLE v (version INTEGER, at TIMESTAMP)"


def test_a_missing_lake_is_refused_read_only_and_a_duckdb_file_has_no_snapshots(postgres, tmp_path):
    lake = postgres.new_lake(tmp_path / "lake")
    with pytest.raises(StoreError, match="no store at ducklake:postgres:"):
        with Store.open(lake, read_only=True):
            pass
    with Store.open(tmp_path / "s.duckdb") as store:
        assert store.snapshot_id() is None
    with pytest.raises(StoreError, match="keeps no snapshots"):
        with Store.open(tmp_path / "s.duckdb", read_only=True, snapshot=3):
            pass


def test_each_write_makes_a_snapshot_and_a_snapshot_opens_as_it_was(postgres, tmp_path):
    lake = postgres.new_lake(tmp_path / "lake")
    with Store.open(lake) as store:
        assert store.lake
        with store.replace_partition("crawl_id", "c1", ["documents"]) as writer:
            writer.insert("documents", doc_rows("c1", ["a", "b"]))
        first = store.snapshot_id()
        with store.replace_partition("crawl_id", "c1", ["documents"]) as writer:
            writer.insert("documents", doc_rows("c1", ["a", "b", "c"], text="v2"))
        latest = store.snapshot_id()
        assert latest > first and store.snapshots()["snapshot_id"].to_list()[-1] == latest
    with Store.open(lake, read_only=True, snapshot=first) as old:
        assert old.snapshot_id() == first
        assert old.documents()["text"].to_list() == ["t a", "t b"]
        with pytest.raises(StoreError, match="read-only"):
            old.save_responses(doc_rows("c1", ["x"]))
    with Store.open(lake, read_only=True) as now:
        assert now.documents()["text"].to_list() == ["v2 a", "v2 b", "v2 c"]
    with pytest.raises(StoreError, match="only be opened read-only"):
        with Store.open(lake, snapshot=first):
            pass


def test_two_writers_of_the_same_partition_one_wins_the_other_is_told(postgres, tmp_path):
    lake = postgres.new_lake(tmp_path / "lake")
    with Store.open(lake) as first, Store.open(lake) as second:
        with first.replace_partition("crawl_id", "c1", ["documents"]) as writer:
            writer.insert("documents", doc_rows("c1", ["old"]))
        with pytest.raises(PartitionConflict, match=r"partition crawl_id = 'c1' of table documents was replaced by "
                                                    r"another writer .*1 rows of documents\) dropped"):
            with first.replace_partition("crawl_id", "c1", ["documents"]) as slow:
                slow.insert("documents", doc_rows("c1", ["slow"]))
                with second.replace_partition("crawl_id", "c1", ["documents"]) as fast:  # starts later, ends first
                    fast.insert("documents", doc_rows("c1", ["fast"]))
        assert first.documents()["doc_id"].to_list() == ["fast"]
        assert rows_stored(first) == 1  # the loser's rows and the replaced ones are gone
        # a first write of a partition is no exception (no write to delete: DuckLake alone would let both in)
        with pytest.raises(PartitionConflict, match="partition crawl_id = 'c2'"):
            with first.replace_partition("crawl_id", "c2", ["documents"]) as slow:
                slow.insert("documents", doc_rows("c2", ["s"]))
                with second.replace_partition("crawl_id", "c2", ["documents"]) as fast:
                    fast.insert("documents", doc_rows("c2", ["f"]))
        assert second.documents("c2")["doc_id"].to_list() == ["f"]


def _writer(lake: LakeLocation, job: dict) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(WRITER.parent), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen([sys.executable, str(WRITER), lake.catalog, lake.data_path, json.dumps(job)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def test_concurrent_writers_lose_nothing_and_duplicate_nothing(postgres, tmp_path):
    """Four processes ingest crawls (each re-ingests its first one: deletes among the appends; two of them also write
    one same crawl) while a fifth writes rounds, all five starting on a new lake (they race to create the schema);
    every commit conflict along the way is retried."""
    lake = postgres.new_lake(tmp_path / "lake")
    crawls = {w: [f"crawl-{w}-{c}" for c in range(2)] for w in range(4)}
    jobs = [{"crawls": [[c, 600, 2] for c in crawls[w]] + [[crawls[w][0], 600, 3]], "tag": f"w{w}"} for w in range(4)]
    for w in (0, 1):
        jobs[w]["crawls"].insert(1, ["shared", 400, 2])
    jobs.append({"rounds": list(range(1, 4))})
    started = time.monotonic()
    writers = [_writer(lake, job) for job in jobs]
    results = [w.communicate(timeout=240) for w in writers]
    elapsed = time.monotonic() - started
    for writer, (out, err) in zip(writers, results):
        assert writer.returncode == 0, err[-3000:]
    print(f"5 writers, {sum(len(j.get('crawls', j.get('rounds'))) for j in jobs)} partition writes: {elapsed:.1f} s; "
          + "; ".join(out.strip() for out, _ in results))
    reports = [json.loads(out) for out, _ in results]
    with Store.open(lake, read_only=True) as store:
        assert store.conn.execute("SELECT count(*) FROM schema_version").fetchone()[0] == SCHEMA_VERSION  # once each
        shared = store.documents("shared")
        # the shared crawl: one writer's rows, whole (the other's came before, or lost with PartitionConflict)
        assert shared.height == 400 and shared["text"].str.extract(r"by (w\d)$").n_unique() == 1
        assert sum(r["lost"] == ["shared"] for r in reports) <= 1
        docs = store.documents().filter(pl.col("crawl_id") != "shared")
        assert docs.height == 8 * 600 and docs["doc_id"].n_unique() == 8 * 600
        assert sorted(docs["crawl_id"].unique().to_list()) == sorted(c for cs in crawls.values() for c in cs)
        assert store.quarantine().height == 9
        assert store.rounds()["round_no"].to_list() == [1, 2, 3]
        assert store.qa_pairs().height == 15 and store.extractions().height == 15
        assert store.conn.execute("SELECT count(*) FROM partition_writes").fetchone()[0] == 9 * 2 + 3 * 3
        assert rows_stored(store) == 8 * 600 + 400  # the replaced and the lost writes' rows deleted


def test_a_writer_killed_mid_write_leaves_no_partial_partition(postgres, tmp_path):
    lake = postgres.new_lake(tmp_path / "lake")
    with Store.open(lake) as store:
        with store.replace_partition("crawl_id", "c1", ["documents", "quarantine"]) as writer:
            writer.insert("documents", documents("c1", 0, 50))
            writer.insert("quarantine", quarantined("c1"))
    ready = tmp_path / "ready"
    victim = _writer(lake, {"hang_in": "c1", "ready": str(ready)})
    deadline = time.monotonic() + 60
    while not ready.exists():
        assert victim.poll() is None, victim.communicate()[1][-3000:]
        assert time.monotonic() < deadline
        time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=30)
    with Store.open(lake) as store:
        assert store.documents()["doc_id"].to_list() == [f"c1-{i}" for i in range(50)]  # the old write, whole
        assert rows_stored(store) == 150  # and the killed writer's 100 rows, invisible
        store.delete_unfinished_writes()
        assert rows_stored(store) == 50
        assert store.documents().height == 50 and store.quarantine().height == 1


def test_ingest_cache_vectors_quality_models_and_lineage_on_both_backends(store_at, paths):
    """The store's other writers, as the pipeline calls them: ingestion (deduplication across crawls, a re-ingest),
    the LLM cache, vectors, the QA pairs' quality, a model with its pairs and scores, and a pair's lineage."""
    from datetime import datetime

    from conftest import write_jsonl
    from equal_dagster.core.corpus import CrawlFormat, ingest_crawl
    from equal_dagster.core.store import table_frame
    from lake_writer import round_rows

    write_jsonl(paths.crawl_dir / "one" / "a.jsonl", [{"id": "a1", "text": "Shared page"}, {"id": "a2", "text": "Only"}])
    write_jsonl(paths.crawl_dir / "two" / "b.jsonl", [{"id": "b1", "text": "Shared page\n"}, {"id": "b2", "text": "Two"}])
    with Store.open(store_at) as store:
        for crawl in ("one", "two", "one"):
            report = ingest_crawl(store, crawl, paths.crawl_dir / crawl, paths.crawl_dir, CrawlFormat())
        assert report.duplicates == 0 and store.documents()["doc_id"].to_list() == ["a1", "a2", "b2"]
        assert store.quarantine("two")["reason"].to_list() == ["duplicate"]

        responses = pl.DataFrame({"cache_key": ["k1", "k1", "k2"], "backend": ["openai"] * 3, "model": ["m"] * 3,
                                  "prompt_version": ["v1"] * 3, "response": ["first", "second", "r2"],
                                  "tokens_in": [1, 2, 3], "tokens_out": [1, 2, 3], "latency_s": [0.1] * 3})
        store.save_responses(responses)
        store.save_responses(responses.with_columns(pl.lit("later").alias("response")))
        cached = store.cached_responses(["k1", "k2", "k3"]).sort("cache_key")
        assert cached["response"].to_list() == ["first", "r2"] and store.llm_cache_size() == 2

        def vectors(ids, crawl, value):
            return table_frame("embeddings", {"doc_id": ids, "embedder_id": ["e"] * len(ids), "crawl_id": [crawl] * len(ids),
                                              "vector": [[value, 1.0]] * len(ids), "embedded_at": [datetime(2026, 1, 1)] * len(ids)})
        store.insert_embeddings(vectors(["a1", "a2", "gone"], "one", 0.5))
        store.insert_embeddings(vectors(["a1", "b2"], "one", 0.9))  # a1 kept as it was
        assert store.embedding_vectors(["a1"], "e").tolist() == [[0.5, 1.0]]
        assert store.delete_stale_embeddings("one") == 2  # "gone", and b2 (filed under the wrong crawl)
        assert store.drop_embeddings("e") == 2 and store.embedding_counts() == {}

        rows = round_rows(1)
        rows["extractions"] = rows["extractions"].with_columns(pl.lit("a1").alias("doc_id")).head(1)
        rows["qa_pairs"] = rows["qa_pairs"].with_columns(pl.lit("a1").alias("doc_id"))
        with store.replace_partition("round_id", "round-1", list(rows)) as writer:
            for table, frame in rows.items():
                writer.insert(table, frame)
        qa_ids = store.qa_pairs()["qa_id"].to_list()
        quality = pl.DataFrame({"qa_id": qa_ids[:3], "quality": ["{}"] * 3, "quality_score": [0.9, 0.5, 0.1],
                                "kept": [True, True, False], "drop_reason": [None, None, "low"]})
        assert store.set_qa_quality(quality) == 3
        assert store.unscored_pairs() == 2 and store.kept_pairs()["qa_id"].to_list() == qa_ids[:2]

        model = table_frame("models", {"model_id": ["m1"], "base_model": ["tiny"], "path": ["/m1"],
                                       "created_at": [datetime(2026, 1, 3)]})
        store.save_model(model, qa_ids[:2])
        store.save_model(model, qa_ids[:2])  # replaced, not doubled
        store.replace_eval_scores("m1", table_frame("eval_scores", {
            "model_id": ["m1"], "task": ["gsm"], "metric": ["acc"], "value": [0.25], "evaluated_at": [datetime(2026, 1, 4)]}))
        assert store.models_trained_on(qa_ids[0])[["model_id", "task", "value"]].rows() == [("m1", "gsm", 0.25)]
        found = store.lineage(qa_ids[0])
        assert found["document"]["crawl_id"] == "one" and found["round"]["round_no"] == 1
        assert found["extraction"]["backend"] == "rules"


def test_the_corpus_asset_on_ducklake_records_the_snapshot_it_wrote(postgres, tmp_path, paths):
    import dagster as dg

    from conftest import write_jsonl
    from equal_dagster.assets.corpus import corpus
    from equal_dagster.partitions import crawls_partitions
    from equal_dagster.resources.crawls import CrawlFolder
    from equal_dagster.resources.store import StoreResource

    lake = postgres.new_lake(tmp_path / "lake")
    with Store.open(lake) as store:  # created with its data path: the catalog remembers it
        before = store.snapshot_id()
    write_jsonl(paths.crawl_dir / "c1" / "a.jsonl", [{"id": "a1", "text": "A page"}, {"id": "a2", "text": "Another"}])
    resources = {"store": StoreResource(database=f"ducklake:{lake.catalog}"),
                 "crawl_folder": CrawlFolder(path=str(paths.crawl_dir))}
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(crawls_partitions.name, ["c1"])
        result = dg.materialize([corpus], partition_key="c1", instance=instance, resources=resources)
    assert result.success
    snapshot = result.asset_materializations_for_node("corpus")[0].metadata["store_snapshot"].value
    assert snapshot > before
    with Store.open(lake, read_only=True, snapshot=snapshot) as then:
        assert then.documents("c1")["doc_id"].to_list() == ["a1", "a2"]
    with Store.open(lake, read_only=True, snapshot=before) as earlier:
        assert earlier.documents().height == 0


def test_files_that_go_with_a_lake_store_are_written_in_the_home(monkeypatch, tmp_path):
    from equal_dagster.resources.store import StoreResource

    monkeypatch.setenv("EQUAL_HOME", str(tmp_path / "home"))
    assert StoreResource(database=str(tmp_path / "x" / "equal.duckdb")).files_dir() == tmp_path / "x"
    assert StoreResource(database="ducklake:postgres:dbname=equal host=db").files_dir() == tmp_path / "home"


def test_equal_runs_the_pipeline_on_ducklake_and_reads_an_asset_version_as_of_its_snapshot(postgres, tmp_path,
                                                                                           monkeypatch, capsys):
    """EQUAL_STORE points the `equal` command and the Dagster definitions at a DuckLake store: the runs write there
    (several writers admitted by the pool), and `equal lineage --as-of` reads what a round's materialization saw."""
    import json

    import yaml

    from equal_dagster.cli import main
    from equal_dagster.demo.corpus import generate_reference_set, write_demo_crawls, write_reference_set

    lake = postgres.new_lake(tmp_path / "lake")
    monkeypatch.setenv("EQUAL_STORE", f"ducklake:{lake.catalog}")
    monkeypatch.setenv("EQUAL_STORE_DATA", lake.data_path)
    monkeypatch.setenv("EQUAL_LLM_BACKEND", "rules")
    crawls, reference, home = tmp_path / "crawls", tmp_path / "reference.jsonl", tmp_path / "home"
    corpus = write_demo_crawls(crawls, seed=0, n_documents=160)
    write_reference_set(reference, generate_reference_set(0, n=40, exclude=corpus.math_questions))
    assert main(["run", "--crawl-dir", str(crawls), "--reference", str(reference), "--no-tune", "--budget", "40",
                 "--arms-per-round", "1", "--docs-per-arm", "12", "--home", str(home)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["rounds"] >= 1 and summary["qa_pairs"] > 0
    assert not (home / "equal.duckdb").exists()  # everything went to the lake
    settings = yaml.safe_load((home / "dagster" / "dagster.yaml").read_text())
    assert settings["concurrency"]["pools"]["default_limit"] == 4  # DuckLake admits several writers
    with Store.open(lake, read_only=True) as store:
        pairs = store.qa_pairs_of_rounds()
        rounds = store.rounds()
    assert pairs.height == summary["qa_pairs"]

    # the materialization of round 1 recorded its snapshot: the lineage of one of its pairs as of then, and a round
    # played later is not in that snapshot
    import dagster as dg

    instance = dg.DagsterInstance.from_config(str(home / "dagster"))
    events = instance.fetch_materializations(dg.AssetKey("bandit_rounds"), limit=100).records
    first = next(e for e in events if e.partition_key == "r0001")
    snapshot = first.asset_materialization.metadata["store_snapshot"].value
    qa_id = pairs.filter(pairs["round_id"] == "r0001")["qa_id"][0] if "r0001" in pairs["round_id"].to_list() else None
    assert main(["--home", str(home), "lineage", qa_id or pairs["qa_id"][0], "--as-of", str(snapshot), "--json"]) \
        == (0 if qa_id else 2)
    if qa_id:
        assert json.loads(capsys.readouterr().out)["round"]["round_id"] == "r0001"
    with Store.open(lake, read_only=True, snapshot=snapshot) as then:
        assert then.last_round_no() == 1 and rounds["round_no"].max() >= 1
    capsys.readouterr()
    assert main(["--home", str(home), "export", "--as-of", str(snapshot), "--out", str(tmp_path / "out")]) == 2
    assert "no kept QA pair" in capsys.readouterr().err  # qa_dataset was not built by then


def test_the_writers_pool_is_one_for_a_duckdb_file_and_several_for_ducklake(monkeypatch, tmp_path):
    from equal_dagster.core.settings import EqualPaths
    from equal_dagster.instance import prepare_dagster_home

    paths = EqualPaths(tmp_path / "home", tmp_path / "crawls")
    monkeypatch.delenv("EQUAL_STORE", raising=False)
    monkeypatch.delenv("EQUAL_STORE_WRITERS", raising=False)
    assert paths.writers == 1 and paths.store == tmp_path / "home" / "equal.duckdb"
    assert "default_limit: 1\n" in (prepare_dagster_home(paths) / "dagster.yaml").read_text()
    monkeypatch.setenv("EQUAL_STORE", "ducklake:postgres:dbname=equal host=db.internal")
    assert paths.writers == 4 and isinstance(paths.store, LakeLocation)
    monkeypatch.setenv("EQUAL_STORE_WRITERS", "2")
    assert "default_limit: 2 " in (prepare_dagster_home(paths) / "dagster.yaml").read_text()
    monkeypatch.setenv("EQUAL_STORE_WRITERS", "0")
    with pytest.raises(ValueError, match="EQUAL_STORE_WRITERS"):
        paths.writers


def test_on_ducklake_two_writing_runs_hold_the_duckdb_pool_at_once(monkeypatch, tmp_path):
    """The pool every writing asset sits in admits several runs when the store is DuckLake (two crawls ingest at once,
    a round plays while a crawl ingests); on a DuckDB file the second waits (tests/test_faults.py)."""
    from equal_dagster.core.settings import EqualPaths
    from equal_dagster.instance import persistent_instance, pool_holders

    monkeypatch.setenv("EQUAL_STORE", "ducklake:postgres:dbname=equal host=127.0.0.1")
    paths = EqualPaths(tmp_path / "home", tmp_path / "crawls")
    instance = persistent_instance(paths)  # the storages created and migrated before two processes open them at once
    assert pool_holders(instance) == []
    job = Path(__file__).parent / "pool_job.py"
    holders = [subprocess.Popen([sys.executable, str(job), str(paths.dagster_home), "600"], stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True) for _ in range(2)]
    try:
        deadline = time.monotonic() + 180
        while len(pool_holders(instance)) < 2 and time.monotonic() < deadline:
            if any(holder.poll() is not None for holder in holders):
                break  # a job ended: it cannot be holding the pool any more
            time.sleep(0.3)
        held = pool_holders(instance)
    finally:
        for holder in holders:
            if holder.poll() is None:
                os.killpg(holder.pid, signal.SIGKILL)
    outputs = [holder.communicate(timeout=30)[0] for holder in holders]
    info = instance.event_log_storage.get_concurrency_info("duckdb")
    assert len(held) == 2, (outputs, info.slot_count, info.limit)  # both writing runs held a slot at the same time


def test_a_missing_file_catalog_is_no_store_passwords_never_show_and_duplicate_vectors_read_once(postgres, tmp_path,
                                                                                                monkeypatch):
    from equal_dagster.core.settings import EqualPaths
    from equal_dagster.core.store import redacted, store_exists
    from equal_dagster.definitions import build_definitions

    sqlite_lake = LakeLocation(f"sqlite:{tmp_path / 'catalog.sqlite'}", str(tmp_path / "sqlite-data") + "/")
    assert not store_exists(sqlite_lake)  # `equal run` may create it
    with Store.open(sqlite_lake):
        pass
    assert store_exists(sqlite_lake)
    assert "secret" not in redacted("ducklake:postgres:dbname=e host=h password=secret")
    assert "secret" not in redacted("ducklake:postgres:postgresql://equal:secret@db.internal/e")

    # the definitions keep the connection string out of the resource's configured values (the UI shows them)
    monkeypatch.setenv("EQUAL_STORE", "ducklake:postgres:dbname=e host=127.0.0.1 password=secret")
    database = build_definitions(EqualPaths(tmp_path / "home", tmp_path / "crawls")).resources["store"].database
    assert isinstance(database, dg.EnvVar) and database.env_var_name == "EQUAL_STORE"

    # two writers adding the same vector at the same moment may both add it (no PRIMARY KEY): readers see one
    lake = postgres.new_lake(tmp_path / "lake")
    with Store.open(lake) as store:
        for _ in range(2):
            store.conn.execute("INSERT INTO embeddings (doc_id, embedder_id, crawl_id, vector, embedded_at) "
                               "VALUES ('d1', 'e', 'c1', [1.0, 0.0], now())")
        assert store.conn.execute("SELECT count(*) FROM embeddings").fetchone()[0] == 2
        assert store.embedding_vectors(["d1"], "e").shape == (1, 2)


def test_maintenance_merges_small_files_deletes_replaced_ones_and_every_snapshot_still_reads_as_it_was(postgres,
                                                                                                      tmp_path):
    """Store.maintain on DuckLake: the current snapshot reads fewer, larger files; the files the merge replaced are
    deleted only once older than the delay; every snapshot an asset version recorded reads the same rows after it
    (``equal lineage --as-of``); writing goes on. On a DuckDB file it checkpoints."""
    lake = postgres.new_lake(tmp_path / "lake")

    def parquet_files() -> int:
        return sum(1 for _ in (tmp_path / "lake").rglob("*.parquet"))

    ids = [f"d{i:02d}" for i in range(12)]  # more rows than DuckLake inlines in its catalog: each write is a file
    with Store.open(lake) as store:
        snapshots = []
        for i in range(6):  # one partition replaced (deleted rows), another added: small files accumulate
            with store.replace_partition("crawl_id", "c1", ["documents"]) as writer:
                writer.insert("documents", doc_rows("c1", ids, text=f"v{i}"))
            with store.replace_partition("crawl_id", f"n{i}", ["documents"]) as writer:
                writer.insert("documents", doc_rows(f"n{i}", [f"{x}-{i}" for x in ids]))
            snapshots.append(store.snapshot_id())
        current = store.documents().sort("doc_id")
        on_disk = parquet_files()
        kept = store.maintain()  # the default delay: nothing just replaced is deleted yet
        assert kept.data_files_after < kept.data_files_before and kept.files_deleted == 0
        assert parquet_files() > on_disk  # the merged files, beside the ones they replace
        report = store.maintain(delete_after_s=0)
        assert report.files_deleted > 0 and parquet_files() < on_disk
        with pytest.raises(ValueError, match="0 or more"):
            store.maintain(delete_after_s=-1)
        assert report.data_files_after <= kept.data_files_after and "data files" in report.describe()
        assert store.documents().sort("doc_id").equals(current)
        with store.replace_partition("crawl_id", "c1", ["documents"]) as writer:
            writer.insert("documents", doc_rows("c1", ids, text="after"))
        assert sorted(set(store.documents(crawl_id="c1")["text"].str.slice(0, 5))) == ["after"]
    for i, snapshot in enumerate(snapshots):
        with Store.open(lake, read_only=True, snapshot=snapshot) as then:
            seen = then.documents()
            assert seen.height == 12 * (i + 2)
            assert set(seen.filter(pl.col("crawl_id") == "c1")["text"].str.slice(0, 2)) == {f"v{i}"}
    with Store.open(tmp_path / "s.duckdb") as file_store:
        assert file_store.maintain().describe().startswith("DuckDB file checkpointed")


def test_maintenance_while_others_write_loses_nothing(postgres, tmp_path):
    """Store.maintain in a loop while two processes ingest and re-ingest crawls (appends and deletes) and a third
    writes rounds: merges that meet a concurrent commit are retried on either side, and every row is where it was."""
    lake = postgres.new_lake(tmp_path / "lake")
    with Store.open(lake) as store:
        writers = [_writer(lake, {"crawls": [[f"crawl-{w}", 400, 4], [f"crawl-{w}", 400, 2]], "tag": f"w{w}"})
                   for w in range(2)] + [_writer(lake, {"rounds": [1, 2, 3, 4]})]
        maintained, overlapped = [], 0
        deadline = time.monotonic() + 240
        while any(w.poll() is None for w in writers) and time.monotonic() < deadline:
            overlapped += 1  # a pass that starts while a writer writes (the writers take seconds)
            maintained.append(store.maintain(delete_after_s=3600))
        for writer in writers:
            out, err = writer.communicate(timeout=240)
            assert writer.returncode == 0, err[-3000:]
        assert overlapped >= 1
        final = store.maintain(delete_after_s=3600)  # once the writers are done (merging is tested above)
        assert final.data_files_after <= final.data_files_before
    with Store.open(lake, read_only=True) as store:
        docs = store.documents()
        assert docs.height == 800 and docs["doc_id"].n_unique() == 800
        assert sorted(docs["crawl_id"].unique().to_list()) == ["crawl-0", "crawl-1"]
        assert store.rounds()["round_no"].to_list() == [1, 2, 3, 4] and store.qa_pairs().height == 20
        assert rows_stored(store) == 800  # the re-ingests' replaced rows deleted, nothing duplicated by a merge
    print(f"{len(maintained)} maintenance passes during the writes: "
          + "; ".join(r.describe() for r in maintained[:3]) + f"; then {final.describe()}")


def test_a_postgres_serialization_failure_is_a_commit_conflict_to_retry():
    from equal_dagster.core.store import _is_commit_conflict

    assert _is_commit_conflict(duckdb.Error('Failed to execute query "DELETE FROM ..." : ERROR:  could not serialize '
                                            'access due to concurrent update'))
    assert _is_commit_conflict(duckdb.Error("Transaction conflict: cannot add data to table documents_rows"))
    assert not _is_commit_conflict(duckdb.Error("Catalog Error: Table with name nowhere does not exist!"))
    assert not _is_commit_conflict(ValueError("could not serialize access"))  # only DuckDB's errors


def test_the_store_maintenance_job_runs_on_ducklake_and_its_schedule_is_on_only_there(postgres, tmp_path, paths,
                                                                                    monkeypatch):
    from equal_dagster.automation import maintain_store
    from equal_dagster.definitions import build_definitions

    monkeypatch.delenv("EQUAL_STORE", raising=False)
    file_defs = build_definitions(paths)
    assert file_defs.resolve_schedule_def("store_maintenance_schedule").default_status == \
        dg.DefaultScheduleStatus.STOPPED
    lake = postgres.new_lake(tmp_path / "lake")
    with Store.open(lake) as store:
        for i in range(8):  # 8 files (12 rows each: more than DuckLake inlines in its catalog)
            with store.replace_partition("crawl_id", f"c{i}", ["documents"]) as writer:
                writer.insert("documents", doc_rows(f"c{i}", [f"d{i}-{n:02d}" for n in range(12)]))
    monkeypatch.setenv("EQUAL_STORE", f"ducklake:{lake.catalog}")
    lake_defs = build_definitions(paths)
    assert lake_defs.resolve_schedule_def("store_maintenance_schedule").default_status == \
        dg.DefaultScheduleStatus.RUNNING
    job = lake_defs.resolve_job_def("store_maintenance")
    assert maintain_store.pool == "duckdb"  # a writer: it takes a slot of the writers' pool
    with dg.instance_for_test() as instance:
        result = job.execute_in_process(instance=instance)
    assert result.success
    report = result.output_for_node("maintain_store")
    assert report["store"] == "ducklake" and report["data_files_after"] < report["data_files_before"] == 8
    with Store.open(lake, read_only=True) as after:
        assert after.documents().height == 8 * 12


def test_a_writer_that_finds_the_schema_claimed_but_never_migrated_migrates_after_waiting(postgres, tmp_path,
                                                                                          monkeypatch):
    """Writers opening a new lake at once let the one that created schema_version migrate; if that one died before
    committing its migration (the table empty), the next writer waits LAKE_MIGRATION_WAIT_S and migrates itself."""
    from equal_dagster.core import store as store_module
    from equal_dagster.core.store import connect_lake

    lake = postgres.new_lake(tmp_path / "lake")
    conn = connect_lake(lake)  # a writer that claimed the schema and died
    conn.execute("CREATE TABLE schema_version (version INTEGER, applied_at TIMESTAMP NOT NULL)")
    conn.close()
    monkeypatch.setattr(store_module, "LAKE_MIGRATION_WAIT_S", 0.3)
    with Store.open(lake) as store:
        assert store.schema_version() == SCHEMA_VERSION
        assert store.conn.execute("SELECT count(*) FROM schema_version").fetchone()[0] == SCHEMA_VERSION
    with Store.open(lake) as again:  # an existing store: opened at once, nothing to wait for
        assert again.schema_version() == SCHEMA_VERSION


def test_a_postgres_catalog_is_reflected_only_in_ducklakes_schema(postgres, tmp_path):
    """The postgres extension reads the columns of every schema it is given on each open: told DuckLake's schema, it
    leaves the others of a shared database (another tenant's tables, pg_catalog's 139) alone."""
    from equal_dagster.core.store import LAKE_METADATA_CATALOG, LAKE_POSTGRES_SCHEMA, _load_extension

    lake = postgres.new_lake(tmp_path / "lake")
    with duckdb.connect() as admin:
        _load_extension(admin, "postgres")
        admin.execute(f"ATTACH '{lake.catalog.removeprefix('postgres:')}' AS db (TYPE postgres)")
        admin.execute("CALL postgres_execute('db', 'CREATE SCHEMA tenant; CREATE TABLE tenant.orders (id INT)')")
    with Store.open(lake) as store:
        assert store.conn.execute(
            f"SELECT count(*) FROM {LAKE_METADATA_CATALOG}.{LAKE_POSTGRES_SCHEMA}.ducklake_snapshot").fetchone()[0] >= 1
        for other in ("tenant.orders", "pg_catalog.pg_class"):
            with pytest.raises(duckdb.CatalogException):
                store.conn.execute(f"SELECT count(*) FROM {LAKE_METADATA_CATALOG}.{other}")


def test_the_known_extension_digests_are_the_pinned_wheels_files_and_duckdb_accepts_their_signatures(monkeypatch,
                                                                                                     tmp_path):
    """SIGNED_EXTENSION_SHA256 holds the SHA-256 of the extension files in the pinned duckdb-extension-* wheels (the
    files duckdb_extensions.import_extension installs, here into an empty home), files that DuckDB's own signature
    check accepts (LOAD on a plain connection checks it). On moving the pins, this names the digests to write there."""
    from importlib.resources import files

    from equal_dagster.core.store import (
        SIGNED_EXTENSION_PLATFORM, SIGNED_EXTENSION_SHA256, _extension_files, _load_extension, _sha256,
    )

    if duckdb.execute("PRAGMA platform").fetchone()[0] != SIGNED_EXTENSION_PLATFORM:
        pytest.skip(f"the known digests are {SIGNED_EXTENSION_PLATFORM}'s; elsewhere DuckDB checks each signature")
    monkeypatch.setenv("HOME", str(tmp_path))
    digests = {}
    for name in ("ducklake", "postgres", "sqlite", "httpfs"):
        with duckdb.connect() as conn:
            _load_extension(conn, name)  # DuckDB's check, on a connection that allows signed extensions only
            assert conn.execute("SELECT current_setting('allow_unsigned_extensions')").fetchone()[0] is False
        (installed,) = _extension_files([name])
        assert installed.is_relative_to(tmp_path)
        wheel = Path(str(files(f"duckdb_extension_{name}"))) / "extensions" / f"v{duckdb.__version__}"
        digest = _sha256(wheel / f"{name}.duckdb_extension")
        assert _sha256(installed) == digest
        digests[digest] = installed.name.removesuffix(".duckdb_extension")
    assert digests == SIGNED_EXTENSION_SHA256, f"duckdb {duckdb.__version__}'s files: {digests}"


def _file_lake(tmp_path: Path) -> LakeLocation:
    return LakeLocation.parse(f"ducklake:duckdb:{tmp_path / 'catalog.ducklake'}", str(tmp_path / "data"))


def _extension_settings(conn: duckdb.DuckDBPyConnection) -> tuple:
    return conn.execute("SELECT current_setting('allow_unsigned_extensions'), "
                        "current_setting('autoload_known_extensions')").fetchone()


def _home_with_ducklake(monkeypatch, home: Path, changed: bool) -> Path:
    """A new home (HOME) whose DuckDB extension folder holds the ducklake wheel's file, one byte changed or not."""
    from equal_dagster.core.store import _extension_files, _load_extension

    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    with duckdb.connect() as conn:
        _load_extension(conn, "ducklake")  # installed from the wheel, DuckDB's check
    (installed,) = _extension_files(["ducklake"])
    assert installed.is_relative_to(home)
    if changed:
        data = bytearray(installed.read_bytes())
        data[len(data) // 2] ^= 0xFF  # in the middle of the library: the signature at the end stays
        installed.unlink()  # a new file, not the one this process has loaded
        installed.write_bytes(data)
    return installed


def test_known_signed_extension_files_load_without_a_second_check_and_nothing_autoloads(monkeypatch, tmp_path):
    from equal_dagster.core.store import SIGNED_EXTENSION_PLATFORM, _known_signed, connect_lake

    _home_with_ducklake(monkeypatch, tmp_path / "home", changed=False)
    known = duckdb.execute("PRAGMA platform").fetchone()[0] == SIGNED_EXTENSION_PLATFORM  # elsewhere DuckDB checks
    lake = _file_lake(tmp_path)
    conn = connect_lake(lake)
    assert _extension_settings(conn) == ((True, False) if known else (False, True))
    conn.execute("CREATE TABLE t AS SELECT 1 AS x")
    conn.close()
    with connect_lake(lake, read_only=True) as again:
        assert again.execute("SELECT x FROM t").fetchall() == [(1,)]
    # data on a store httpfs does not serve, or a store whose data path only its catalog knows, may need an extension
    # DuckDB would autoload: DuckDB's checks stay
    assert _known_signed(lake) == known
    assert not _known_signed(replace(lake, data_path="az://container/l/"))
    assert not _known_signed(replace(lake, data_path=None))
    with connect_lake(replace(lake, data_path=None), read_only=True) as old:
        assert _extension_settings(old) == (False, True) and old.execute("SELECT x FROM t").fetchall() == [(1,)]


def test_a_changed_extension_file_goes_through_duckdbs_check_and_fails_it(monkeypatch, tmp_path):
    from equal_dagster.core.store import connect_lake

    _home_with_ducklake(monkeypatch, tmp_path / "home", changed=True)
    with pytest.raises(StoreError, match="signature is either missing or invalid"):
        connect_lake(_file_lake(tmp_path))
