"""qa_dataset's core: every pair scored and kept or dropped with its reason, written back, the kept ones exported."""

import json

import polars as pl

from equal_dagster.core.embedding import Embedder
from equal_dagster.core.extraction import Document
from equal_dagster.core.extraction.extractor import RuleExtractor
from equal_dagster.core.qa_dataset import DatasetParams, build_qa_dataset
from equal_dagster.core.rounds import write_extraction_round
from equal_dagster.core.store import Store

PLANTED = "Ava has 40 apples. Ava gives 12 to Liam and then buys 9 more. How many apples does Ava have now?"


def documents():
    docs = []
    for i in range(14):
        a, b = 3 * i + 2, 7 * i + 5
        docs.append(Document(f"d{i:02d}", f"Q: What is {a} plus {b} when counting {['apples', 'pears', 'coins'][i % 3]}?\n"
                                          f"A: Add {a} and {b}: {a} + {b} = {a + b}. The answer is {a + b}."))
    docs.append(Document("dup", docs[0].text))  # the same pair again
    docs.append(Document("near", docs[1].text.replace("The answer is", "So the answer is")))
    docs.append(Document("planted", f"Q: {PLANTED}\nA: 40 - 12 + 9 = 37. The answer is 37."))
    docs.append(Document("refers", "Q: What does this table show about the totals?\nA: It shows the totals per month."))
    return docs


def test_every_pair_gets_its_scores_and_reason_and_the_kept_ones_are_exported(tmp_path):
    with Store.open(tmp_path / "store.duckdb") as store:
        run = RuleExtractor().extract(documents())
        write_extraction_round(store, "round-0", 0, "warmup", run, seed=0, dagster_run_id="run-0")
        params = DatasetParams(top_k=8, near_duplicate_threshold=0.5)
        report = build_qa_dataset(store, Embedder(), [PLANTED], params, tmp_path / "export")
        pairs = store.qa_pairs()
    assert report.pairs == pairs.height == 18
    assert report.dropped == {"contaminated": 1, "exact_duplicate": 1, "near_duplicate": 1, "reinstruct": 1,
                              "below_top_k": 6}
    assert report.kept == 8 == pairs["kept"].sum()
    by_doc = {row["doc_id"]: row for row in pairs.to_dicts()}
    assert by_doc["dup"]["drop_reason"] == "exact_duplicate" and by_doc["d00"]["kept"] in (True, False)
    assert json.loads(by_doc["dup"]["quality"])["duplicate_of"] == by_doc["d00"]["qa_id"]
    assert by_doc["planted"]["drop_reason"] == "contaminated"
    assert "ava gives 12 to liam" in json.loads(by_doc["planted"]["quality"])["contamination"]
    assert by_doc["refers"]["drop_reason"] == "reinstruct:refers_to_text"
    indicators = json.loads(by_doc["d03"]["quality"])
    assert {"input_length", "output_length", "mtld", "knn6", "reward", "perplexity", "naturalness", "coherence",
            "understandability"} <= set(indicators)
    assert indicators["reward"] is None and any("reward" in m for m in report.missing_indicators)
    assert pairs["quality_score"].null_count() == 0  # 18 pairs: every one has six neighbours
    kept = pairs.filter(pl.col("kept")).sort("quality_score", descending=True)
    dropped_by_rank = pairs.filter(pl.col("drop_reason") == "below_top_k")
    assert kept["quality_score"].min() >= dropped_by_rank["quality_score"].max()
    exported = pl.read_parquet(report.files["parquet"])
    assert exported["qa_id"].to_list() == kept["qa_id"].to_list()  # best first
    assert len(report.dataset_hash) == 64
    lines = open(report.files["chat"]).read().splitlines()
    assert len(lines) == 8 and json.loads(lines[0])["qa_id"] == kept["qa_id"][0]
