import duckdb
import polars as pl
import pytest

from equal_dagster.core.store import SCHEMA_VERSION, TABLES, Store, StoreError, table_frame
from datetime import datetime


def doc_rows(crawl: str, ids: list[str], text: str = "t") -> pl.DataFrame:
    n = len(ids)
    return table_frame("documents", {
        "doc_id": ids, "crawl_id": [crawl] * n, "source_file": ["f.jsonl"] * n, "line_no": list(range(1, n + 1)),
        "url": [None] * n, "text": [f"{text} {i}" for i in ids], "n_chars": [3] * n, "content_hash": ids,
        "ingested_at": [datetime(2026, 1, 1)] * n,
    })


def test_open_creates_every_table_and_records_the_version(store_at):
    with Store.open(store_at) as store:
        assert store.schema_version() == SCHEMA_VERSION
        assert set(store.table_row_counts()) == set(TABLES)
        assert list(store.column_types("documents")) == list(TABLES["documents"])


def test_reopening_does_not_migrate_again(store_at):
    for _ in range(2):
        with Store.open(store_at) as store:
            assert store.conn.execute("SELECT count(*) FROM schema_version").fetchone()[0] == SCHEMA_VERSION


def test_read_only_open_refuses_missing_or_old_store_and_writes(tmp_path):
    with pytest.raises(StoreError, match="no store at"):
        with Store.open(tmp_path / "missing.duckdb", read_only=True):
            pass
    conn = duckdb.connect(str(tmp_path / "old.duckdb"))
    conn.execute("CREATE TABLE unrelated (x INT)")
    conn.close()
    with pytest.raises(StoreError, match="schema version 0"):
        with Store.open(tmp_path / "old.duckdb", read_only=True):
            pass
    with Store.open(tmp_path / "s.duckdb"):
        pass
    with Store.open(tmp_path / "s.duckdb", read_only=True) as store:
        with pytest.raises(StoreError, match="read-only"):
            with store.replace_partition("crawl_id", "c1", ["documents"]):
                pass


def test_newer_store_is_refused(store_at):
    with Store.open(store_at) as store:
        store.conn.execute("INSERT INTO schema_version VALUES (?, now())", [SCHEMA_VERSION + 1])
    with pytest.raises(StoreError, match="newer than this code"):
        with Store.open(store_at):
            pass


def test_replace_partition_replaces_only_its_partition(store_at):
    with Store.open(store_at) as store:
        for crawl, ids in [("c1", ["a", "b"]), ("c2", ["c"])]:
            with store.replace_partition("crawl_id", crawl, ["documents"]) as writer:
                writer.insert("documents", doc_rows(crawl, ids))
        with store.replace_partition("crawl_id", "c1", ["documents"]) as writer:
            writer.insert("documents", doc_rows("c1", ["a", "d"], text="new"))
        docs = store.documents()
        assert docs["doc_id"].to_list() == ["a", "d", "c"]
        assert docs.filter(pl.col("doc_id") == "a")["text"].item() == "new a"


def test_exception_in_the_middle_of_a_write_leaves_previous_rows(store_at):
    with Store.open(store_at) as store:
        with store.replace_partition("crawl_id", "c1", ["documents"]) as writer:
            writer.insert("documents", doc_rows("c1", ["a", "b"]))
        before = store.documents()
        with pytest.raises(RuntimeError, match="crash"):
            with store.replace_partition("crawl_id", "c1", ["documents"]) as writer:
                writer.insert("documents", doc_rows("c1", ["x"], text="half"))
                raise RuntimeError("crash halfway")
        assert store.documents().equals(before)
    # and a reopened store sees the same
    with Store.open(store_at, read_only=True) as store:
        assert store.documents()["doc_id"].to_list() == ["a", "b"]


def test_writer_refuses_rows_of_another_partition_or_unknown_columns(store_at):
    with Store.open(store_at) as store:
        with pytest.raises(StoreError, match="must all have crawl_id = 'c1'"):
            with store.replace_partition("crawl_id", "c1", ["documents"]) as writer:
                writer.insert("documents", doc_rows("c2", ["a"]))
        with pytest.raises(StoreError, match="no column"):
            with store.replace_partition("crawl_id", "c1", ["documents"]) as writer:
                writer.insert("documents", doc_rows("c1", ["a"]).with_columns(pl.lit(1).alias("evil; DROP TABLE x")))
        with pytest.raises(StoreError, match="not partitioned"):
            with store.replace_partition("crawl_id", "c1", ["nope"]):
                pass
        assert store.documents().height == 0


def test_rows_of_several_tables_go_in_one_commit_and_a_refused_table_writes_none(store_at):
    from lake_writer import quarantined

    with Store.open(store_at) as store:
        with store.replace_partition("crawl_id", "c1", ["documents", "quarantine"]) as writer:
            before = store.snapshot_id()
            writer.insert_together({"documents": doc_rows("c1", ["a", "b"]), "quarantine": quarantined("c1")})
            if store.lake:  # one snapshot for both tables' rows
                assert store.snapshot_id() == before + 1
            with pytest.raises(StoreError, match="must all have crawl_id = 'c1'"):
                writer.insert_together({"documents": doc_rows("c1", ["c"]), "quarantine": quarantined("c2")})
            with pytest.raises(StoreError, match="not part of this partition write"):
                writer.insert_together({"documents": doc_rows("c1", ["d"]), "pages": doc_rows("c1", [])})
            assert writer.rows_inserted == {"documents": 2, "quarantine": 1}
        assert store.documents()["doc_id"].to_list() == ["a", "b"]
        assert store.conn.execute("SELECT count(*) FROM quarantine").fetchone()[0] == 1


def test_values_are_bound_not_spliced(store_at):
    hostile = "c1'; DROP TABLE documents; --"
    with Store.open(store_at) as store:
        with store.replace_partition("crawl_id", hostile, ["documents"]) as writer:
            writer.insert("documents", doc_rows(hostile, ["a"]))
        assert store.documents(hostile).height == 1
        assert store.existing_documents(["a"], ["zz' OR 1=1 --"])["doc_id"].to_list() == ["a"]


def rows_stored(store, table="documents") -> int:
    return store.conn.execute(f"SELECT count(*) FROM {table}_rows").fetchone()[0]


def test_new_rows_are_invisible_until_the_swap_and_old_ones_are_deleted(store_at):
    with Store.open(store_at) as store:
        with store.replace_partition("crawl_id", "c1", ["documents"]) as writer:
            writer.insert("documents", doc_rows("c1", ["a"]))
            assert store.documents().height == 0  # written, not yet visible
            assert writer.existing_documents(["a"], [])["doc_id"].to_list() == ["a"]  # but seen by this write
        assert store.documents()["doc_id"].to_list() == ["a"]
        with store.replace_partition("crawl_id", "c1", ["documents"]) as writer:
            writer.insert("documents", doc_rows("c1", ["a", "b"], text="v2"))
            assert store.documents()["text"].to_list() == ["t a"]
        assert store.documents()["text"].to_list() == ["v2 a", "v2 b"]
        assert rows_stored(store) == 2  # the replaced write's rows are gone
        with pytest.raises(RuntimeError):
            with store.replace_partition("crawl_id", "c1", ["documents"]) as writer:
                writer.insert("documents", doc_rows("c1", ["z"]))
                raise RuntimeError("boom")
        assert rows_stored(store) == 2


def test_rows_of_a_write_cut_off_by_a_crash_are_deleted_on_the_next_open(tmp_path):
    with Store.open(tmp_path / "s.duckdb") as store:
        with store.replace_partition("crawl_id", "c1", ["documents"]) as writer:
            writer.insert("documents", doc_rows("c1", ["a"]))
        # what a process killed mid-write leaves: rows under a write id that never became current
        orphan = doc_rows("c1", ["x", "y"]).with_columns(pl.lit("dead-write").alias("write_id"))
        store.conn.register("orphan", orphan.to_arrow())
        store.conn.execute("INSERT INTO documents_rows BY NAME SELECT * FROM orphan")
        assert store.documents()["doc_id"].to_list() == ["a"]
    with Store.open(tmp_path / "s.duckdb") as store:
        assert store.documents()["doc_id"].to_list() == ["a"]
        assert rows_stored(store) == 1


def test_only_partitioned_tables_by_their_column(store_at):
    with Store.open(store_at) as store:
        with pytest.raises(StoreError, match="not partitioned by 'round_id'"):
            with store.replace_partition("round_id", "r1", ["documents"]):
                pass


def test_a_version_1_store_is_migrated_to_the_ledger_columns(tmp_path):
    path = tmp_path / "v1.duckdb"
    with Store.open(path):
        pass
    # turn it back into what version 1 created
    conn = duckdb.connect(str(path))
    conn.execute("DROP VIEW extractions")
    for column in ("strategy", "n_qa", "retries", "cache_hit", "tokens_counted_by", "calls"):
        conn.execute(f"ALTER TABLE extractions_rows DROP COLUMN {column}")
    for column in ("prompt_version", "latency_s"):
        conn.execute(f"ALTER TABLE llm_cache DROP COLUMN {column}")
    v1_columns = [c for c in TABLES["extractions"] if c not in ("strategy", "n_qa", "retries", "cache_hit", "tokens_counted_by", "calls")]
    conn.execute(f"CREATE VIEW extractions AS SELECT {', '.join(v1_columns)} FROM extractions_rows")
    conn.execute("DELETE FROM schema_version WHERE version > 1")
    conn.close()
    with pytest.raises(StoreError, match="schema version 1"):
        with Store.open(path, read_only=True):
            pass
    with Store.open(path) as store:
        assert store.schema_version() == SCHEMA_VERSION
        assert list(store.column_types("extractions")) == list(TABLES["extractions"])
        assert list(store.column_types("llm_cache")) == list(TABLES["llm_cache"])


def test_llm_cache_keeps_the_first_response_for_a_key(store_at):
    from equal_dagster.core.extraction.cache import CachedResponse, StoreResponseCache

    with Store.open(store_at) as store:
        cache = StoreResponseCache(store)
        cache.put_many([CachedResponse("k1", "openai", "m", "equal-qa/v1", "first", 10, 5, 0.1)])
        cache.put_many([CachedResponse("k1", "openai", "m", "equal-qa/v1", "second", 1, 1, 0.1),
                        CachedResponse("k2", "openai", "m", "equal-qa/v1", "'); DROP TABLE llm_cache; --", None, None, None)])
        cached = cache.get_many(["k1", "k2", "k3"])
        assert cached["k1"].response == "first" and cached["k1"].tokens_in == 10
        assert cached["k2"].response == "'); DROP TABLE llm_cache; --" and "k3" not in cached
        assert store.llm_cache_size() == 2


def test_a_version_2_store_gets_embeddings_as_a_plain_table(tmp_path):
    path = tmp_path / "v2.duckdb"
    with Store.open(path):
        pass
    conn = duckdb.connect(str(path))  # back to version 2's layout: a view over embeddings_rows, with one vector
    conn.execute("DROP TABLE embeddings")
    conn.execute("CREATE TABLE embeddings_rows (doc_id VARCHAR, embedder_id VARCHAR, crawl_id VARCHAR, vector FLOAT[], "
                 "embedded_at TIMESTAMP, write_id VARCHAR)")
    conn.execute("CREATE VIEW embeddings AS SELECT doc_id, embedder_id, crawl_id, vector, embedded_at FROM embeddings_rows "
                 "WHERE write_id IN (SELECT write_id FROM partition_writes WHERE table_name = 'embeddings')")
    conn.execute("INSERT INTO embeddings_rows VALUES ('d1', 'e1', 'c', [0.5, 0.5], now(), 'w1'), ('d2', 'e1', 'c', [1.0], now(), 'gone')")
    conn.execute("INSERT INTO partition_writes VALUES ('embeddings', 'c', 'w1', now())")
    conn.execute("DELETE FROM schema_version WHERE version > 2")
    conn.close()
    with Store.open(path) as store:
        assert store.schema_version() == SCHEMA_VERSION
        assert store.conn.execute("SELECT doc_id, vector FROM embeddings").fetchall() == [("d1", [0.5, 0.5])]
        assert store.conn.execute("SELECT count(*) FROM partition_writes WHERE table_name = 'embeddings'").fetchone() == (0,)
        with pytest.raises(duckdb.ConstraintException):
            store.conn.execute("INSERT INTO embeddings VALUES ('d1', 'e1', 'c', [0.1], now())")


def test_vectors_staged_sampled_and_labels_loaded_from_shards_as_the_ray_engine_needs(store_at, tmp_path):
    """The store's side of clustering on Ray, on both backends: the rows at sampled positions are those of the full
    matrix; vectors stage to Parquet (only those outside a clustering when asked); label shards load
    renumbered, one row per doc_id even when a batch was written twice; the samples per cluster are the same drawn
    from memory or from shards."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    ids = [f"d{i:03d}" for i in range(30)]
    vectors = np.random.default_rng(0).normal(size=(30, 4)).astype(np.float32)
    shuffled = np.random.default_rng(1).permutation(30)  # stored out of doc_id order
    with Store.open(store_at) as store:
        with store.replace_partition("crawl_id", "c1", ["documents"]) as writer:
            writer.insert("documents", doc_rows("c1", [ids[i] for i in shuffled]))
        store.insert_embeddings(pl.DataFrame({
            "doc_id": [ids[i] for i in shuffled], "embedder_id": ["e"] * 30, "crawl_id": ["c1"] * 30,
            "vector": vectors[shuffled].tolist(), "embedded_at": [datetime(2026, 1, 1)] * 30},
            schema_overrides={"vector": pl.List(pl.Float32)}))
        assert store.embedding_shape("e") == (30, 4)
        np.testing.assert_array_equal(store.embedding_rows_at("e", [0, 7, 29]), vectors[[0, 7, 29]])
        np.testing.assert_array_equal(store.embedding_rows_at("e", [29, 3]), store.embedding_matrix("e")[1][[29, 3]])
        assert store.stage_vectors("e", tmp_path / "staged") == 30
        staged = pq.read_table(tmp_path / "staged")
        assert sorted(staged.column("doc_id").to_pylist()) == ids
        # labels 0, 2, 3 in the shards (centroid 1 empty); the first shard's batch was written twice
        labels = [0 if i < 10 else 2 if i < 20 else 3 for i in range(30)]
        shard = lambda rows: pa.table({"doc_id": [ids[i] for i in rows], "cluster_id": pa.array([labels[i] for i in rows], pa.int32())})
        files = [str(tmp_path / f"s{n}.parquet") for n in range(3)]
        for path, rows in zip(files, (range(15), range(15), range(15, 30))):
            pq.write_table(shard(rows), path)
        renumbered = [0, -1, 1, 2]
        with store.replace_partition("clustering_id", "k1", ["clusters"]) as writer:
            writer.insert_cluster_labels(files, datetime(2026, 1, 2), "clustered", renumbered)
        loaded = store.clusters("k1")
        assert loaded["doc_id"].to_list() == ids
        assert loaded["cluster_id"].to_list() == [renumbered[label] for label in labels]
        assert set(loaded["assignment"]) == {"clustered"}
        assert store.stage_vectors("e", tmp_path / "outside", outside_clustering="k1") == 0
        from_shards = store.cluster_samples(4, 7, files=files, renumbered=renumbered)
        from_memory = store.cluster_samples(4, 7, labels=(ids, [renumbered[label] for label in labels]))
        assert from_shards == from_memory and sorted(from_shards) == [0, 1, 2]
        assert all(len(members) == 4 for members in from_shards.values())
        assert store.cluster_samples(4, 8, files=files, renumbered=renumbered) != from_shards  # the seed draws
