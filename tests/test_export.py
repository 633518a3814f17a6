"""Exports load with datasets.load_dataset("json", ...) (Parquet with polars) and keep each row's lineage."""

import polars as pl
import pytest

from equal_dagster.core.export import FORMATS, dataset_hash, export_dataset


@pytest.fixture
def rows():
    return pl.DataFrame({
        "qa_id": ["qa-1", "qa-2"], "doc_id": ["d1", "d2"], "round_id": ["r0001", "round-0"],
        "question": ["What is 2 + 3?", "Wie spät ist es? \"quoted\" and\nnewline"],
        "answer": ["2 + 3 = 5.", "Es ist 5 Uhr — ünïcödé kept."],
        "quality_score": [0.8, None],
    })


def test_each_export_loads_and_keeps_lineage(rows, tmp_path):
    from datasets import load_dataset

    files = export_dataset(rows, tmp_path, system="You solve math problems.")
    assert set(files) == set(FORMATS)
    chat = load_dataset("json", data_files=str(files["chat"]), split="train")
    assert chat[0]["messages"] == [{"role": "system", "content": "You solve math problems."},
                                   {"role": "user", "content": "What is 2 + 3?"},
                                   {"role": "assistant", "content": "2 + 3 = 5."}]
    assert chat[1]["qa_id"] == "qa-2" and chat[1]["round_id"] == "round-0" and chat[0]["quality_score"] == 0.8
    alpaca = load_dataset("json", data_files=str(files["alpaca"]), split="train")
    assert alpaca[1]["instruction"] == rows["question"][1] and alpaca[1]["input"] == "" and alpaca[1]["output"] == rows["answer"][1]
    sharegpt = load_dataset("json", data_files=str(files["sharegpt"]), split="train")
    assert [t["from"] for t in sharegpt[0]["conversations"]] == ["system", "human", "gpt"]
    assert sharegpt[0]["doc_id"] == "d1"
    assert pl.read_parquet(files["parquet"]).equals(rows)
    assert not list(tmp_path.glob("*.tmp"))


def test_the_hash_follows_the_rows_not_the_format(rows):
    assert dataset_hash(rows) == dataset_hash(rows.clone())
    assert dataset_hash(rows) != dataset_hash(rows.reverse())
    with pytest.raises(ValueError, match="unknown export format"):
        export_dataset(rows, "unused", ["csv"])
    with pytest.raises(ValueError, match="lack column"):
        export_dataset(rows.drop("round_id"), "unused")
