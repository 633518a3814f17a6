"""The QA dataset written out for training tools: OpenAI chat JSONL, Alpaca, ShareGPT and Parquet.

Rules:

* Every row carries its lineage: ``qa_id``, ``doc_id`` and ``round_id`` (and the quality score when there is one),
  beside the format's own fields, so that any training example can be traced back (`equal lineage QA_ID`).
* ``chat``: ``{"messages": [{"role": "user", ...}, {"role": "assistant", ...}]}`` (OpenAI fine-tuning form; a
  system message when one is given). ``alpaca``: ``instruction``, ``input`` (empty: the question is the
  instruction), ``output``. ``sharegpt``: ``{"conversations": [{"from": "human", ...}, {"from": "gpt", ...}]}``.
  ``parquet``: one column per field, flat.
* JSONL is UTF-8, one object per line, keys sorted; a file is written to a temporary name and renamed, so a reader
  never sees half of one.
* The dataset's hash is the sha256 of its (qa_id, question, answer) rows in order: the same selection gives the same
  hash whatever the format.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path

import polars as pl

FORMATS = ("chat", "alpaca", "sharegpt", "parquet")
SUFFIX = {"chat": ".chat.jsonl", "alpaca": ".alpaca.jsonl", "sharegpt": ".sharegpt.jsonl", "parquet": ".parquet"}
LINEAGE = ("qa_id", "doc_id", "round_id")


def dataset_hash(rows: pl.DataFrame) -> str:
    digest = hashlib.sha256()
    for qa_id, question, answer in rows.select("qa_id", "question", "answer").iter_rows():
        digest.update(f"{qa_id}\x1f{question}\x1f{answer}\x1e".encode())
    return digest.hexdigest()


def _lineage(row: dict) -> dict:
    out = {k: row[k] for k in LINEAGE}
    if row.get("quality_score") is not None:
        out["quality_score"] = row["quality_score"]
    return out


def format_row(row: dict, fmt: str, system: str | None = None) -> dict:
    """One QA row (qa_id, doc_id, round_id, question, answer[, quality_score]) in format ``fmt``."""
    if fmt == "chat":
        messages = ([{"role": "system", "content": system}] if system else []) + [
            {"role": "user", "content": row["question"]}, {"role": "assistant", "content": row["answer"]}]
        return {"messages": messages, **_lineage(row)}
    if fmt == "alpaca":
        return {"instruction": row["question"], "input": "", "output": row["answer"], **_lineage(row)}
    if fmt == "sharegpt":
        conversations = ([{"from": "system", "value": system}] if system else []) + [
            {"from": "human", "value": row["question"]}, {"from": "gpt", "value": row["answer"]}]
        return {"conversations": conversations, **_lineage(row)}
    raise ValueError(f"unknown export format {fmt!r}: choose one of {', '.join(FORMATS)}")


def _replace_atomically(path: Path, write) -> None:
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def export_dataset(rows: pl.DataFrame, out_dir: str | Path, formats: Sequence[str] = FORMATS, *,
                   name: str = "qa_dataset", system: str | None = None) -> dict[str, Path]:
    """Write ``rows`` in each of ``formats`` under ``out_dir``; returns format -> file."""
    missing = [c for c in (*LINEAGE, "question", "answer") if c not in rows.columns]
    if missing:
        raise ValueError(f"the rows lack column(s) {', '.join(missing)}")
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ValueError(f"unknown export format(s) {', '.join(unknown)}: choose among {', '.join(FORMATS)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = {}
    records = rows.to_dicts()
    for fmt in formats:
        path = out / f"{name}{SUFFIX[fmt]}"
        if fmt == "parquet":
            _replace_atomically(path, lambda tmp: rows.write_parquet(tmp))
        else:
            def write_jsonl(tmp: Path, fmt: str = fmt) -> None:
                with open(tmp, "w", encoding="utf-8") as f:
                    for record in records:
                        f.write(json.dumps(format_row(record, fmt, system), ensure_ascii=False, sort_keys=True) + "\n")

            _replace_atomically(path, write_jsonl)
        written[fmt] = path
    return written
