"""The ledger: extraction results as rows of the store's ``extractions`` and ``qa_pairs`` tables.

Every extraction row records backend, model, strategy, prompt version, the first call's cache key, tokens in and
out (the backend's usage, else counted; ``tokens_counted_by`` says how), latency, retries, whether the cache
answered, status and error, and each call it took (``calls``, JSON). Every QA pair carries the document and round
it came from and the extractor (backend, model, prompt version) that made it; its id is a hash of those, so a
re-run of the same round gives the same ids.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from datetime import datetime

import polars as pl

from equal_dagster.core.extraction.results import ExtractionResult
from equal_dagster.core.store import table_frame


def qa_id(round_id: str, doc_id: str, ordinal: int, question: str) -> str:
    digest = hashlib.blake2b(f"{round_id}\x1f{doc_id}\x1f{ordinal}\x1f{question}".encode(), digest_size=12)
    return "qa-" + digest.hexdigest()


def extractor_label(result: ExtractionResult) -> str:
    return ":".join(part for part in (result.backend, result.model or "", result.prompt_version or "") if part)


def extraction_rows(
    results: Sequence[ExtractionResult], round_id: str, dagster_run_id: str | None, at: datetime
) -> pl.DataFrame:
    return table_frame("extractions", {
        "doc_id": [r.doc_id for r in results],
        "round_id": [round_id] * len(results),
        "backend": [r.backend for r in results],
        "model": [r.model for r in results],
        "prompt_version": [r.prompt_version for r in results],
        "cache_key": [r.cache_key for r in results],
        "tokens_in": [r.tokens_in for r in results],
        "tokens_out": [r.tokens_out for r in results],
        "latency_s": [round(r.latency_s, 6) for r in results],
        "status": [r.status for r in results],
        "error": [r.error for r in results],
        "dagster_run_id": [dagster_run_id] * len(results),
        "extracted_at": [at] * len(results),
        "strategy": [r.strategy for r in results],
        "n_qa": [len(r.qa_pairs) for r in results],
        "retries": [r.retries for r in results],
        "cache_hit": [r.cache_hit for r in results],
        "tokens_counted_by": [r.tokens_counted_by or _counted_by(r) for r in results],
        "calls": [json.dumps([c.as_json() for c in r.calls]) for r in results],
    })


def _counted_by(result: ExtractionResult) -> str | None:
    methods = sorted({c.tokens_counted_by for c in result.calls})
    return "+".join(methods) if methods else None


def qa_pair_rows(results: Sequence[ExtractionResult], round_id: str, dagster_run_id: str | None, at: datetime) -> pl.DataFrame:
    columns: dict[str, list] = {k: [] for k in ("qa_id", "doc_id", "round_id", "question", "answer", "extractor",
                                                 "dagster_run_id", "created_at")}
    for result in results:
        label = extractor_label(result)
        for ordinal, pair in enumerate(result.qa_pairs):
            columns["qa_id"].append(qa_id(round_id, result.doc_id, ordinal, pair.question))
            columns["doc_id"].append(result.doc_id)
            columns["round_id"].append(round_id)
            columns["question"].append(pair.question)
            columns["answer"].append(pair.answer)
            columns["extractor"].append(label)
            columns["dagster_run_id"].append(dagster_run_id)
            columns["created_at"].append(at)
    return table_frame("qa_pairs", columns)
