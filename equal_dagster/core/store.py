"""The DuckDB store: the one module that owns the schema and every SQL statement.

Rules this module keeps (DESIGN.md, "The store"):

* The schema is created or migrated when a store is opened read-write; a ``schema_version`` table records
  which migrations ran. A read-only open refuses a store that is missing or older than this code.
* A partitioned table (documents, quarantine, embeddings, clusters, rounds, extractions, qa_pairs) keeps
  its rows in ``<table>_rows``, each row tagged with the ``write_id`` of the write that made it; the table
  itself is a view of the rows of each partition's current write (``partition_writes``). A partition (one
  crawl, one round) is written by :meth:`Store.replace_partition`: new rows are appended batch by batch
  under a new write id, committed as they go and invisible (so memory stays bounded however large the
  partition); then one tiny transaction makes the new write current, and the old write's rows are deleted.
  An exception anywhere, or a crash, leaves the old rows the visible ones; rows of a write that never
  became current are deleted the next time the store is opened read-write.
* Every value reaches DuckDB as a bound parameter or as a registered Arrow table; table and column names come
  only from :data:`TABLES`, never from data.
* Tables cross into the rest of the code as polars DataFrames.

Two backends, one schema and one set of SQL statements (DESIGN.md, "Scaling out"):

* a DuckDB file (the default, ``$EQUAL_HOME/equal.duckdb``): one writing process at a time;
* a DuckLake lakehouse (:class:`LakeLocation`, chosen with ``EQUAL_STORE=ducklake:<catalog>`` and
  ``EQUAL_STORE_DATA=<folder or s3://...>``): a catalog in Postgres (or a SQLite file), data as Parquet files, many
  writing processes on many machines, and a snapshot after every commit.

What DuckLake (1.5.5) lacks, and how this module makes up for it, all here and nowhere else: no PRIMARY KEY/UNIQUE
constraints (created without them; ``ON CONFLICT DO NOTHING`` becomes an insert of the rows whose key is absent), no
RETURNING on INSERT/UPDATE/DELETE (counted in the same transaction instead, on both backends), no indexes or
sequences (none used). Concurrent writers conflict at commit when one deletes from a table another inserted into
(DuckLake checks per table): such a transient conflict is retried with backoff (:data:`LAKE_RETRY_S`); a partition
write appends its rows in transactions of their own (which retry alone) and makes them current in one small
transaction, so two writers of different partitions never lose work, while two writers replacing the same partition
at once end with one winner and a :class:`PartitionConflict` naming the table and partition for the other. Rows left
behind by a writer that was killed stay invisible; on DuckLake they are deleted by
:meth:`Store.delete_unfinished_writes` (run it while no writer is active), on a DuckDB file at the next read-write
open as before.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import logging
import math
import os
import random
import re
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pyarrow as pa

SCHEMA_VERSION = 8

log = logging.getLogger(__name__)

# Table name -> (column name -> DuckDB type), in column order; and the primary key.
TABLES: dict[str, dict[str, str]] = {
    "documents": {
        "doc_id": "VARCHAR NOT NULL",
        "crawl_id": "VARCHAR NOT NULL",
        "source_file": "VARCHAR NOT NULL",
        "line_no": "BIGINT NOT NULL",
        "url": "VARCHAR",
        "text": "VARCHAR NOT NULL",
        "n_chars": "INTEGER NOT NULL",
        "content_hash": "VARCHAR NOT NULL",
        "ingested_at": "TIMESTAMP NOT NULL",
        # schema version 7 (issue 16): the page's title (web pages), the language identified (ISO 639-1; "" unknown)
        "title": "VARCHAR",
        "language": "VARCHAR",
    },
    # The raw HTML of web pages (schema version 7), kept for the rules backend's harvest of marked-up Q&A.
    "pages": {
        "doc_id": "VARCHAR NOT NULL",
        "crawl_id": "VARCHAR NOT NULL",
        "html": "VARCHAR NOT NULL",
    },
    "quarantine": {
        "crawl_id": "VARCHAR NOT NULL",
        "source_file": "VARCHAR NOT NULL",
        "line_no": "BIGINT NOT NULL",
        "reason": "VARCHAR NOT NULL",
        "detail": "VARCHAR",
        "raw_excerpt": "VARCHAR",
        "quarantined_at": "TIMESTAMP NOT NULL",
    },
    "embeddings": {
        "doc_id": "VARCHAR NOT NULL",
        "embedder_id": "VARCHAR NOT NULL",
        "crawl_id": "VARCHAR NOT NULL",
        "vector": "FLOAT[] NOT NULL",
        "embedded_at": "TIMESTAMP NOT NULL",
    },
    "clusters": {
        "doc_id": "VARCHAR NOT NULL",
        "clustering_id": "VARCHAR NOT NULL",
        "cluster_id": "INTEGER NOT NULL",
        "probability": "DOUBLE",
        "joined_as_noise": "BOOLEAN NOT NULL DEFAULT FALSE",
        "assigned_at": "TIMESTAMP NOT NULL",
        # schema version 3: clustered | noise_joined | new_document
        "assignment": "VARCHAR",
    },
    "cluster_summaries": {
        "clustering_id": "VARCHAR NOT NULL",
        "cluster_id": "INTEGER NOT NULL",
        "embedder_id": "VARCHAR NOT NULL",
        "method": "VARCHAR NOT NULL",
        "size": "BIGINT NOT NULL",
        "centroid": "FLOAT[] NOT NULL",
        "top_terms": "JSON",
        "sample_lines": "JSON",
        "params": "JSON",
        "created_at": "TIMESTAMP NOT NULL",
        # schema version 6: the cluster as a Gaussian (mean and per-dimension standard deviation of its vectors)
        "mean": "FLOAT[]",
        "spread": "FLOAT[]",
    },
    "rounds": {
        "round_id": "VARCHAR NOT NULL",
        "round_no": "INTEGER NOT NULL",
        "policy": "VARCHAR NOT NULL",
        "seed": "BIGINT",
        "docs_spent": "BIGINT NOT NULL DEFAULT 0",
        "tokens_spent": "BIGINT NOT NULL DEFAULT 0",
        "arms": "JSON",
        "rewards": "JSON",
        "timings": "JSON",
        "dagster_run_id": "VARCHAR",
        "finished_at": "TIMESTAMP NOT NULL",
        # schema version 4: the bandit's settings, and the clustering and embedder a round was played on
        "config": "JSON",
        "clustering_id": "VARCHAR",
        "embedder_id": "VARCHAR",
    },
    "extractions": {
        "doc_id": "VARCHAR NOT NULL",
        "round_id": "VARCHAR NOT NULL",
        "backend": "VARCHAR NOT NULL",
        "model": "VARCHAR",
        "prompt_version": "VARCHAR",
        "cache_key": "VARCHAR",
        "tokens_in": "BIGINT",
        "tokens_out": "BIGINT",
        "latency_s": "DOUBLE",
        "status": "VARCHAR NOT NULL",
        "error": "VARCHAR",
        "dagster_run_id": "VARCHAR",
        "extracted_at": "TIMESTAMP NOT NULL",
        # schema version 2: the ledger
        "strategy": "VARCHAR",
        "n_qa": "INTEGER",
        "retries": "INTEGER",
        "cache_hit": "BOOLEAN",
        "tokens_counted_by": "VARCHAR",
        "calls": "JSON",
    },
    "qa_pairs": {
        "qa_id": "VARCHAR NOT NULL",
        "doc_id": "VARCHAR NOT NULL",
        "round_id": "VARCHAR NOT NULL",
        "question": "VARCHAR NOT NULL",
        "answer": "VARCHAR NOT NULL",
        "extractor": "VARCHAR NOT NULL",
        "quality": "JSON",
        "quality_score": "DOUBLE",
        "kept": "BOOLEAN",
        "drop_reason": "VARCHAR",
        "dagster_run_id": "VARCHAR",
        "created_at": "TIMESTAMP NOT NULL",
    },
    "llm_cache": {
        "cache_key": "VARCHAR NOT NULL",
        "backend": "VARCHAR NOT NULL",
        "model": "VARCHAR",
        "response": "VARCHAR NOT NULL",
        "tokens_in": "BIGINT",
        "tokens_out": "BIGINT",
        "created_at": "TIMESTAMP NOT NULL",
        # schema version 2
        "prompt_version": "VARCHAR",
        "latency_s": "DOUBLE",
    },
    # schema version 4: vectors of texts other than documents (QA pairs, reference pairs), keyed by content
    "text_embeddings": {
        "text_hash": "VARCHAR NOT NULL",
        "embedder_id": "VARCHAR NOT NULL",
        "vector": "FLOAT[] NOT NULL",
        "created_at": "TIMESTAMP NOT NULL",
    },
    "models": {
        "model_id": "VARCHAR NOT NULL",
        "base_model": "VARCHAR NOT NULL",
        "dataset_hash": "VARCHAR",
        "training_config": "JSON",
        "path": "VARCHAR NOT NULL",
        "train_loss": "DOUBLE",
        "created_at": "TIMESTAMP NOT NULL",
    },
    # schema version 5: which QA pairs each model was trained on (lineage from a pair to its models)
    "model_training_pairs": {
        "model_id": "VARCHAR NOT NULL",
        "qa_id": "VARCHAR NOT NULL",
    },
    "eval_scores": {
        "model_id": "VARCHAR NOT NULL",
        "task": "VARCHAR NOT NULL",
        "metric": "VARCHAR NOT NULL",
        "value": "DOUBLE",
        "stderr": "DOUBLE",
        "n": "BIGINT",
        "evaluated_at": "TIMESTAMP NOT NULL",
    },
}

# What the columns users read hold (the column schemas the Dagster UI shows).
COLUMN_DESCRIPTIONS: dict[str, dict[str, str]] = {
    "documents": {
        "doc_id": "the row's id field, a WARC record's id, or derived from the source and the text's hash",
        "crawl_id": "the crawl (a `crawls` partition) the document came from",
        "source_file": "the file in the crawl folder, relative to it",
        "line_no": "the row's line (JSONL), row number (Parquet) or record number (WARC) in its file",
        "url": "the page's URL, when the row or the WARC record has one",
        "text": "the normalized text (NFC, LF line breaks, spaces folded; a web page's main text)",
        "n_chars": "characters of the text",
        "content_hash": "BLAKE2b of the normalized text: exact duplicates share it",
        "ingested_at": "when the crawl was ingested (UTC)",
        "title": "a web page's <title>",
        "language": "ISO 639-1 code identified from the text ('' when too short to tell)",
    },
    "qa_pairs": {
        "qa_id": "the pair's id: trace it with `equal lineage QA_ID`",
        "doc_id": "the document it was extracted from",
        "round_id": "the round that extracted it (round-0: the warm-up)",
        "question": "the question (instruction)",
        "answer": "the answer (response)",
        "extractor": "backend, model and prompt version that wrote it",
        "quality": "InstructMining's indicators and the filters' notes (JSON), set by qa_dataset",
        "quality_score": "the InstructMining rule's score, set by qa_dataset",
        "kept": "whether qa_dataset kept it (null: not scored yet)",
        "drop_reason": "why qa_dataset dropped it",
        "dagster_run_id": "the Dagster run that wrote it",
        "created_at": "when it was written (UTC)",
    },
}


def column_schema(table: str, columns: dict[str, str]) -> list[tuple[str, str, str]]:
    """(name, type, description) of ``columns`` (name -> type) of ``table``."""
    described = COLUMN_DESCRIPTIONS.get(table, {})
    return [(name, sql_type, described.get(name, "")) for name, sql_type in columns.items()]


PRIMARY_KEYS: dict[str, tuple[str, ...]] = {
    "documents": ("doc_id",),
    "pages": ("doc_id",),
    "quarantine": ("crawl_id", "source_file", "line_no"),
    "embeddings": ("doc_id", "embedder_id"),
    "clusters": ("doc_id", "clustering_id"),
    "cluster_summaries": ("clustering_id", "cluster_id"),
    "rounds": ("round_id",),
    "extractions": ("doc_id", "round_id"),
    "qa_pairs": ("qa_id",),
    "llm_cache": ("cache_key",),
    "text_embeddings": ("text_hash", "embedder_id"),
    "models": ("model_id",),
    "model_training_pairs": ("model_id", "qa_id"),
    "eval_scores": ("model_id", "task", "metric"),
}


# Tables written a partition at a time, and their partition column.
# Embeddings are not: vectors are keyed by (doc_id, embedder_id) and appended batch by batch, each batch complete
# in itself, so an interrupted embedding run resumes where it stopped (schema version 3).
PARTITIONED: dict[str, str] = {
    "documents": "crawl_id",
    "pages": "crawl_id",
    "quarantine": "crawl_id",
    "clusters": "clustering_id",
    "cluster_summaries": "clustering_id",
    "rounds": "round_id",
    "extractions": "round_id",
    "qa_pairs": "round_id",
}


def _rows_table(table: str) -> str:
    return f"{table}_rows" if table in PARTITIONED else table


def _view_sql(table: str) -> str:
    return (
        f"CREATE OR REPLACE VIEW {table} AS SELECT {', '.join(TABLES[table])} FROM {table}_rows "
        f"WHERE write_id IN (SELECT write_id FROM partition_writes WHERE table_name = '{table}')"
    )


def _add_columns_sql(table: str, columns: Sequence[str]) -> list[str]:
    """Columns added to a table after version 1 (IF NOT EXISTS: a store created at a later version has them)."""
    statements = [
        f"ALTER TABLE {_rows_table(table)} ADD COLUMN IF NOT EXISTS {c} {TABLES[table][c].replace(' NOT NULL', '')}"
        for c in columns
    ]
    return statements + ([_view_sql(table)] if table in PARTITIONED else [])


def _create_table_sql(table: str) -> list[str]:
    columns = ",\n  ".join(f"{name} {sql_type}" for name, sql_type in TABLES[table].items())
    if table not in PARTITIONED:
        key = ", ".join(PRIMARY_KEYS[table])
        return [f"CREATE TABLE IF NOT EXISTS {table} (\n  {columns},\n  PRIMARY KEY ({key})\n)"]
    # Old and new writes of a partition coexist until the swap: uniqueness of the key holds in the view,
    # kept by the writers (ingestion refuses duplicate ids), not by a constraint on the rows table.
    return [
        f"CREATE TABLE IF NOT EXISTS {table}_rows (\n  {columns},\n  write_id VARCHAR NOT NULL\n)",
        _view_sql(table),
    ]


# Version -> statements that bring a store from the version before to this one. Append; never edit.
MIGRATIONS: dict[int, list[Any]] = {  # SQL strings, or functions of the connection
    1: [
        "CREATE TABLE IF NOT EXISTS partition_writes (table_name VARCHAR NOT NULL, partition_value VARCHAR NOT NULL, "
        "write_id VARCHAR NOT NULL, written_at TIMESTAMP NOT NULL, PRIMARY KEY (table_name, partition_value))",
    ]
    + [statement for table in TABLES for statement in _create_table_sql(table)],
    # The extraction ledger (issue 3): how each extraction was made, and what each cached response cost.
    2: _add_columns_sql("extractions", ["strategy", "n_qa", "retries", "cache_hit", "tokens_counted_by", "calls"])
    + _add_columns_sql("llm_cache", ["prompt_version", "latency_s"]),
    # Embeddings as a plain table; clusters say how each document joined; per-cluster summaries with centroids.
    3: [lambda conn: _embeddings_as_plain_table(conn)]
    + _add_columns_sql("clusters", ["assignment"])
    + _create_table_sql("cluster_summaries"),
    # Bandit rounds (issue 5): each round records its settings, clustering and embedder; QA and reference vectors.
    4: _add_columns_sql("rounds", ["config", "clustering_id", "embedder_id"]) + _create_table_sql("text_embeddings"),
    # Fine-tuned models (issue 6): the pairs each was trained on.
    5: _create_table_sql("model_training_pairs"),
    # Selection defaults (issue 13): clusters as Gaussians, for the bandit's neighbour sharing.
    6: _add_columns_sql("cluster_summaries", ["mean", "spread"]),
    # Web crawls (issue 16): pages' titles and languages; their raw HTML.
    7: _add_columns_sql("documents", ["title", "language"]) + _create_table_sql("pages"),
    # DuckLake (issue 18): one row every partition swap updates, so that concurrent swaps always conflict.
    8: ["CREATE TABLE IF NOT EXISTS partition_swaps (swaps BIGINT NOT NULL)",
        "INSERT INTO partition_swaps SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM partition_swaps)"],
}


def _embeddings_as_plain_table(conn: duckdb.DuckDBPyConnection) -> None:
    """Version 3: embeddings leave the partitioned layout (a view over embeddings_rows) for a plain table keyed by
    (doc_id, embedder_id). A store created at version 3 or later already has the table."""
    kind = conn.execute(
        "SELECT table_type FROM information_schema.tables WHERE table_name = 'embeddings'"
    ).fetchone()
    if kind and kind[0] == "VIEW":
        conn.execute("DROP VIEW embeddings")
        for statement in _create_table_sql("embeddings"):
            conn.execute(statement)
        columns = ", ".join(TABLES["embeddings"])
        conn.execute(
            f"INSERT INTO embeddings ({columns}) SELECT {columns} FROM embeddings_rows WHERE write_id IN "
            "(SELECT write_id FROM partition_writes WHERE table_name = 'embeddings') ON CONFLICT DO NOTHING"
        )
        conn.execute("DROP TABLE embeddings_rows")
        conn.execute("DELETE FROM partition_writes WHERE table_name = 'embeddings'")


class StoreMemoryError(RuntimeError):
    """DuckDB ran out of the memory a write was limited to (Store.bounded_memory)."""


class StoreError(RuntimeError):
    """A store that cannot be used as asked: missing, too old, too new, not a DuckDB file, in a folder that cannot
    be written, or a write to a read-only one. ``exit_code`` 2: the user's to fix."""

    exit_code = 2


class StoreBusy(StoreError):
    """Another process holds the store's file for writing (DuckDB admits one writing process)."""

    exit_code = 1


_LOCK_HOLDER = re.compile(r"Conflicting lock is held in (.+?) \(PID (\d+)\)")


def store_open_error(path: str | Path, exc: BaseException) -> StoreError | None:
    """The :class:`StoreError` that says in one line why DuckDB could not open ``path`` (None: not one we know)."""
    text = str(exc)
    if isinstance(exc, duckdb.IOException) and "Conflicting lock" in text:
        match = _LOCK_HOLDER.search(text)
        holder = "another process"
        if match:
            holder = f"process {match.group(2)} ({_command_of(int(match.group(2))) or match.group(1)})"
        return StoreBusy(f"the store {path} is busy: {holder} is writing to it; retry when it has finished "
                         "(if that process is gone, `equal recover` frees what it held)")
    if isinstance(exc, duckdb.IOException) and "not a valid DuckDB database file" in text:
        return StoreError(f"{path} is not a DuckDB store (the file exists but is not a DuckDB database): point "
                          "EQUAL_HOME (or --home) at an EQUAL home, or move that file away")
    if isinstance(exc, PermissionError) or "Permission denied" in text or "Read-only file system" in text \
            or "Operation not permitted" in text:
        return StoreError(f"cannot write the store {path}: {getattr(exc, 'strerror', None) or text.splitlines()[0]}; "
                          "EQUAL_HOME (or --home) must be a folder this user can write")
    return None


def _command_of(pid: int) -> str | None:
    try:
        import psutil

        return " ".join(psutil.Process(pid).cmdline()[:4]) or None
    except Exception:  # noqa: BLE001 - only for a friendlier message
        return None


def connect(path: str | Path, *, read_only: bool = False, wait_s: float = 0.0) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection to ``path``; while another process holds the file, retried for up to ``wait_s`` seconds.
    What cannot be opened raises a one-line :class:`StoreError` (see :func:`store_open_error`)."""
    deadline = time.monotonic() + wait_s
    delay = 0.1
    while True:
        try:
            if not read_only:
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            return duckdb.connect(str(path), read_only=read_only)
        except (duckdb.IOException, OSError) as exc:
            error = store_open_error(path, exc)
            if error is None:
                raise
            if not isinstance(error, StoreBusy) or time.monotonic() + delay > deadline:
                raise error from exc
            time.sleep(delay)
            delay = min(delay * 2, 2.0)


# -- DuckLake -------------------------------------------------------------------------------------------------
STORE_ENV = "EQUAL_STORE"  # ducklake:<catalog> (or a DuckDB file's path); unset: $EQUAL_HOME/equal.duckdb
STORE_DATA_ENV = "EQUAL_STORE_DATA"  # where a DuckLake store keeps its Parquet files: a folder, or s3://bucket/prefix/
LAKE_SCHEME = "ducklake:"
LAKE_CATALOG = "equal_lake"  # the name the lakehouse is attached under
LAKE_METADATA_CATALOG = f"__ducklake_metadata_{LAKE_CATALOG}"  # its catalog database, as DuckLake attaches it
# How long a statement or a transaction is retried against transient commit conflicts with other writers.
LAKE_RETRY_S = 60.0
# How long deleting invisible rows (a replaced write's, a failed write's) is retried before they are left to
# Store.delete_unfinished_writes: the write itself is done by then.
LAKE_CLEANUP_RETRY_S = 10.0
_LAKE_CATALOG_KINDS = {"postgres": "postgres", "sqlite": "sqlite", "duckdb": None}
_URL_DATA_PATH = re.compile(r"^[a-z][a-z0-9+.-]*://", re.IGNORECASE)


@dataclass(frozen=True)
class LakeLocation:
    """A store on DuckLake: ``catalog``, what follows ``ducklake:`` in DuckDB's ATTACH (``postgres:<libpq
    connection string>``, e.g. ``postgres:dbname=equal host=db.internal user=equal``, or ``sqlite:<file>``), and
    ``data_path``, where the Parquet files go (a local or shared folder, or ``s3://bucket/prefix/`` and the like).
    The catalog remembers the data path it was created with: later opens may leave it out."""

    catalog: str
    data_path: str | None = None

    @classmethod
    def parse(cls, location: str, data_path: str | None = None) -> LakeLocation:
        """``ducklake:<catalog>`` (the value of ``EQUAL_STORE``) and a data path (``EQUAL_STORE_DATA``)."""
        if not location.startswith(LAKE_SCHEME):
            raise StoreError(f"a DuckLake store is written ducklake:<catalog>, e.g. ducklake:postgres:dbname=equal "
                             f"host=127.0.0.1; got {redacted(location)!r}")
        catalog = location[len(LAKE_SCHEME):].strip()
        kind = catalog.split(":", 1)[0]
        if kind not in _LAKE_CATALOG_KINDS or ":" not in catalog:
            raise StoreError(f"unknown DuckLake catalog {redacted(catalog)!r}: use postgres:<connection string> "
                             "(several machines), sqlite:<file> (several processes) or duckdb:<file> (one process)")
        if data_path and not _URL_DATA_PATH.match(data_path):
            data_path = str(Path(data_path).expanduser().absolute()) + "/"
        return cls(catalog, data_path or None)

    @property
    def kind(self) -> str:
        """The catalog's database: postgres, sqlite or duckdb."""
        return self.catalog.split(":", 1)[0]

    @property
    def extensions(self) -> list[str]:
        kind = _LAKE_CATALOG_KINDS[self.kind]
        remote = self.data_path is not None and _URL_DATA_PATH.match(self.data_path) is not None
        return ["ducklake"] + ([kind] if kind else []) + (["httpfs"] if remote else [])

    def __str__(self) -> str:
        return f"{LAKE_SCHEME}{redacted(self.catalog)}" + (f" (data {self.data_path})" if self.data_path else "")


def store_location(default: str | Path) -> str | Path | LakeLocation:
    """Where the store is: ``EQUAL_STORE`` (a :class:`LakeLocation` with ``EQUAL_STORE_DATA``, or a DuckDB file),
    else ``default`` (the DuckDB file of the EQUAL home)."""
    chosen = os.environ.get(STORE_ENV, "").strip()
    if not chosen:
        return default
    if chosen.startswith(LAKE_SCHEME):
        return LakeLocation.parse(chosen, os.environ.get(STORE_DATA_ENV) or None)
    return Path(chosen).expanduser().absolute()  # the UI's run processes may start in another folder


def store_exists(location: str | Path | LakeLocation) -> bool:
    """Whether a store was created at ``location`` (a DuckLake store: its catalog answers, read-only)."""
    if isinstance(location, str) and location.startswith(LAKE_SCHEME):
        location = LakeLocation.parse(location, os.environ.get(STORE_DATA_ENV) or None)
    if not isinstance(location, LakeLocation):
        return Path(location).exists()
    if location.kind in ("sqlite", "duckdb"):  # a catalog file: its absence says it (each catalog words the error its own way)
        return Path(location.catalog.split(":", 1)[1]).expanduser().exists()
    try:
        connect_lake(location, read_only=True).close()
    except StoreError as exc:
        if str(exc).startswith("no store at"):
            return False
        raise
    return True


def redacted(text: str) -> str:
    """``text`` without a password: ``password=...`` of a libpq connection string, or ``user:...@`` of a URI (what a
    message may show of anything that could hold a store's connection string)."""
    text = re.sub(r"(password\s*=\s*)('[^']*'|[^\s'\"]+)", r"\1***", text, flags=re.IGNORECASE)
    return re.sub(r"(://[^:/@\s]+:)[^@\s]+@", r"\1***@", text)



def _literal(text: str) -> str:
    """A SQL string literal (ATTACH takes no bound parameters)."""
    return "'" + text.replace("'", "''") + "'"


def _load_extension(conn: duckdb.DuckDBPyConnection, name: str) -> None:
    """LOAD a DuckDB extension offline: installed already, else INSTALLed from the ``duckdb-extension-<name>`` wheel's
    file (``duckdb_extensions.import_extension``; a plain ``INSTALL <name>`` would need the internet)."""
    conn.execute("SET autoinstall_known_extensions = false")
    with contextlib.suppress(duckdb.Error):
        conn.execute(f"LOAD {name}")
        return
    try:
        import duckdb_extensions

        duckdb_extensions.import_extension(name, con=conn)
        conn.execute(f"LOAD {name}")
    except (ImportError, duckdb.Error) as exc:
        raise StoreError(f"the DuckDB extension {name!r} is not available for duckdb {duckdb.__version__}: "
                         f"pip install duckdb-extensions duckdb-extension-{name}=={duckdb.__version__} "
                         f"({str(exc).splitlines()[0]})") from exc


# DuckDB checks an extension's signature at every LOAD, hashing the whole file in its own code: 0.13-0.15 s of CPU for
# each of ducklake (36 MB) and postgres_scanner (42 MB), in every process that opens a DuckLake store (4 concurrent
# ingests on 2 cores: 0.04 of benchmarks/store.py's ratio). The files of the pinned duckdb-extension-* wheels, whose
# signatures DuckDB accepts (tests/test_store_lake.py checks both), are known here by their SHA-256: a process whose
# installed files hash (hashlib: OpenSSL, 0.03 s for both) to these loads them without DuckDB's own check, on a
# connection that autoloads nothing else. Any other bytes (another platform or version, a changed file) go through
# DuckDB's check.
SIGNED_EXTENSION_PLATFORM = "linux_amd64"  # the platform of the files below (duckdb 1.5.5); elsewhere DuckDB checks
SIGNED_EXTENSION_SHA256 = {
    "e51bf9e8d933d0e83780ae096455501b542cf962569a2ce5613532d702c08302": "ducklake",
    "b1ced4cfc6311313e117c2afb3eac76508718778dde0716421503c7dbfb5605c": "postgres_scanner",
    "693d2bf90779df23ca5ebe0688639b9adfc11c2d55ae3466b33e28be16afaa5e": "sqlite_scanner",
    "887c392b1e49128d11667c81e3698d8b00dfdeb456771acf66d05a0f74f7b7d8": "httpfs",
}
# Data path schemes the extensions DuckLake loads serve (httpfs's); another (az://, abfss://) needs an extension
# DuckDB autoloads, so such a store's connection keeps DuckDB's checks and autoloading.
_HTTPFS_SCHEMES = ("s3", "s3a", "s3n", "gs", "gcs", "r2", "http", "https", "hf")


def _extension_files(names: Sequence[str]) -> list[Path] | None:
    """The installed files of the extensions ``names`` (where DuckDB itself would load them from; ``postgres`` is
    an alias of ``postgres_scanner``), or None when one is not installed."""
    with duckdb.connect() as probe:
        rows = probe.execute("SELECT extension_name, aliases, install_path FROM duckdb_extensions() "
                             "WHERE installed").fetchall()
    paths = {alias: path for name, aliases, path in rows for alias in [name, *(aliases or [])]}
    files = [Path(paths.get(name) or "") for name in names]
    return files if all(f.is_absolute() and f.is_file() for f in files) else None


def _sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _known_signed(location: LakeLocation) -> bool:
    """Whether every extension the store needs is installed as the bytes :data:`SIGNED_EXTENSION_SHA256` knows under
    that file's name, and the store needs no other: its data path is local or one httpfs serves (without a data path
    the store's own, in its catalog, is unknown until attached: it may need an extension DuckDB autoloads)."""
    if not location.data_path:
        return False
    if _URL_DATA_PATH.match(location.data_path) and \
            location.data_path.split("://", 1)[0].lower() not in _HTTPFS_SCHEMES:
        return False
    try:
        files = _extension_files(location.extensions)
        return files is not None and all(
            SIGNED_EXTENSION_SHA256.get(_sha256(f)) == f.name.removesuffix(".duckdb_extension") for f in files)
    except (OSError, duckdb.Error):
        return False


# How long a writer that finds another creating a new DuckLake store's schema waits for it (Store._migrate) before
# migrating itself.
LAKE_MIGRATION_WAIT_S = 30.0
_SCHEMA_VERSION_COLUMNS = "schema_version (version INTEGER PRIMARY KEY, applied_at TIMESTAMP NOT NULL)"


# Where DuckLake keeps its tables in a Postgres catalog: the postgres extension's default schema, which DuckLake
# takes when not told. Named in the ATTACH so that the extension reflects that schema alone, not every schema of the
# database (all of pg_catalog's columns on each open: 0.08 s of CPU apiece on an empty server, more on a shared one).
LAKE_POSTGRES_SCHEMA = "public"


LAKE_WRITERS = 4  # runs writing to a DuckLake store at once, unless EQUAL_STORE_WRITERS says


def lake_writers() -> int:
    """How many runs may write to a DuckLake store at once: ``EQUAL_STORE_WRITERS``, default :data:`LAKE_WRITERS`."""
    text = os.environ.get("EQUAL_STORE_WRITERS", "").strip() or str(LAKE_WRITERS)
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"EQUAL_STORE_WRITERS={text!r}: a number of writers, 1 or more")
    return int(text)


def writer_threads() -> int:
    """DuckDB threads of one process writing to a DuckLake store: the cores shared among the writers the Dagster pool
    admits at once (``EQUAL_STORE_WRITERS``), at least one. Measured on 2 cores (benchmarks/store.py): 4 concurrent
    ingests 0.64x the sequential DuckDB-file time with one thread each, 0.71x with DuckDB's default of one per core;
    one writer alone 0.85-0.89x the file's rate with one thread, 0.81x with two. The cores are those this process
    may run on (its affinity: a container's or taskset's share)."""
    return max(1, len(os.sched_getaffinity(0)) // lake_writers())


def _connect_with_extensions(location: LakeLocation, *, read_only: bool) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with the store's extensions loaded: without DuckDB's signature check when the
    files are the known signed ones (:func:`_known_signed`), else with it. Unchecked loading stays allowed for the
    connection's life: the store loads nothing else on it, and it autoloads nothing."""
    def connection(known_signed: bool) -> duckdb.DuckDBPyConnection:
        conn = duckdb.connect(config={"allow_unsigned_extensions": "true", "autoload_known_extensions": "false"}
                              if known_signed else {})
        try:
            # an in-memory DuckDB spills to ./.tmp: into the system's temporary folder instead, one per process
            temp = Path(tempfile.gettempdir()) / f"equal-lake-{os.getpid()}"
            conn.execute(f"SET temp_directory = {_literal(str(temp))}")
            if not read_only:
                conn.execute(f"SET threads = {writer_threads()}")
            for name in location.extensions:
                if known_signed:
                    conn.execute(f"LOAD {name}")
                else:
                    _load_extension(conn, name)
            return conn
        except BaseException:
            conn.close()
            raise

    if _known_signed(location):
        with contextlib.suppress(duckdb.Error):  # whatever failed (a file changed since it was hashed): DuckDB's check
            return connection(known_signed=True)
    return connection(known_signed=False)


def connect_lake(location: LakeLocation, *, read_only: bool = False, snapshot: int | None = None
                 ) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with the DuckLake store attached (as :data:`LAKE_CATALOG`) and in use;
    ``snapshot``: the store as it was at that snapshot (read-only). Several processes may create the same new store
    at once: the ones that lose DuckLake's race to create its catalog tables attach again, to the winner's. A
    writing connection takes its share of the process's cores (:func:`writer_threads`)."""
    if location.data_path and not _URL_DATA_PATH.match(location.data_path) and not read_only:
        Path(location.data_path).mkdir(parents=True, exist_ok=True)
    options = [f"DATA_PATH {_literal(location.data_path)}"] if location.data_path else []
    options += [f"SNAPSHOT_VERSION {int(snapshot)}"] if snapshot is not None else []
    options += ["READ_ONLY"] if read_only else []
    if location.kind == "postgres":  # the postgres extension reflects DuckLake's schema only
        options.append(f"META_SCHEMA {_literal(LAKE_POSTGRES_SCHEMA)}")
    attach = (f"ATTACH {_literal(LAKE_SCHEME + location.catalog)} AS {LAKE_CATALOG}"
              + (f" ({', '.join(options)})" if options else ""))
    conn = _connect_with_extensions(location, read_only=read_only)
    # A lost creation race attaches again on the same connection: loading the extensions is not redone.
    deadline = time.monotonic() + LAKE_CLEANUP_RETRY_S
    while True:
        try:
            conn.execute(attach)
            conn.execute(f"USE {LAKE_CATALOG}")
            return conn
        except duckdb.Error as exc:
            reason = redacted(" ".join(str(exc).split()))[:400]
            lost_creation_race = "Failed to initialize DuckLake" in reason and (
                "duplicate key" in reason or "already exists" in reason)
            if lost_creation_race and time.monotonic() < deadline:
                with contextlib.suppress(duckdb.Error):
                    conn.execute(f"DETACH DATABASE IF EXISTS {LAKE_CATALOG}")
                # Postgres told this writer of the duplicate once the winner's creation committed: attach again at
                # once (a short jitter), not after a pause in which the cores idle
                time.sleep(0.01 + 0.04 * random.random())
                continue
            conn.close()
            if "creating a new DuckLake is explicitly disabled" in reason:
                raise StoreError(f"no store at {location}: materialize the corpus first (or check EQUAL_STORE)") from exc
            raise StoreError(f"cannot open the DuckLake store {location}: {reason}") from exc
        except BaseException:
            conn.close()
            raise


def _is_lake(conn: duckdb.DuckDBPyConnection) -> bool:
    row = conn.execute("SELECT type FROM duckdb_databases() WHERE database_name = current_database()").fetchone()
    return bool(row) and row[0] == "ducklake"


def _is_commit_conflict(exc: BaseException) -> bool:
    """A DuckLake commit that lost to a concurrent writer's (worth retrying: nothing was written), DuckLake's own or
    the Postgres catalog's serialization failure (SQLSTATE 40001: maintenance flushing inlined rows that a writer
    updates at the same moment, or the other way round)."""
    text = str(exc)
    return isinstance(exc, duckdb.Error) and ("Transaction conflict" in text
                                              or "Failed to commit DuckLake transaction" in text
                                              or "could not serialize access" in text)


class StoreConflict(StoreError):
    """A write that kept losing to concurrent writers for :data:`LAKE_RETRY_S` (DuckLake)."""

    exit_code = 1


class PartitionConflict(StoreConflict):
    """Another writer replaced the same partition while this write was under way: its rows won, this write's were
    dropped."""


# PRIMARY KEY clauses of the statements this module generates (DuckLake has no constraints).
_PRIMARY_KEY_CLAUSE = re.compile(r",\s*PRIMARY KEY \([^)]*\)| PRIMARY KEY(?=,)")


def _without_constraints(statement: str) -> str:
    return _PRIMARY_KEY_CLAUSE.sub("", statement)


# How long a file DuckLake no longer reads (replaced by a merge) is kept before maintenance deletes it: longer than any
# read under way may still use it.
MAINTENANCE_DELETE_AFTER_S = 24 * 3600.0


@dataclass(frozen=True)
class MaintenanceReport:
    """What :meth:`Store.maintain` did: the store's kind, the Parquet files the current snapshot reads before and
    after (None on a DuckDB file), the files deleted from the data path, and the seconds it took."""

    store: str
    data_files_before: int | None
    data_files_after: int | None
    files_deleted: int
    seconds: float

    def describe(self) -> str:
        if self.data_files_before is None:
            return f"DuckDB file checkpointed in {self.seconds:.1f} s"
        return (f"DuckLake: {self.data_files_before:,} -> {self.data_files_after:,} data files, "
                f"{self.files_deleted:,} replaced files deleted, in {self.seconds:.1f} s")


@dataclass(frozen=True)
class CrawlCounts:
    crawl_id: str
    documents: int
    quarantined: dict[str, int]


class PartitionWriter:
    """Appends rows for the tables of one partition, under one write id, while :meth:`Store.replace_partition`
    holds it open. The rows stay invisible until the write becomes current."""

    def __init__(self, conn: duckdb.DuckDBPyConnection, column: str, value: str, tables: Sequence[str], write_id: str,
                 retrying: Callable[..., Any] | None = None):
        self._conn = conn
        self._column = column
        self._value = value
        self.write_id = write_id
        self.rows_inserted: dict[str, int] = dict.fromkeys(tables, 0)
        # Store._retrying: each append (one table's rows, or several tables' together) is a transaction of its own,
        # retried alone against concurrent writers (without it, a plain call: each statement commits alone)
        self._retrying = retrying or (lambda what, fn, in_transaction=False: fn())

    def insert(self, table: str, rows: pl.DataFrame) -> None:
        self.insert_together({table: rows})

    def insert_together(self, rows_by_table: Mapping[str, pl.DataFrame]) -> None:
        """Rows of several tables of this write in one commit: a crawl's batch of documents and its quarantined
        rows, a round's row, extractions and QA pairs. On DuckLake each commit is a snapshot and its catalog round
        trips (about 15 ms of CPU for a few rows)."""
        for table in rows_by_table:
            self._check_table(table)
        tagged = {table: self._tagged(table, rows) for table, rows in rows_by_table.items() if rows.height}
        if not tagged:
            return

        def append() -> None:
            for table, rows in tagged.items():
                _insert_frame(self._conn, _rows_table(table), rows)

        self._retrying(f"appending to {', '.join(tagged)} ({self._column} = {self._value!r})", append,
                       in_transaction=True)
        for table, rows in tagged.items():
            self.rows_inserted[table] += rows.height

    def _check_table(self, table: str) -> None:
        if table not in self.rows_inserted:
            raise StoreError(f"table {table!r} is not part of this partition write ({', '.join(self.rows_inserted)})")

    def _tagged(self, table: str, rows: pl.DataFrame) -> pl.DataFrame:
        """``rows`` of ``table`` checked to belong to this write, with its write id."""
        _check_columns(table, rows.columns)
        wrong = rows.filter(pl.col(self._column) != self._value).height if self._column in rows.columns else 0
        if self._column not in rows.columns or wrong:
            raise StoreError(
                f"rows for {table} must all have {self._column} = {self._value!r} "
                f"({'column missing' if self._column not in rows.columns else f'{wrong} rows differ'})"
            )
        return rows.with_columns(pl.lit(self.write_id).alias("write_id"))

    def carry_over(self, table: str) -> int:
        """Copy the partition's current rows of ``table`` into this write (to add rows to a partition without
        changing the ones it has)."""
        self._check_table(table)
        columns = ", ".join(TABLES[table])

        def copy() -> int:
            n = self._conn.execute(f"SELECT count(*) FROM {table} WHERE {self._column} = ?", [self._value]).fetchone()[0]
            self._conn.execute(
                f"INSERT INTO {table}_rows ({columns}, write_id) SELECT {columns}, ? FROM {table} WHERE {self._column} = ?",
                [self.write_id, self._value],
            )
            return n

        copied = self._retrying(f"carrying over {table} ({self._column} = {self._value!r})", copy, in_transaction=True)
        self.rows_inserted[table] += copied
        return copied

    def insert_cluster_labels(self, files: Sequence[str], assigned_at: Any, assignment: str,
                              renumbered: Sequence[int] | None = None) -> None:
        """Append the clusters of Parquet shards (columns doc_id, cluster_id, as the Ray workers write them) in one
        commit, read by DuckDB; ``renumbered[i]``: the cluster id that a shard's ``i`` becomes (empty centroids
        dropped), else the ids stay. A doc_id twice in the shards (a batch written again by a retried task) is added
        once."""
        if "clusters" not in self.rows_inserted or self._column != "clustering_id":
            raise StoreError("insert_cluster_labels needs a write of a clusters partition")
        if not files:
            return
        columns = "doc_id, clustering_id, cluster_id, probability, joined_as_noise, assigned_at, assignment, write_id"

        def insert() -> int:
            with _registered(self._conn, _renumbering(renumbered)) as numbers:
                return self._conn.execute(
                    f"INSERT INTO clusters_rows ({columns}) SELECT doc_id, ?, cluster_id, NULL, false, ?, ?, ? "
                    f"FROM {_labels_source(files, numbers if renumbered is not None else None)}",
                    [self._value, assigned_at, assignment, self.write_id]).fetchone()[0]

        self.rows_inserted["clusters"] += self._retrying(f"appending to clusters ({self._column} = {self._value!r})",
                                                         insert)

    def existing_documents(self, content_hashes: list[str], doc_ids: list[str]) -> pl.DataFrame:
        """Documents with one of these content hashes or ids, as the store will hold them once this write
        lands: those of other crawls, and those written earlier by this write. Columns doc_id, crawl_id,
        content_hash."""
        if "documents" not in self.rows_inserted or self._column != "crawl_id":
            raise StoreError("existing_documents needs a write of a documents partition")
        return _existing_documents(self._conn, content_hashes, doc_ids, self._value, self.write_id)


def _renumbering(renumbered: Sequence[int] | None) -> pa.Table:
    numbers = list(renumbered or [])
    return pa.table({"old": pa.array(range(len(numbers)), pa.int32()), "new": pa.array(numbers, pa.int32())})


def _labels_source(files: Sequence[str], numbers: str | None) -> str:
    """A relation (doc_id, cluster_id) over label shards, one row per doc_id, cluster ids renumbered through
    ``numbers`` (a relation of old and new ids, :func:`_renumbering`) when given."""
    shards = f"read_parquet([{', '.join(_literal(str(f)) for f in files)}])"
    if numbers is None:
        return f"(SELECT DISTINCT ON (doc_id) doc_id, cluster_id FROM {shards})"
    return (f"(SELECT DISTINCT ON (s.doc_id) s.doc_id, n.new AS cluster_id FROM {shards} s "
            f"JOIN {numbers} n ON s.cluster_id = n.old)")


def _check_columns(table: str, columns: Sequence[str]) -> None:
    if table not in TABLES:
        raise StoreError(f"unknown table {table!r}")
    unknown = [c for c in columns if c not in TABLES[table]]
    if unknown:
        raise StoreError(f"table {table} has no column(s) {', '.join(unknown)}")


_batch_names = (f"__equal_batch_{i}" for i in itertools.count())


@contextlib.contextmanager
def _registered(conn: duckdb.DuckDBPyConnection, table: pa.Table) -> Iterator[str]:
    """``table`` visible to SQL under a fresh name for the duration of the block (values travel as Arrow, never as
    SQL text, and a Python list parameter would be converted value by value, far slower)."""
    name = next(_batch_names)
    conn.register(name, table)
    try:
        yield name
    finally:
        conn.unregister(name)


def _keys_in_order(keys: Sequence[str], column: str = "key") -> pa.Table:
    return pa.table({column: pa.array(list(keys), pa.string()), "position": pa.array(range(len(keys)), pa.int64())})


def _insert_frame(conn: duckdb.DuckDBPyConnection, table: str, rows: pl.DataFrame, *, keep_existing: bool = False,
                  stamp: str | None = None, lake: bool = False) -> None:
    """INSERT the frame's columns into ``table`` (see :func:`_insert_from`)."""
    with _registered(conn, rows.to_arrow()) as name:
        _insert_from(conn, table, name, rows.columns, keep_existing=keep_existing, stamp=stamp, lake=lake)


def _insert_from(conn: duckdb.DuckDBPyConnection, table: str, source: str, columns: Sequence[str], *,
                 keep_existing: bool = False, stamp: str | None = None, lake: bool = False) -> None:
    """INSERT ``columns`` of ``source`` (a relation) into ``table``; ``stamp``: a timestamp column set to now, in UTC
    (as the rows stamped in Python); ``keep_existing``: a row whose key is already there is skipped (the primary
    key's index on a DuckDB file; on DuckLake, which has no constraints, the rows whose key is absent: two writers
    adding the same key at the same moment may both add it, and readers of those tables take one)."""
    names = ", ".join(columns)
    stamp_column, stamp_value = (f", {stamp}", ", now() AT TIME ZONE 'UTC'") if stamp else ("", "")
    if keep_existing and lake:
        selected = ", ".join(f"b.{c}" for c in columns)
        key = " AND ".join(f"t.{c} = b.{c}" for c in PRIMARY_KEYS[table])
        conn.execute(f"INSERT INTO {table} ({names}{stamp_column}) SELECT {selected}{stamp_value} FROM {source} b "
                     f"ANTI JOIN {table} t ON {key}")
        return
    conflict = " ON CONFLICT DO NOTHING" if keep_existing else ""
    conn.execute(f"INSERT INTO {table} ({names}{stamp_column}) SELECT {names}{stamp_value} FROM {source}{conflict}")


def _arrow_table(result: duckdb.DuckDBPyConnection) -> pa.Table:
    """A query's whole result as an Arrow table, read now (``.arrow()`` is a lazy reader in duckdb >= 1.4)."""
    fetch = getattr(result, "to_arrow_table", None) or result.fetch_arrow_table
    return fetch()


def _vector_matrix(table: pa.Table) -> Any:
    """The ``vector`` column of an Arrow result as a (rows, dimension) float32 numpy matrix."""
    import numpy as np

    if table.num_rows == 0:
        return np.zeros((0, 0), dtype=np.float32)
    flat = table.column("vector").combine_chunks().flatten().to_numpy(zero_copy_only=False)
    return flat.astype(np.float32, copy=False).reshape(table.num_rows, -1)


def _existing_documents(
    conn: duckdb.DuckDBPyConnection,
    content_hashes: list[str],
    doc_ids: list[str],
    replacing_crawl: str | None = None,
    write_id: str | None = None,
) -> pl.DataFrame:
    # The keys travel as Arrow tables (a Python list parameter is converted value by value, far slower) and are
    # tested with IN subqueries, which DuckDB runs as hash joins built on the batch's few keys, the stored documents
    # streaming past them, so memory does not grow with the store. One scan of documents_rows for both keys (not a
    # UNION ALL of a join on each): on DuckLake every table a query reads costs catalog queries, and the scan of
    # Parquet files is read once. Measured (3 crawls stored, 20,000 keys of each kind): 67-72 against 46-50 ms of CPU
    # on DuckLake, 38-40 against 31-34 ms on a DuckDB file.
    visible = (
        "(d.write_id = ? OR (d.crawl_id IS DISTINCT FROM ? AND d.write_id IN "
        "(SELECT write_id FROM partition_writes WHERE table_name = 'documents')))"
    )
    with _registered(conn, _keys_in_order(content_hashes)) as hashes, _registered(conn, _keys_in_order(doc_ids)) as ids:
        return conn.execute(
            f"SELECT d.doc_id, d.crawl_id, d.content_hash FROM documents_rows d WHERE (d.content_hash IN "
            f"(SELECT key FROM {hashes}) OR d.doc_id IN (SELECT key FROM {ids})) AND {visible}",
            [write_id, replacing_crawl],
        ).pl()

_SIZE_UNITS = {"bytes": 1, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40}


def _setting_value(shown: str) -> str:
    """A setting as DuckDB shows it, in a form it takes back: sizes are shown truncated to one decimal
    ("2.7 GiB" for anything from 2.7 to 2.8 GiB), so they come back as the middle of that range, in bytes."""
    match = re.fullmatch(r"([0-9.]+) ?(bytes|KiB|MiB|GiB|TiB)", shown.strip())
    if not match:
        return shown
    number, unit = match.groups()
    step = 0.05 if "." in number else 0.0
    return f"{round((float(number) + step) * _SIZE_UNITS[unit])}B"


class Store:
    """Every table of DESIGN.md, in one DuckDB file or in a DuckLake lakehouse (the module's docstring).

    Open it with :meth:`Store.open` (a path, or a :class:`LakeLocation`) or wrap a connection someone else opened
    (the Dagster resource does) with ``Store(conn)``; a read-write store migrates the schema on open.
    """

    def __init__(self, conn: duckdb.DuckDBPyConnection, *, read_only: bool = False,
                 path: str | Path | LakeLocation = "", snapshot: int | None = None):
        self.conn = conn
        self.read_only = read_only
        self.path = str(path)
        # where it was opened (a DuckLake location keeps its password: other processes open the same store with it)
        self.location = path
        self.lake = _is_lake(conn)  # a DuckLake catalog in use (else a DuckDB file)
        self.snapshot = snapshot  # the DuckLake snapshot this store was opened at (None: the latest)
        self.conflicts_retried = 0  # commits that lost to a concurrent writer's and were retried (DuckLake)
        self.conn.execute("SET enable_progress_bar = false")
        if read_only:
            self._check_version()
        else:
            self._migrate()

    # -- opening ---------------------------------------------------------------------------------------
    @classmethod
    @contextlib.contextmanager
    def open(cls, path: str | Path | LakeLocation, *, read_only: bool = False, wait_s: float = 0.0,
             snapshot: int | None = None) -> Iterator[Store]:
        """The store at ``path``: a DuckDB file, or a DuckLake store (a :class:`LakeLocation`, or ``ducklake:...``
        with its data path from ``EQUAL_STORE_DATA``). ``wait_s``: how long to wait while another process writes to a
        DuckDB file (DuckLake admits many writers). ``snapshot``: a DuckLake store read-only as it was at that
        snapshot (:meth:`snapshot_id` after a write gives one)."""
        if isinstance(path, str) and path.startswith(LAKE_SCHEME):
            path = LakeLocation.parse(path, os.environ.get(STORE_DATA_ENV) or None)
        if isinstance(path, LakeLocation):
            if snapshot is not None and not read_only:
                raise StoreError(f"snapshot {snapshot} of {path} can only be opened read-only: a snapshot is history")
            conn = connect_lake(path, read_only=read_only, snapshot=snapshot)
        else:
            path = Path(path)
            if snapshot is not None:
                raise StoreError(f"the store {path} is a DuckDB file, which keeps no snapshots: opening it as of "
                                 f"snapshot {snapshot} needs a DuckLake store (EQUAL_STORE=ducklake:...)")
            if read_only and not path.exists():
                raise StoreError(f"no store at {path}: materialize the corpus first (or check EQUAL_HOME)")
            conn = connect(path, read_only=read_only, wait_s=wait_s)
        try:
            yield cls(conn, read_only=read_only, path=path, snapshot=snapshot)
        finally:
            conn.close()

    def _migrate(self) -> None:
        # Several writers may open a new or older DuckLake store at once: on a new one, one migrates and the others
        # wait for it; on an older one, the loser of a conflicting migration retries, and finds the work done.
        if self.lake:
            with contextlib.suppress(duckdb.CatalogException):  # (no schema_version table: a new store)
                if self.schema_version() == SCHEMA_VERSION:  # a store in use: one read, where the claim is a write
                    return
            self._wait_for_a_concurrent_creation()
        self._retrying("migrating the schema", self._migrate_once, in_transaction=False)
        if not self.lake:  # on DuckLake other writers' rows may be under way: Store.delete_unfinished_writes
            self._delete_unfinished_writes()

    def _wait_for_a_concurrent_creation(self) -> None:
        """On a new DuckLake store that several writers open at once, one creates the schema and the others wait for
        it, instead of each building the whole migration (0.3 s of CPU) only to lose its commit. The claim is
        creating ``schema_version``, a commit of its own that only one writer can make; a writer that finds the table
        created but no version in it yet polls the version (a cheap read) until the creator's migration is
        committed, for up to :data:`LAKE_MIGRATION_WAIT_S` (a creator that died: then it migrates itself). A store
        that has a version already (an upgrade) migrates as before."""
        try:
            self.conn.execute(self._sql(f"CREATE TABLE {_SCHEMA_VERSION_COLUMNS}"))
            return  # this writer creates the schema
        except duckdb.Error as exc:
            if not (_is_commit_conflict(exc) or "already exists" in str(exc)):
                raise
        deadline = time.monotonic() + LAKE_MIGRATION_WAIT_S
        while time.monotonic() < deadline:
            try:
                if self.schema_version() >= 1:  # the creator's migration committed, or an older store's version
                    return
            except duckdb.Error:  # the table not visible to this snapshot yet
                pass
            time.sleep(0.05)

    def _migrate_once(self) -> None:
        self.conn.execute(self._sql(f"CREATE TABLE IF NOT EXISTS {_SCHEMA_VERSION_COLUMNS}"))
        current = self.schema_version()
        if current > SCHEMA_VERSION:
            raise StoreError(
                f"store {self.path or '(connection)'} has schema version {current}, newer than this code "
                f"({SCHEMA_VERSION}): upgrade equal-dagster"
            )
        if current == SCHEMA_VERSION:
            return
        # One transaction for every step: all or nothing, and one DuckLake commit (each costs catalog round trips).
        with self.transaction():
            for version in range(self.schema_version() + 1, SCHEMA_VERSION + 1):  # (another writer may have migrated)
                for statement in MIGRATIONS[version]:
                    if callable(statement):
                        statement(self.conn)
                    else:
                        self.conn.execute(self._sql(statement))
                # a literal: a bound parameter would make duckdb import pandas (0.3 s of CPU) here, while the other
                # writers of a new DuckLake store wait for this migration
                self.conn.execute(f"INSERT INTO schema_version VALUES ({int(version)}, now())")

    def _sql(self, statement: str) -> str:
        """A schema statement for this backend: DuckLake's tables have no PRIMARY KEY."""
        return _without_constraints(statement) if self.lake else statement

    def _check_version(self) -> None:
        found = self.conn.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = 'schema_version' "
            "AND table_catalog = current_database()"
        ).fetchone()[0]
        current = self.schema_version() if found else 0
        if current != SCHEMA_VERSION:
            raise StoreError(
                f"store {self.path or '(connection)'} has schema version {current}, this code needs "
                f"{SCHEMA_VERSION}: open it read-write once to migrate"
            )

    def schema_version(self) -> int:
        return self.conn.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()[0]

    # -- snapshots (DuckLake) --------------------------------------------------------------------------
    def snapshot_id(self) -> int | None:
        """The DuckLake snapshot this store now reads (after a write: the snapshot it made; the one it was opened at,
        when opened at one), for an asset's metadata; None on a DuckDB file, which keeps no snapshots."""
        if not self.lake:
            return None
        return self.conn.execute(f"SELECT id FROM {LAKE_CATALOG}.current_snapshot()").fetchone()[0]

    def snapshots(self) -> pl.DataFrame:
        """The DuckLake store's snapshots (snapshot_id, snapshot_time, schema_version, changes), oldest first."""
        if not self.lake:
            raise StoreError(f"the store {self.path or '(connection)'} is a DuckDB file, which keeps no snapshots "
                             "(a DuckLake store does: EQUAL_STORE=ducklake:...)")
        return self.conn.execute(
            f"SELECT snapshot_id, snapshot_time, schema_version, changes FROM {LAKE_CATALOG}.snapshots() ORDER BY 1"
        ).pl()

    # -- writing ---------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        self._check_writable()
        self.conn.execute("BEGIN TRANSACTION")
        try:
            yield
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        try:
            self.conn.execute("COMMIT")
        except duckdb.Error:
            with contextlib.suppress(duckdb.Error):  # a commit that failed has ended the transaction, or left it open
                self.conn.execute("ROLLBACK")
            raise

    def _retrying(self, what: str, body: Callable[[], Any], *, in_transaction: bool = False,
                  retry_s: float = LAKE_RETRY_S) -> Any:
        """``body()`` (in a transaction of its own with ``in_transaction``), again after a pause while DuckLake
        refuses its commit because a concurrent writer's conflicted (for up to ``retry_s``, the pauses doubling from
        50 ms to 2 s, jittered). ``what`` names the write in the error when it never gets through."""
        deadline = time.monotonic() + retry_s
        delay = 0.05
        for attempt in itertools.count(1):
            try:
                if not in_transaction:
                    return body()
                with self.transaction():
                    return body()
            except duckdb.Error as exc:
                if not (self.lake and _is_commit_conflict(exc)):
                    raise
                pause = delay * (0.5 + random.random())
                if time.monotonic() + pause > deadline:
                    raise StoreConflict(f"{what} in {self.path or 'the store'}: still conflicting with concurrent "
                                        f"writers after {attempt} attempts in {retry_s:.0f} s "
                                        f"({' '.join(str(exc).split())[:300]})") from exc
                log.debug("%s: commit conflict (attempt %d), retrying in %.2f s", what, attempt, pause)
                self.conflicts_retried += 1
                time.sleep(pause)
                delay = min(delay * 2, 2.0)
        raise AssertionError("unreachable")

    @contextlib.contextmanager
    def bounded_memory(self, limit_bytes: int) -> Iterator[None]:
        """DuckDB's memory capped at ``limit_bytes`` for the body, and its checkpoints kept from vacuuming
        (merging row groups), for long appends whose memory must not grow with their size.

        Why: DuckDB's buffer pool keeps every block it has read (the deduplication keys of the whole store, here)
        until its memory limit, 80% of RAM by default, and a checkpoint's vacuum loads several row groups, text
        included, to merge them. Capped, the pool evicts to disk instead; vacuum runs again at the first checkpoint
        after the body. The body ends with a checkpoint of its own, under the cap. The limit is the database's, so
        it holds for every connection of this process to the store while the body runs; the previous settings come
        back afterwards."""
        self._check_writable()
        saved = self._settings("memory_limit", "max_vacuum_tasks")
        self.conn.execute(f"SET memory_limit = '{int(limit_bytes)}B'")
        self.conn.execute("SET max_vacuum_tasks = 0")
        try:
            yield
            if not self.lake:  # (DuckLake's CHECKPOINT is its maintenance: merging and deleting files)
                with contextlib.suppress(duckdb.TransactionException):  # another connection mid-write: later
                    self.conn.execute("CHECKPOINT")
        except (duckdb.OutOfMemoryException, duckdb.TransactionException) as exc:
            if not isinstance(exc, duckdb.OutOfMemoryException) and "pin block" not in str(exc):
                raise
            raise StoreMemoryError(f"DuckDB needed more than the limit of {limit_bytes / 2**20:.0f} MiB set for "
                                   f"this write: {str(exc).splitlines()[0]}") from exc
        finally:
            for name, value in saved.items():
                self.conn.execute(f"RESET {name}")
                if self._settings(name)[name] != value:  # set by someone: put their value back
                    self.conn.execute(f"SET {name} = '{_setting_value(value)}'")

    def _settings(self, *names: str) -> dict[str, str]:
        rows = self.conn.execute("SELECT name, value FROM duckdb_settings() WHERE list_contains(?, name)",
                                 [list(names)]).fetchall()
        return dict(rows)

    @contextlib.contextmanager
    def replace_partition(self, column: str, value: str, tables: Sequence[str]) -> Iterator[PartitionWriter]:
        """Replace the rows of ``tables`` whose ``column`` equals ``value`` with the rows the body inserts
        through the yielded :class:`PartitionWriter`. Rows are appended as they come (bounded memory) and
        become visible together, in one transaction, when the body ends; if the body raises, nothing changes.

        Other processes may write at the same time (DuckLake): each append commits on its own and the swap is one
        small transaction, each retried against transient commit conflicts. If another writer made its own write of
        this partition current after this one began, this one fails with :class:`PartitionConflict` (the other's rows
        stay, this one's are deleted)."""
        for table in tables:
            if PARTITIONED.get(table) != column:
                raise StoreError(f"{table!r} is not partitioned by {column!r}")
        self._check_writable()
        write_id = uuid.uuid4().hex
        started_from = self._current_writes(value, tables)
        writer = PartitionWriter(self.conn, column, value, tables, write_id, retrying=self._retrying)
        try:
            yield writer
            replaced = self._retrying(
                f"making the write of {', '.join(tables)} ({column} = {value!r}) current",
                lambda: self._swap(column, value, tables, write_id, started_from, writer.rows_inserted),
                in_transaction=True,
            )
        except BaseException:
            self._delete_write_rows(tables, write_id)
            raise
        for table, old_id in replaced:
            self._delete_write_rows([table], old_id)

    def _current_writes(self, value: str, tables: Sequence[str]) -> dict[str, str]:
        return dict(self.conn.execute(
            "SELECT table_name, write_id FROM partition_writes WHERE partition_value = ? AND list_contains(?, table_name)",
            [value, list(tables)],
        ).fetchall())

    def _swap(self, column: str, value: str, tables: Sequence[str], write_id: str, started_from: dict[str, str],
              rows: dict[str, int]) -> list[tuple[str, str]]:
        """In the caller's transaction: make ``write_id`` the current write of the partition, unless another writer
        replaced it since ``started_from``. Returns the (table, write id) replaced."""
        current = self._current_writes(value, tables)
        if current != started_from:
            changed = [t for t in tables if current.get(t) != started_from.get(t)]
            raise PartitionConflict(
                f"partition {column} = {value!r} of table {', '.join(changed)} was replaced by another writer while "
                f"this write was under way: the other write's rows are kept and this one's "
                f"({', '.join(f'{n} rows of {t}' for t, n in rows.items())}) dropped; run it again if it should win")
        # Every swap updates this one row, so that two concurrent swaps always conflict in DuckLake (which checks
        # tables, not rows; a DELETE that matched nothing does not count): the later one retries and sees the change.
        self.conn.execute("UPDATE partition_swaps SET swaps = swaps + 1")
        self.conn.execute("DELETE FROM partition_writes WHERE partition_value = ? AND list_contains(?, table_name)",
                          [value, list(tables)])
        for table in tables:
            self.conn.execute("INSERT INTO partition_writes VALUES (?, ?, ?, now())", [table, value, write_id])
        return sorted(current.items())

    def _delete_write_rows(self, tables: Sequence[str], write_id: str) -> None:
        """Delete the rows of one write (replaced, or that never became current): invisible either way, so on DuckLake
        a delete that keeps conflicting with other writers' appends is left to :meth:`delete_unfinished_writes`."""
        for table in tables:
            try:
                self._retrying(f"deleting the rows of write {write_id} from {table}",
                               lambda t=table: self.conn.execute(f"DELETE FROM {t}_rows WHERE write_id = ?", [write_id]),
                               retry_s=LAKE_CLEANUP_RETRY_S)
            except StoreConflict as exc:
                log.warning("%s (invisible; Store.delete_unfinished_writes deletes them)", exc)

    def delete_unfinished_writes(self) -> None:
        """Delete the rows of writes that never became current (a writer killed mid-write) or were replaced and
        not deleted. On DuckLake run it while no writer is active: rows being written are not current yet either.
        (A DuckDB file, with one writer at a time, does this on every read-write open.)"""
        self._check_writable()
        self._retrying("deleting unfinished writes", self._delete_unfinished_writes, in_transaction=True)

    def _delete_unfinished_writes(self) -> None:
        """Rows of writes that never became current (a crash before the swap) or were replaced (a crash
        after it): invisible either way."""
        for table in PARTITIONED:
            self.conn.execute(
                f"DELETE FROM {table}_rows WHERE write_id NOT IN "
                f"(SELECT write_id FROM partition_writes WHERE table_name = '{table}')"
            )

    # -- maintenance -----------------------------------------------------------------------------------
    def maintain(self, *, delete_after_s: float = MAINTENANCE_DELETE_AFTER_S) -> MaintenanceReport:
        """Keep reads fast as writes accumulate (see :class:`MaintenanceReport`). On DuckLake, DuckLake's own
        maintenance, minus what would cut time travel (``equal lineage --as-of`` reads old snapshots), table by table
        (a step that loses a commit to a concurrent writer is retried, and only that table's step is redone):

        1. ``ducklake_flush_inlined_data``: small writes kept in the catalog (partition bookkeeping, a round's few
           rows) move to Parquet;
        2. ``ducklake_merge_adjacent_files``: the table's small files merge into larger ones (every append, a
           round's write included, adds files; a read opens them all); old snapshots keep reading their rows from
           the merged files;
        3. ``ducklake_cleanup_old_files``: the files the merges replaced, once older than ``delete_after_s``, so that
           no read under way can still need them.

        Snapshots are not expired and files with deleted rows not rewritten (both would end time travel to the
        snapshots they drop). Orphaned files (written by a writer killed before its commit) are left: DuckLake's
        ``ducklake_delete_orphaned_files`` takes every Parquet file under the data path that this catalog does not
        know for one, another store's too when two share a data path. On a DuckDB file: a CHECKPOINT (DuckDB
        otherwise checkpoints on its own)."""
        if not (delete_after_s >= 0 and math.isfinite(delete_after_s)):
            raise ValueError(f"delete_after_s must be a finite number of seconds, 0 or more, not {delete_after_s!r}")
        self._check_writable()
        started = time.monotonic()
        if not self.lake:
            self.conn.execute("CHECKPOINT")
            return MaintenanceReport("duckdb", None, None, 0, time.monotonic() - started)
        before = self._current_data_files()
        catalog = _literal(LAKE_CATALOG)
        tables = [row[0] for row in self.conn.execute(
            "SELECT table_name FROM duckdb_tables() WHERE database_name = ? ORDER BY 1", [LAKE_CATALOG]).fetchall()]
        for table in tables:
            self._retrying(f"flushing the inlined rows of {table}", lambda table=table: self.conn.execute(
                f"CALL ducklake_flush_inlined_data({catalog}, table_name => {_literal(table)})").fetchall())
            self._retrying(f"merging the small files of {table}", lambda table=table: self.conn.execute(
                f"CALL ducklake_merge_adjacent_files({catalog}, {_literal(table)})").fetchall())
        older_than = f"now() - INTERVAL {int(delete_after_s)} SECOND"
        deleted = len(self._retrying("deleting replaced files", lambda: self.conn.execute(
            f"CALL ducklake_cleanup_old_files({catalog}, older_than => {older_than})").fetchall()))
        return MaintenanceReport("ducklake", before, self._current_data_files(), deleted, time.monotonic() - started)

    def _current_data_files(self) -> int:
        """Parquet files the current snapshot reads, over every table."""
        return self.conn.execute(
            f"SELECT count(*) FROM {LAKE_METADATA_CATALOG}.ducklake_data_file WHERE end_snapshot IS NULL"
        ).fetchone()[0]

    def _check_writable(self) -> None:
        if self.read_only:
            raise StoreError(f"store {self.path or '(connection)'} is open read-only")

    # -- reading ---------------------------------------------------------------------------------------
    def table_row_counts(self) -> dict[str, int]:
        return {table: self.conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] for table in TABLES}

    def documents(self, crawl_id: str | None = None) -> pl.DataFrame:
        """Documents of one crawl (or all), in source order."""
        return self.conn.execute(
            "SELECT * FROM documents WHERE ? IS NULL OR crawl_id = ? ORDER BY crawl_id, source_file, line_no",
            [crawl_id, crawl_id],
        ).pl()

    def quarantine(self, crawl_id: str | None = None) -> pl.DataFrame:
        return self.conn.execute(
            "SELECT * FROM quarantine WHERE ? IS NULL OR crawl_id = ? ORDER BY crawl_id, source_file, line_no",
            [crawl_id, crawl_id],
        ).pl()

    def existing_documents(self, content_hashes: list[str], doc_ids: list[str]) -> pl.DataFrame:
        return _existing_documents(self.conn, content_hashes, doc_ids)

    def crawl_counts(self) -> list[CrawlCounts]:
        """Per crawl: documents kept and quarantined rows by reason (duplicates included as a reason)."""
        docs = dict(self.conn.execute("SELECT crawl_id, count(*) FROM documents GROUP BY crawl_id").fetchall())
        quarantined: dict[str, dict[str, int]] = {}
        for crawl_id, reason, n in self.conn.execute(
            "SELECT crawl_id, reason, count(*) FROM quarantine GROUP BY crawl_id, reason ORDER BY crawl_id, reason"
        ).fetchall():
            quarantined.setdefault(crawl_id, {})[reason] = n
        crawl_ids = sorted(set(docs) | set(quarantined))
        return [CrawlCounts(c, docs.get(c, 0), quarantined.get(c, {})) for c in crawl_ids]

    def column_types(self, table: str) -> dict[str, str]:
        """The column names and DuckDB types of a table as the store has it."""
        _check_columns(table, [])
        rows = self.conn.execute(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = ? "
            "AND table_catalog = current_database() ORDER BY ordinal_position",
            [table],
        ).fetchall()
        return dict(rows)

    def sample_documents(self, crawl_id: str, n: int) -> pl.DataFrame:
        return self.conn.execute(
            "SELECT doc_id, url, n_chars, text FROM documents WHERE crawl_id = ? "
            "ORDER BY source_file, line_no LIMIT ?",
            [crawl_id, n],
        ).pl()


    # -- extraction ------------------------------------------------------------------------------------
    def document_count(self) -> int:
        return self.conn.execute("SELECT count(*) FROM documents").fetchone()[0]

    def random_documents(self, n: int, seed: int) -> pl.DataFrame:
        """A seeded random sample of ``n`` documents (doc_id, crawl_id, text): the documents whose
        md5(seed, doc_id) sorts first. The same seed and store give the same sample; a new crawl adds documents
        to the candidates without reshuffling the others' order."""
        return self.conn.execute(
            "SELECT doc_id, crawl_id, text FROM documents ORDER BY md5(CAST(? AS VARCHAR) || ':' || doc_id), doc_id LIMIT ?",
            [seed, n],
        ).pl()

    def cached_responses(self, keys: Sequence[str]) -> pl.DataFrame:
        """The llm_cache rows for these keys (those not cached are left out): the columns of ``llm_cache`` less
        ``created_at``."""
        with _registered(self.conn, _keys_in_order(keys)) as name:
            return self.conn.execute(
                f"SELECT c.cache_key, c.backend, c.model, c.prompt_version, c.response, c.tokens_in, c.tokens_out, "
                f"c.latency_s FROM llm_cache c JOIN {name} k ON c.cache_key = k.key "
                # the first response of a key (DuckLake: two writers may have added one each at the same moment)
                "QUALIFY row_number() OVER (PARTITION BY c.cache_key ORDER BY c.created_at, c.response) = 1"
            ).pl()

    def save_responses(self, responses: pl.DataFrame) -> int:
        """Add responses (the columns of :meth:`cached_responses`) to llm_cache; a key already there keeps its first
        response. Committed at once: a call paid for stays paid for, whatever happens to the run that made it."""
        self._check_writable()
        if responses.height == 0:
            return 0
        frame = responses.unique("cache_key", keep="first", maintain_order=True)
        self._retrying("saving LLM responses", lambda: _insert_frame(
            self.conn, "llm_cache", frame, keep_existing=True, stamp="created_at", lake=self.lake))
        return frame.height

    def mean_output_tokens(self, backend: str, model: str | None) -> float | None:
        """The mean output tokens of the calls paid to ``backend`` and ``model`` (None: none paid yet)."""
        return self.conn.execute(
            "SELECT avg(tokens_out) FROM llm_cache WHERE backend = ? AND model IS NOT DISTINCT FROM ? "
            "AND tokens_out IS NOT NULL", [backend, model]).fetchone()[0]

    def mean_retries(self, backend: str, model: str | None) -> float | None:
        """The mean retries per document extracted by ``backend`` and ``model`` without the cache (None: none yet)."""
        return self.conn.execute(
            "SELECT avg(retries) FROM extractions WHERE backend = ? AND model IS NOT DISTINCT FROM ? "
            "AND retries IS NOT NULL AND NOT coalesce(cache_hit, false)", [backend, model]).fetchone()[0]

    def llm_cache_size(self) -> int:
        return self.conn.execute("SELECT count(*) FROM llm_cache").fetchone()[0]

    def language_counts(self, crawl_id: str) -> dict[str, int]:
        """Documents of a crawl per language, most frequent first."""
        rows = self.conn.execute(
            "SELECT coalesce(language, ''), count(*) AS n FROM documents WHERE crawl_id = ? GROUP BY ALL ORDER BY n DESC, 1",
            [crawl_id]).fetchall()
        return dict(rows)

    def crawl_harvest(self, crawl_id: str) -> dict[str, int]:
        """What the rounds (the warm-up included) took from one crawl: its documents, those extracted, those that
        gave QA pairs, and the pairs."""
        row = self.conn.execute(
            "SELECT (SELECT count(*) FROM documents WHERE crawl_id = $c), count(DISTINCT e.doc_id), "
            "count(DISTINCT q.doc_id), count(DISTINCT q.qa_id) FROM extractions e JOIN documents d USING (doc_id) "
            "LEFT JOIN qa_pairs q ON q.doc_id = e.doc_id AND q.round_id = e.round_id WHERE d.crawl_id = $c",
            {"c": crawl_id},
        ).fetchone()
        return dict(zip(("documents", "extracted", "with_pairs", "qa_pairs"), row))

    def extraction_statuses(self) -> tuple[dict[str, int], set[str]]:
        """Documents per extraction status over every round, and the backends they went to."""
        rows = self.conn.execute("SELECT status, backend, count(*) FROM extractions GROUP BY ALL").fetchall()
        by_status: dict[str, int] = {}
        for status, _, n in rows:
            by_status[status] = by_status.get(status, 0) + n
        return by_status, {backend for _, backend, _ in rows}

    def extractions(self, round_id: str | None = None) -> pl.DataFrame:
        return self.conn.execute(
            "SELECT * FROM extractions WHERE ? IS NULL OR round_id = ? ORDER BY round_id, doc_id",
            [round_id, round_id],
        ).pl()

    def qa_pairs(self, round_id: str | None = None) -> pl.DataFrame:
        return self.conn.execute(
            "SELECT * FROM qa_pairs WHERE ? IS NULL OR round_id = ? ORDER BY round_id, doc_id, qa_id",
            [round_id, round_id],
        ).pl()

    def rounds(self) -> pl.DataFrame:
        return self.conn.execute("SELECT * FROM rounds ORDER BY round_no").pl()


    def qa_pairs_with_documents(self, round_ids: Sequence[str]) -> pl.DataFrame:
        """QA pairs of these rounds with their document's text: doc_id, text, question, answer."""
        with _registered(self.conn, _keys_in_order(round_ids)) as name:
            return self.conn.execute(
                f"SELECT q.doc_id, d.text, q.question, q.answer FROM qa_pairs q JOIN {name} r ON q.round_id = r.key "
                "JOIN documents d ON d.doc_id = q.doc_id ORDER BY q.doc_id, q.qa_id"
            ).pl()

    # -- embeddings ------------------------------------------------------------------------------------
    def documents_without_embedding(self, crawl_id: str, embedder_id: str) -> list[str]:
        """Ids of the crawl's documents that have no vector from ``embedder_id``, shortest text first (batches
        of similar lengths pad least)."""
        rows = self.conn.execute(
            "SELECT d.doc_id FROM documents d ANTI JOIN (SELECT doc_id FROM embeddings WHERE embedder_id = ?) e "
            "ON d.doc_id = e.doc_id WHERE d.crawl_id = ? ORDER BY d.n_chars, d.doc_id",
            [embedder_id, crawl_id],
        ).fetchall()
        return [doc_id for (doc_id,) in rows]

    def stage_texts_without_embedding(self, crawl_id: str, embedder_id: str, folder: Path, *, file_mb: int = 64) -> int:
        """Write doc_id and text of the crawl's documents without a vector from ``embedder_id`` into Parquet files of
        about ``file_mb`` MB in ``folder`` (new), shortest text first, streamed by DuckDB (memory does not grow with the
        crawl); returns how many. Workers on other processes or machines read them (:mod:`.compute`)."""
        todo = (f"FROM documents d ANTI JOIN (SELECT doc_id FROM embeddings WHERE embedder_id = {_literal(embedder_id)}) "
                f"e ON d.doc_id = e.doc_id WHERE d.crawl_id = {_literal(crawl_id)}")
        return self.conn.execute(f"COPY (SELECT d.doc_id, d.text {todo} ORDER BY d.n_chars, d.doc_id) TO "
                                 f"{_literal(str(folder))} (FORMAT parquet, FILE_SIZE_BYTES '{int(file_mb)}MB', "
                                 "ROW_GROUP_SIZE 4096)").fetchone()[0]

    def document_texts(self, doc_ids: Sequence[str]) -> pl.DataFrame:
        """doc_id and text of these documents, in the order given."""
        with _registered(self.conn, _keys_in_order(doc_ids)) as name:
            return self.conn.execute(
                f"SELECT d.doc_id, d.text FROM documents d JOIN {name} k ON d.doc_id = k.key ORDER BY k.position"
            ).pl()

    def page_html(self, doc_ids: Sequence[str]) -> dict[str, str]:
        """The raw HTML of those of these documents that are web pages (doc_id -> HTML)."""
        with _registered(self.conn, _keys_in_order(doc_ids)) as name:
            rows = self.conn.execute(f"SELECT p.doc_id, p.html FROM pages p JOIN {name} k ON p.doc_id = k.key").fetchall()
        return dict(rows)

    def insert_embeddings(self, rows: pl.DataFrame) -> None:
        """Append vectors (committed at once; a vector already there for its doc_id and embedder_id is kept)."""
        self._check_writable()
        _check_columns("embeddings", rows.columns)
        self._retrying("saving embeddings", lambda: _insert_frame(
            self.conn, "embeddings", rows, keep_existing=True, lake=self.lake))

    def insert_embedding_table(self, vectors: pa.Table, embedder_id: str, crawl_id: str) -> None:
        """Append vectors (an Arrow table of doc_id and vector) as ``embedder_id``'s for ``crawl_id``, in one commit
        (a Ray worker writing into DuckLake); a vector already stored for its doc_id is kept, as
        :meth:`insert_embeddings`."""
        self._check_writable()
        with _registered(self.conn, vectors) as name:
            source = (f"(SELECT DISTINCT ON (doc_id) doc_id, {_literal(embedder_id)} AS embedder_id, "
                      f"{_literal(crawl_id)} AS crawl_id, vector::FLOAT[] AS vector FROM {name})")
            self._retrying("saving embeddings", lambda: _insert_from(
                self.conn, "embeddings", source, ["doc_id", "embedder_id", "crawl_id", "vector"], keep_existing=True,
                stamp="embedded_at", lake=self.lake))

    def insert_embeddings_from_parquet(self, files: Sequence[str], embedder_id: str, crawl_id: str) -> None:
        """Append the vectors of Parquet shards (columns doc_id, vector) as ``embedder_id``'s for ``crawl_id``, in one
        commit, read by DuckDB (nothing passes through Python); a doc_id twice in the shards (a batch written again
        by a retried task) or already stored keeps one vector, as :meth:`insert_embeddings`."""
        self._check_writable()
        if not files:
            return
        source = (f"(SELECT DISTINCT ON (doc_id) doc_id, {_literal(embedder_id)} AS embedder_id, {_literal(crawl_id)} "
                  f"AS crawl_id, vector::FLOAT[] AS vector FROM read_parquet([{', '.join(_literal(str(f)) for f in files)}]))")
        self._retrying("saving embeddings", lambda: _insert_from(
            self.conn, "embeddings", source, ["doc_id", "embedder_id", "crawl_id", "vector"], keep_existing=True,
            stamp="embedded_at", lake=self.lake))

    def delete_stale_embeddings(self, crawl_id: str) -> int:
        """Drop vectors filed under ``crawl_id`` whose document is no longer part of it (a re-ingested crawl)."""
        self._check_writable()
        stale = "FROM embeddings WHERE crawl_id = ? AND doc_id NOT IN (SELECT doc_id FROM documents WHERE crawl_id = ?)"
        return self._retrying(f"deleting stale vectors of {crawl_id}",
                              lambda: self._count_and_delete(stale, [crawl_id, crawl_id]), in_transaction=True)

    def _count_and_delete(self, rows_sql: str, parameters: list[Any]) -> int:
        """DELETE ``rows_sql`` (FROM ... WHERE ...), in the caller's transaction; returns the rows deleted (DuckLake
        has no DELETE ... RETURNING)."""
        n = self.conn.execute(f"SELECT count(*) {rows_sql}", parameters).fetchone()[0]
        if n:
            self.conn.execute(f"DELETE {rows_sql}", parameters)
        return n

    def drop_embeddings(self, embedder_id: str) -> int:
        """Delete every vector of one embedder (an embedder no longer used)."""
        self._check_writable()
        return self._retrying(f"deleting the vectors of {embedder_id}", lambda: self._count_and_delete(
            "FROM embeddings WHERE embedder_id = ?", [embedder_id]), in_transaction=True)

    def embedding_counts(self, crawl_id: str | None = None) -> dict[str, int]:
        """Vectors per embedder (of one crawl, or all)."""
        return dict(self.conn.execute(
            "SELECT embedder_id, count(*) FROM embeddings WHERE ? IS NULL OR crawl_id = ? GROUP BY 1 ORDER BY 1",
            [crawl_id, crawl_id],
        ).fetchall())

    def _one_per_key(self, table: str) -> str:
        """``table`` as readers should see it: on DuckLake (no PRIMARY KEY) one row per key, since two writers adding
        the same key at the same moment may both have added it; on a DuckDB file the key admits one row already."""
        if not self.lake:
            return table
        return (f"(SELECT * FROM {table} QUALIFY row_number() OVER (PARTITION BY {', '.join(PRIMARY_KEYS[table])}) "
                "= 1)")

    def embedding_shape(self, embedder_id: str, crawl_id: str | None = None) -> tuple[int, int]:
        """(rows, dimension) of :meth:`embedding_matrix`, reading one vector (the others' lengths are the same: one
        embedder's)."""
        where = "WHERE e.embedder_id = ? AND (? IS NULL OR d.crawl_id = ?)"
        joined = f"FROM {self._one_per_key('embeddings')} e JOIN documents d ON d.doc_id = e.doc_id"
        parameters = [embedder_id, crawl_id, crawl_id]
        rows = self.conn.execute(f"SELECT count(*) {joined} {where}", parameters).fetchone()[0]
        dimension = self.conn.execute(f"SELECT len(e.vector) {joined} {where} LIMIT 1", parameters).fetchone()
        return int(rows), int(dimension[0]) if dimension else 0

    def embedding_rows_at(self, embedder_id: str, positions: Sequence[int]) -> Any:
        """The vectors at these positions (0-based) of :meth:`embedding_matrix`'s rows (one embedder's vectors of
        current documents, by doc_id), as a float32 matrix in the order given: a sample read without the rest. The
        rows stream into the preallocated matrix, each to its slot, unsorted."""
        import numpy as np

        joined = f"FROM {self._one_per_key('embeddings')} e JOIN documents d ON d.doc_id = e.doc_id"
        wanted = pa.table({"position": pa.array(list(positions), pa.int64()),
                           "slot": pa.array(range(len(positions)), pa.int64())})
        _, dimension = self.embedding_shape(embedder_id)
        matrix = np.zeros((len(positions), dimension), dtype=np.float32)
        found = 0
        with _registered(self.conn, wanted) as name:
            reader = self.conn.execute(
                f"WITH ranked AS (SELECT e.doc_id, row_number() OVER (ORDER BY e.doc_id) - 1 AS position {joined} "
                f"WHERE e.embedder_id = ?), chosen AS (SELECT r.doc_id, w.slot FROM ranked r JOIN {name} w USING "
                f"(position)) SELECT c.slot, e.vector FROM chosen c JOIN {self._one_per_key('embeddings')} e "
                "ON e.doc_id = c.doc_id AND e.embedder_id = ?", [embedder_id, embedder_id]).fetch_record_batch(65_536)
            for batch in reader:
                table = pa.Table.from_batches([batch])
                matrix[table.column("slot").to_numpy()] = _vector_matrix(table)
                found += batch.num_rows
        if found != len(positions):
            raise StoreError(f"{len(positions) - found} of the positions asked are past the {embedder_id} vectors")
        return matrix

    def stage_vectors(self, embedder_id: str, folder: Path, *, outside_clustering: str | None = None,
                      file_mb: int = 64) -> int:
        """Write doc_id and vector of one embedder's vectors of current documents (only those in no cluster of
        ``outside_clustering`` when given) into Parquet files of about ``file_mb`` MB in ``folder`` (new), in no
        particular order (sorting the vectors would not fit a bounded memory), streamed by DuckDB; returns how many.
        Workers on other processes or machines read them (:mod:`.compute`)."""
        outside = ("" if outside_clustering is None else
                   f"ANTI JOIN (SELECT doc_id FROM clusters WHERE clustering_id = {_literal(outside_clustering)}) c "
                   "ON c.doc_id = e.doc_id ")
        return self.conn.execute(
            f"COPY (SELECT e.doc_id, e.vector FROM {self._one_per_key('embeddings')} e JOIN documents d "
            f"ON d.doc_id = e.doc_id {outside}WHERE e.embedder_id = {_literal(embedder_id)}) TO "
            f"{_literal(str(folder))} (FORMAT parquet, FILE_SIZE_BYTES '{int(file_mb)}MB', ROW_GROUP_SIZE 8192)"
        ).fetchone()[0]

    def cluster_samples(self, per_cluster: int, seed: int, *, labels: tuple[Sequence[str], Any] | None = None,
                        files: Sequence[str] = (), renumbered: Sequence[int] | None = None) -> dict[int, list[str]]:
        """Up to ``per_cluster`` doc_ids of each cluster, drawn by a seeded hash of the doc_id (the same draw
        whichever engine assigned them), from ``labels`` (doc_ids and their cluster ids, in memory) or from label
        shards (``files``, cluster ids ``renumbered`` as in :meth:`PartitionWriter.insert_cluster_labels`)."""
        if labels is not None:
            doc_ids, cluster_ids = labels
            given = pa.table({"doc_id": pa.array(list(doc_ids), pa.string()),
                              "cluster_id": pa.array(cluster_ids, pa.int32())})
            with _registered(self.conn, given) as name:
                return self._cluster_samples(name, per_cluster, seed)
        with _registered(self.conn, _renumbering(renumbered)) as numbers:
            return self._cluster_samples(_labels_source(files, numbers if renumbered is not None else None),
                                         per_cluster, seed)

    def _cluster_samples(self, source: str, per_cluster: int, seed: int) -> dict[int, list[str]]:
        rows = self.conn.execute(
            f"SELECT cluster_id, list(doc_id ORDER BY md5(doc_id || ?)) FROM (SELECT doc_id, cluster_id FROM {source} "
            "QUALIFY row_number() OVER (PARTITION BY cluster_id ORDER BY md5(doc_id || ?)) <= ?) GROUP BY cluster_id",
            [f":{seed}", f":{seed}", per_cluster]).fetchall()
        return {int(cluster): list(ids) for cluster, ids in rows}

    def embedding_matrix(self, embedder_id: str, crawl_id: str | None = None) -> tuple[list[str], Any]:
        """(doc_ids, float32 matrix) of one embedder's vectors of current documents, ordered by doc_id. The rows
        stream into one preallocated matrix, 65,536 at a time: the whole result never exists twice."""
        import numpy as np

        where = "WHERE e.embedder_id = ? AND (? IS NULL OR d.crawl_id = ?)"
        joined = f"FROM {self._one_per_key('embeddings')} e JOIN documents d ON d.doc_id = e.doc_id"
        rows, dimension = self.embedding_shape(embedder_id, crawl_id)
        matrix = np.empty((rows, dimension or 0), dtype=np.float32)
        doc_ids: list[str] = []
        reader = self.conn.execute(f"SELECT e.doc_id, e.vector {joined} {where} ORDER BY e.doc_id",
                                   [embedder_id, crawl_id, crawl_id]).fetch_record_batch(65_536)
        for batch in reader:
            table = pa.Table.from_batches([batch])
            matrix[len(doc_ids):len(doc_ids) + batch.num_rows] = _vector_matrix(table)
            doc_ids += table.column("doc_id").to_pylist()
        return doc_ids, matrix


    # -- clusters --------------------------------------------------------------------------------------
    def current_clustering(self) -> dict[str, Any] | None:
        """The clustering written last (clustering_id, embedder_id, method, written_at), or None."""
        row = self.conn.execute(
            "SELECT w.partition_value, w.written_at, s.embedder_id, s.method FROM partition_writes w "
            "JOIN cluster_summaries s ON s.clustering_id = w.partition_value "
            "WHERE w.table_name = 'cluster_summaries' ORDER BY w.written_at DESC LIMIT 1"
        ).fetchone()
        if row is None:
            return None
        return {"clustering_id": row[0], "written_at": row[1], "embedder_id": row[2], "method": row[3]}

    def clusters(self, clustering_id: str) -> pl.DataFrame:
        return self.conn.execute(
            "SELECT * FROM clusters WHERE clustering_id = ? ORDER BY doc_id", [clustering_id]
        ).pl()

    def documents_outside_clustering(self, clustering_id: str) -> tuple[int, int]:
        """(documents embedded with the clustering's embedder that are in none of its arms, those documents)."""
        return self.conn.execute(
            "WITH embedded AS (SELECT e.doc_id FROM embeddings e JOIN documents d USING (doc_id) WHERE e.embedder_id = "
            "(SELECT any_value(embedder_id) FROM cluster_summaries WHERE clustering_id = $c)) "
            "SELECT count(*) FILTER (WHERE c.doc_id IS NULL), count(*) FROM embedded e "
            "LEFT JOIN (SELECT doc_id FROM clusters WHERE clustering_id = $c) c USING (doc_id)",
            {"c": clustering_id},
        ).fetchone()

    def cluster_summaries(self, clustering_id: str) -> pl.DataFrame:
        return self.conn.execute(
            "SELECT * FROM cluster_summaries WHERE clustering_id = ? ORDER BY cluster_id", [clustering_id]
        ).pl()

    def embedded_without_cluster(self, clustering_id: str, embedder_id: str) -> list[str]:
        """Documents with a vector from ``embedder_id`` and no cluster in ``clustering_id``."""
        rows = self.conn.execute(
            "SELECT e.doc_id FROM embeddings e JOIN documents d ON d.doc_id = e.doc_id "
            "ANTI JOIN (SELECT doc_id FROM clusters WHERE clustering_id = ?) c ON c.doc_id = e.doc_id "
            "WHERE e.embedder_id = ? ORDER BY e.doc_id",
            [clustering_id, embedder_id],
        ).fetchall()
        return [doc_id for (doc_id,) in rows]

    def embedding_vectors(self, doc_ids: Sequence[str], embedder_id: str) -> Any:
        """The vectors of these documents from ``embedder_id``, in the order given (float32 matrix)."""
        with _registered(self.conn, _keys_in_order(doc_ids)) as name:
            table = _arrow_table(self.conn.execute(
                f"SELECT e.vector FROM {self._one_per_key('embeddings')} e JOIN {name} k ON e.doc_id = k.key "
                "WHERE e.embedder_id = ? "
                "ORDER BY k.position",
                [embedder_id],
            ))
        if table.num_rows != len(doc_ids):
            raise StoreError(f"{len(doc_ids) - table.num_rows} of the documents have no vector from {embedder_id}")
        return _vector_matrix(table)

    # -- text vectors (QA pairs, reference pairs) -----------------------------------------------------------
    def text_vectors(self, text_hashes: Sequence[str], embedder_id: str) -> tuple[list[str], Any]:
        """(hashes found, float32 matrix) of the vectors ``embedder_id`` has for these text hashes."""
        with _registered(self.conn, _keys_in_order(text_hashes)) as name:
            table = _arrow_table(self.conn.execute(
                f"SELECT t.text_hash, t.vector FROM {self._one_per_key('text_embeddings')} t "
                f"JOIN {name} k ON t.text_hash = k.key "
                "WHERE t.embedder_id = ? ORDER BY k.position",
                [embedder_id],
            ))
        return table.column("text_hash").to_pylist(), _vector_matrix(table)

    def insert_text_vectors(self, rows: pl.DataFrame) -> None:
        """Add vectors of texts (committed at once; one already there for its hash and embedder is kept)."""
        self._check_writable()
        _check_columns("text_embeddings", rows.columns)
        self._retrying("saving text vectors", lambda: _insert_frame(
            self.conn, "text_embeddings", rows, keep_existing=True, lake=self.lake))

    # -- bandit rounds -----------------------------------------------------------------------------------
    # A document counts as extracted once an extraction of an earlier round (the warm-up, round 0, included) holds it
    # with a status other than ``retry_statuses`` (a transient failure makes it a candidate again).
    _EXTRACTED_BEFORE = (
        "SELECT DISTINCT e.doc_id FROM extractions e JOIN rounds r ON r.round_id = e.round_id "
        "WHERE r.round_no < ? AND NOT list_contains(?, e.status)"
    )

    def rounds_before(self, round_no: int) -> pl.DataFrame:
        """The rounds played before round ``round_no`` (the warm-up is round 0), in order."""
        return self.conn.execute("SELECT * FROM rounds WHERE round_no < ? ORDER BY round_no", [round_no]).pl()

    def last_round_no(self) -> int | None:
        """The number of the latest bandit round played (the warm-up, round 0, is not one); None before round 1."""
        return self.conn.execute("SELECT max(round_no) FROM rounds WHERE round_no >= 1").fetchone()[0]

    def rounds_after(self, round_no: int) -> list[int]:
        return [r for (r,) in self.conn.execute("SELECT round_no FROM rounds WHERE round_no > ? ORDER BY 1", [round_no]).fetchall()]

    def attempts_before(self, round_no: int, doc_ids: Sequence[str]) -> dict[str, int]:
        """doc_id -> extractions of it in rounds before ``round_no`` (the warm-up's included), for these documents
        (those never attempted are left out)."""
        with _registered(self.conn, _keys_in_order(doc_ids)) as name:
            rows = self.conn.execute(
                f"SELECT e.doc_id, count(*) FROM extractions e JOIN {name} k ON e.doc_id = k.key "
                "JOIN rounds r ON r.round_id = e.round_id WHERE r.round_no < ? GROUP BY 1", [round_no]).fetchall()
        return {doc_id: int(n) for doc_id, n in rows}

    def round_by_no(self, round_no: int) -> dict[str, Any] | None:
        rows = self.conn.execute("SELECT * FROM rounds WHERE round_no = ?", [round_no]).pl().to_dicts()
        return rows[0] if rows else None

    def spent_before(self, round_no: int) -> tuple[int, int]:
        """(documents, tokens) spent by the rounds before ``round_no``, the warm-up's included."""
        docs, tokens = self.conn.execute(
            "SELECT coalesce(sum(docs_spent), 0), coalesce(sum(tokens_spent), 0) FROM rounds WHERE round_no < ?",
            [round_no],
        ).fetchone()
        return int(docs), int(tokens)

    def unextracted_per_cluster(self, clustering_id: str, round_no: int, retry_statuses: Sequence[str]) -> dict[int, int]:
        """cluster_id -> documents of the clustering not extracted before round ``round_no``."""
        rows = self.conn.execute(
            f"SELECT c.cluster_id, count(*) FROM clusters c JOIN documents d ON d.doc_id = c.doc_id "
            f"ANTI JOIN ({self._EXTRACTED_BEFORE}) x ON x.doc_id = c.doc_id WHERE c.clustering_id = ? GROUP BY 1",
            [round_no, list(retry_statuses), clustering_id],
        ).fetchall()
        return {int(cluster): int(n) for cluster, n in rows}

    def sample_unextracted_in_clusters(self, clustering_id: str, round_no: int, retry_statuses: Sequence[str],
                                       quotas: dict[int, int], sample_key: str) -> pl.DataFrame:
        """Up to ``quotas[cluster]`` documents of each cluster not extracted before round ``round_no``, drawn by
        md5(sample_key, doc_id) order (seeded, reproducible). Columns cluster_id, doc_id, text."""
        wanted = pa.table({"cluster_id": pa.array(list(quotas), pa.int32()),
                           "quota": pa.array(list(quotas.values()), pa.int64())})
        with _registered(self.conn, wanted) as name:
            return self.conn.execute(
                f"SELECT cluster_id, doc_id, text FROM (SELECT c.cluster_id, c.doc_id, d.text, q.quota, row_number() "
                f"OVER (PARTITION BY c.cluster_id ORDER BY md5(? || ':' || c.doc_id), c.doc_id) AS draw "
                f"FROM clusters c JOIN {name} q ON q.cluster_id = c.cluster_id JOIN documents d ON d.doc_id = c.doc_id "
                f"ANTI JOIN ({self._EXTRACTED_BEFORE}) x ON x.doc_id = c.doc_id WHERE c.clustering_id = ?) "
                "WHERE draw <= quota ORDER BY cluster_id, draw",
                [sample_key, round_no, list(retry_statuses), clustering_id],
            ).pl()

    def unextracted_count(self, round_no: int, retry_statuses: Sequence[str]) -> int:
        return self.conn.execute(
            f"SELECT count(*) FROM documents d ANTI JOIN ({self._EXTRACTED_BEFORE}) x ON x.doc_id = d.doc_id",
            [round_no, list(retry_statuses)],
        ).fetchone()[0]

    def unextracted_documents(self, round_no: int, retry_statuses: Sequence[str],
                              embedded_by: str | None = None) -> pl.DataFrame:
        """Every document not extracted before round ``round_no`` (doc_id, text), by doc_id; with ``embedded_by``,
        only those with a vector from that embedder."""
        embedded = "SEMI JOIN embeddings e ON e.doc_id = d.doc_id AND e.embedder_id = ? " if embedded_by else ""
        return self.conn.execute(
            f"SELECT d.doc_id, d.text FROM documents d ANTI JOIN ({self._EXTRACTED_BEFORE}) x ON x.doc_id = d.doc_id "
            f"{embedded}ORDER BY d.doc_id",
            [round_no, list(retry_statuses)] + ([embedded_by] if embedded_by else []),
        ).pl()

    def sample_unextracted_documents(self, round_no: int, retry_statuses: Sequence[str], n: int, *,
                                     sample_key: str | None) -> pl.DataFrame:
        """``n`` documents not extracted before round ``round_no``: drawn by md5(sample_key, doc_id) order, or, with
        ``sample_key`` None, the first in source order (crawl, file, line). Columns doc_id, text."""
        order = "md5(? || ':' || d.doc_id), d.doc_id" if sample_key is not None else "d.crawl_id, d.source_file, d.line_no"
        parameters = [round_no, list(retry_statuses)] + ([sample_key] if sample_key is not None else []) + [n]
        return self.conn.execute(
            f"SELECT d.doc_id, d.text FROM documents d ANTI JOIN ({self._EXTRACTED_BEFORE}) x ON x.doc_id = d.doc_id "
            f"ORDER BY {order} LIMIT ?",
            parameters,
        ).pl()

    def clusters_of(self, doc_ids: Sequence[str], clustering_id: str) -> dict[str, int]:
        """doc_id -> cluster_id in ``clustering_id`` (documents without one are left out)."""
        with _registered(self.conn, _keys_in_order(doc_ids)) as name:
            rows = self.conn.execute(
                f"SELECT c.doc_id, c.cluster_id FROM clusters c JOIN {name} k ON c.doc_id = k.key WHERE c.clustering_id = ?",
                [clustering_id],
            ).fetchall()
        return {doc_id: int(cluster) for doc_id, cluster in rows}

    def unextracted_new_documents(self, clustering_id: str, retry_statuses: Sequence[str]) -> int:
        """Documents of the clustering ingested after the last round finished and never extracted (what a
        re-extraction round would pick up)."""
        return self.conn.execute(
            f"SELECT count(*) FROM clusters c JOIN documents d ON d.doc_id = c.doc_id "
            f"ANTI JOIN ({self._EXTRACTED_BEFORE}) x ON x.doc_id = c.doc_id "
            "WHERE c.clustering_id = ? AND d.ingested_at > (SELECT coalesce(max(finished_at), TIMESTAMP '1970-01-01') FROM rounds)",
            [2**31 - 1, list(retry_statuses), clustering_id],
        ).fetchone()[0]

    def qa_pairs_of_rounds(self, round_ids: Sequence[str] | None = None) -> pl.DataFrame:
        """QA pairs (qa_id, doc_id, round_id, question, answer) of these rounds, or of all."""
        if round_ids is None:
            return self.conn.execute(
                "SELECT qa_id, doc_id, round_id, question, answer FROM qa_pairs ORDER BY round_id, doc_id, qa_id"
            ).pl()
        with _registered(self.conn, _keys_in_order(round_ids)) as name:
            return self.conn.execute(
                f"SELECT q.qa_id, q.doc_id, q.round_id, q.question, q.answer FROM qa_pairs q JOIN {name} r "
                "ON q.round_id = r.key ORDER BY r.position, q.doc_id, q.qa_id"
            ).pl()

    def set_qa_quality(self, rows: pl.DataFrame) -> int:
        """Write quality, quality_score, kept and drop_reason of the QA pairs in ``rows`` (keyed by qa_id) into their
        current rows, in one transaction; pairs not in ``rows`` keep theirs. Returns the pairs updated."""
        self._check_writable()
        _check_columns("qa_pairs", rows.columns)
        columns = ("quality", "quality_score", "kept", "drop_reason")
        current = "qa_pairs_rows.write_id IN (SELECT write_id FROM partition_writes WHERE table_name = 'qa_pairs')"

        def update(name: str) -> int:
            n = self.conn.execute(
                f"SELECT count(*) FROM qa_pairs_rows JOIN {name} u ON qa_pairs_rows.qa_id = u.qa_id WHERE {current}"
            ).fetchone()[0]
            self.conn.execute(f"UPDATE qa_pairs_rows SET {', '.join(f'{c} = u.{c}' for c in columns)} FROM {name} u "
                              f"WHERE qa_pairs_rows.qa_id = u.qa_id AND {current}")
            return n

        with _registered(self.conn, rows.select("qa_id", *columns).to_arrow()) as name:
            return self._retrying("writing the QA pairs' quality", lambda: update(name), in_transaction=True)

    def unscored_pairs(self) -> int:
        """QA pairs that no qa_dataset build has scored yet (rounds played since the last one)."""
        return self.conn.execute("SELECT count(*) FROM qa_pairs WHERE kept IS NULL").fetchone()[0]

    def kept_pairs(self) -> pl.DataFrame:
        """The pairs qa_dataset kept, best quality first: qa_id, doc_id, round_id, question, answer, quality_score."""
        return self.conn.execute(
            "SELECT qa_id, doc_id, round_id, question, answer, quality_score FROM qa_pairs WHERE kept "
            "ORDER BY quality_score DESC NULLS LAST, qa_id"
        ).pl()

    def drop_reasons(self) -> tuple[int, dict[str, int]]:
        """(pairs qa_dataset scored, dropped pairs per drop_reason) as its last build left them."""
        rows = self.conn.execute("SELECT drop_reason, count(*) FROM qa_pairs WHERE kept IS NOT NULL GROUP BY 1").fetchall()
        return sum(n for _, n in rows), {reason: n for reason, n in rows if reason is not None}

    # -- models and evaluations --------------------------------------------------------------------------
    def save_model(self, row: pl.DataFrame, qa_ids: Sequence[str]) -> None:
        """Add or replace one ``models`` row and the QA pairs it was trained on, in one transaction."""
        self._check_writable()
        _check_columns("models", row.columns)
        model_id = row["model_id"][0]
        pairs = pl.DataFrame({"model_id": [model_id] * len(qa_ids), "qa_id": list(qa_ids)},
                             schema={"model_id": pl.String, "qa_id": pl.String}).unique(maintain_order=True)

        def replace() -> None:
            self.conn.execute("DELETE FROM models WHERE model_id = ?", [model_id])
            self.conn.execute("DELETE FROM model_training_pairs WHERE model_id = ?", [model_id])
            _insert_frame(self.conn, "models", row)
            if pairs.height:
                _insert_frame(self.conn, "model_training_pairs", pairs)

        self._retrying(f"saving model {model_id}", replace, in_transaction=True)

    def models_trained_on(self, qa_id: str) -> pl.DataFrame:
        """The models whose training set held ``qa_id``, with their eval scores (one row per score; NULL metric when
        a model has none yet)."""
        return self.conn.execute(
            "SELECT m.model_id, m.base_model, m.dataset_hash, m.path, m.train_loss, s.task, s.metric, s.value "
            "FROM model_training_pairs p JOIN models m ON m.model_id = p.model_id "
            "LEFT JOIN eval_scores s ON s.model_id = m.model_id WHERE p.qa_id = ? ORDER BY m.model_id, s.task, s.metric",
            [qa_id],
        ).pl()

    def models(self) -> pl.DataFrame:
        return self.conn.execute("SELECT * FROM models ORDER BY created_at").pl()

    def replace_eval_scores(self, model_id: str, rows: pl.DataFrame) -> None:
        """Replace every score of ``model_id`` with ``rows``, in one transaction."""
        self._check_writable()
        _check_columns("eval_scores", rows.columns)

        def replace() -> None:
            self.conn.execute("DELETE FROM eval_scores WHERE model_id = ?", [model_id])
            if rows.height:
                _insert_frame(self.conn, "eval_scores", rows)

        self._retrying(f"saving the scores of {model_id}", replace, in_transaction=True)

    def eval_scores(self, model_id: str | None = None) -> pl.DataFrame:
        return self.conn.execute(
            "SELECT * FROM eval_scores WHERE ? IS NULL OR model_id = ? ORDER BY model_id, task, metric",
            [model_id, model_id],
        ).pl()

    def lineage(self, qa_id: str) -> dict[str, Any] | None:
        """Everything the store knows about where QA pair ``qa_id`` came from, table by table (None: no such pair)."""
        def one(sql: str, parameters: list[Any]) -> dict[str, Any] | None:
            rows = self.conn.execute(sql, parameters).pl().to_dicts()
            return rows[0] if rows else None

        qa = one("SELECT * FROM qa_pairs WHERE qa_id = ?", [qa_id])
        if qa is None:
            return None
        document = one("SELECT doc_id, crawl_id, source_file, line_no, url, n_chars, content_hash, ingested_at, "
                       "left(text, 400) AS text_start FROM documents WHERE doc_id = ?", [qa["doc_id"]])
        round_row = one("SELECT * FROM rounds WHERE round_id = ?", [qa["round_id"]])
        extraction = one("SELECT * FROM extractions WHERE doc_id = ? AND round_id = ?", [qa["doc_id"], qa["round_id"]])
        clustering_id = (round_row or {}).get("clustering_id") or (self.current_clustering() or {}).get("clustering_id")
        cluster = summary = None
        if clustering_id:
            cluster = one("SELECT * FROM clusters WHERE doc_id = ? AND clustering_id = ?", [qa["doc_id"], clustering_id])
            if cluster:
                summary = one("SELECT cluster_id, size, top_terms, sample_lines, method, embedder_id FROM cluster_summaries "
                              "WHERE clustering_id = ? AND cluster_id = ?", [clustering_id, cluster["cluster_id"]])
        quarantined_nearby = None
        if document:
            quarantined_nearby = self.conn.execute(
                "SELECT count(*) FROM quarantine WHERE crawl_id = ? AND source_file = ?",
                [document["crawl_id"], document["source_file"]],
            ).fetchone()[0]
        return {"qa_pair": qa, "document": document, "cluster": cluster, "cluster_summary": summary, "round": round_row,
                "extraction": extraction, "source_file_quarantined_rows": quarantined_nearby}


def table_frame(table: str, columns: dict[str, list[Any]]) -> pl.DataFrame:
    """A DataFrame of ``table``'s columns (those given, in the table's order), typed as the store has them."""
    _check_columns(table, list(columns))
    ordered = [c for c in TABLES[table] if c in columns]
    return pl.DataFrame({c: columns[c] for c in ordered}, schema={c: _POLARS_TYPES[table][c] for c in ordered})


def _polars_type(sql_type: str) -> Any:
    base = sql_type.split()[0]
    return {
        "VARCHAR": pl.String,
        "JSON": pl.String,
        "BIGINT": pl.Int64,
        "INTEGER": pl.Int32,
        "DOUBLE": pl.Float64,
        "BOOLEAN": pl.Boolean,
        "TIMESTAMP": pl.Datetime("us"),
        "FLOAT[]": pl.List(pl.Float32),
    }[base]


_POLARS_TYPES: dict[str, dict[str, Any]] = {
    table: {column: _polars_type(sql_type) for column, sql_type in columns.items()}
    for table, columns in TABLES.items()
}
