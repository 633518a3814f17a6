"""A writer process for the DuckLake store's concurrency tests (tests/test_store_lake.py).

    python tests/lake_writer.py CATALOG DATA_PATH JOB_JSON

JOB_JSON: {"crawls": [[crawl_id, n_docs, batches], ...], "tag": "w1"} ingests each crawl (documents and quarantine,
one partition write each, ``batches`` appends; texts end with "by <tag>"; a crawl another writer replaced meanwhile
is reported as lost); {"rounds": [round_no, ...]} writes those rounds (rounds, extractions, qa_pairs);
{"hang_in": crawl_id, "ready": path} appends a first batch of that crawl, touches ``ready`` and sleeps (to be
killed mid-write). Prints one JSON line: the partitions written and the seconds it took.
"""

from __future__ import annotations

import json
import sys
import time
from datetime import datetime
from pathlib import Path

import polars as pl

from equal_dagster.core.store import LakeLocation, PartitionConflict, Store, table_frame


def documents(crawl: str, start: int, n: int, by: str = "") -> pl.DataFrame:
    ids = [f"{crawl}-{i}" for i in range(start, start + n)]
    return table_frame("documents", {
        "doc_id": ids, "crawl_id": [crawl] * n, "source_file": ["f.jsonl"] * n, "line_no": list(range(start, start + n)),
        "url": [None] * n, "text": [f"text of {i}{by}" for i in ids], "n_chars": [10] * n, "content_hash": ids,
        "ingested_at": [datetime(2026, 1, 1)] * n,
    })


def quarantined(crawl: str) -> pl.DataFrame:
    return table_frame("quarantine", {
        "crawl_id": [crawl], "source_file": ["f.jsonl"], "line_no": [0], "reason": ["empty_text"], "detail": [None],
        "raw_excerpt": ["{}"], "quarantined_at": [datetime(2026, 1, 1)],
    })


def round_rows(round_no: int) -> dict[str, pl.DataFrame]:
    round_id = f"round-{round_no}"
    docs = [f"crawl-0-{i}" for i in range(5)]
    return {
        "rounds": table_frame("rounds", {
            "round_id": [round_id], "round_no": [round_no], "policy": ["ucb"], "finished_at": [datetime(2026, 1, 2)],
            "docs_spent": [len(docs)], "tokens_spent": [0]}),
        "extractions": table_frame("extractions", {
            "doc_id": docs, "round_id": [round_id] * 5, "backend": ["rules"] * 5, "status": ["ok"] * 5,
            "extracted_at": [datetime(2026, 1, 2)] * 5}),
        "qa_pairs": table_frame("qa_pairs", {
            "qa_id": [f"{round_id}-{d}" for d in docs], "doc_id": docs, "round_id": [round_id] * 5,
            "question": ["q?"] * 5, "answer": ["a."] * 5, "extractor": ["rules"] * 5,
            "created_at": [datetime(2026, 1, 2)] * 5}),
    }


def main(catalog: str, data_path: str, job: dict) -> None:
    started = time.monotonic()
    written, lost = [], []
    by = f" by {job['tag']}" if "tag" in job else ""
    with Store.open(LakeLocation(catalog, data_path)) as store:
        for crawl, n, batches in job.get("crawls", []):
            try:
                with store.replace_partition("crawl_id", crawl, ["documents", "quarantine"]) as writer:
                    per_batch = n // batches
                    for b in range(batches):
                        writer.insert("documents", documents(crawl, b * per_batch, per_batch, by))
                    writer.insert("quarantine", quarantined(crawl))
            except PartitionConflict as exc:  # another writer replaced the same crawl meanwhile: it won
                lost.append(crawl)
                print(exc, file=sys.stderr)
                continue
            written.append(crawl)
        for round_no in job.get("rounds", []):
            rows = round_rows(round_no)
            with store.replace_partition("round_id", f"round-{round_no}", list(rows)) as writer:
                for table, frame in rows.items():
                    writer.insert(table, frame)
            written.append(f"round-{round_no}")
        if "hang_in" in job:
            with store.replace_partition("crawl_id", job["hang_in"], ["documents"]) as writer:
                writer.insert("documents", documents(job["hang_in"], 0, 100))
                Path(job["ready"]).touch()
                time.sleep(600)
        retried = store.conflicts_retried
    print(json.dumps({"written": len(written), "lost": lost, "conflicts_retried": retried,
                      "seconds": round(time.monotonic() - started, 2)}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], json.loads(sys.argv[3]))
