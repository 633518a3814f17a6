"""The contrastive `embedder` asset: the fallback to the base embedder, a real (small) fine-tune, and the tuned
embedder taking over `embeddings`."""

import json

import dagster as dg
import pytest
from conftest import write_jsonl

from equal_dagster.core.contrastive import TrainingPair, recall_at_k, split_by_document
from equal_dagster.core.embedding import EMBEDDER_INFO, Embedder
from equal_dagster.core.store import Store
from equal_dagster.definitions import build_definitions
from equal_dagster.demo.math_problems import math_problem
from equal_dagster.partitions import crawls_partitions
from equal_dagster.resources.llm import ExtractionResource


def math_crawl(paths, n=24, seed=0):
    import random

    rng = random.Random(seed)
    rows = []
    for i in range(n):
        problems = [math_problem(rng) for _ in range(2)]
        text = "\n\n".join(f"Problem {k + 1}. {p.question}\nSolution. {' '.join(p.steps)} The answer is {p.answer}."
                           for k, p in enumerate(problems))
        rows.append({"id": f"m{i:02d}", "text": "Worksheet\n\n" + text})
    write_jsonl(paths.crawl_dir / "crawl-a" / "part.jsonl", rows)


def run(defs, instance, job, **kwargs):
    result = defs.resolve_job_def(job).execute_in_process(instance=instance, **kwargs)
    assert result.success
    return result


def metadata(result, node):
    return {k: v.value for k, v in result.asset_materializations_for_node(node)[0].metadata.items()}


@pytest.fixture
def warmed_up(paths):
    math_crawl(paths)
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(crawls_partitions.name, ["crawl-a"])
        defs = build_definitions(paths, llm=ExtractionResource())
        run(defs, instance, "ingest_crawl", partition_key="crawl-a")
        run(defs, instance, "warmup", run_config={"ops": {"warmup_extractions": {"config": {"fraction": 1.0}}}})
        yield defs, instance


def test_too_few_pairs_keeps_the_base_embedder_and_says_why(paths, warmed_up):
    defs, instance = warmed_up
    result = run(defs, instance, "tune_embedder")
    meta = metadata(result, "embedder")
    assert meta["trained"] is False and meta["embedder_id"] == "all-MiniLM-L6-v2"
    assert "48 warm-up QA pairs, fewer than min_pairs = 50" in meta["reason"]
    current = json.loads((paths.home / "embedders" / "current.json").read_text())
    assert current["embedder_id"] == "all-MiniLM-L6-v2"


def test_a_tuned_embedder_is_saved_reported_and_used_by_embeddings(paths, warmed_up):
    defs, instance = warmed_up
    run(defs, instance, "embed_crawl", partition_key="crawl-a")
    config = {"min_pairs": 10, "epochs": 1, "batch_size": 8, "keep_base_if_worse": False}
    meta = metadata(run(defs, instance, "tune_embedder", run_config={"ops": {"embedder": {"config": config}}}), "embedder")
    assert meta["trained"] is True and meta["embedder_id"].startswith("equal-all-MiniLM-L6-v2-")
    assert meta["warmup_pairs"] == 48 and meta["train_pairs"] + meta["held_out_pairs"] == 48
    assert len(meta["loss_per_epoch"]) == 1 and meta["loss_per_epoch"][0] > 0
    assert "| base |" in meta["held_out_recall"] and "| tuned |" in meta["held_out_recall"]
    saved = paths.home / "embedders" / meta["embedder_id"]
    info = json.loads((saved / EMBEDDER_INFO).read_text())
    assert info["base"] == "all-MiniLM-L6-v2" and set(info["recall"]) == {"base", "tuned"}
    # the tuned embedder takes over: every document is embedded again, the base vectors stay
    embedded = metadata(run(defs, instance, "embed_crawl", partition_key="crawl-a"), "embeddings")
    assert embedded["embedder_id"] == meta["embedder_id"] and embedded["embedded"] == 24
    with Store.open(paths.store, read_only=True) as store:
        assert store.embedding_counts() == {"all-MiniLM-L6-v2": 24, meta["embedder_id"]: 24}
    # clusters built on the old embedder's vectors are not silently mixed with the new ones
    assert Embedder(str(saved)).embedder_id == meta["embedder_id"]


def test_held_out_split_is_by_document_and_recall_is_measured_per_document():
    pairs = [TrainingPair(f"d{i // 2}", f"document {i // 2}", f"Q: q{i}\nA: a{i}") for i in range(20)]
    train, held = split_by_document(pairs, 0.2, seed=1)
    assert not {p.doc_id for p in train} & {p.doc_id for p in held} and len({p.doc_id for p in held}) == 2
    recall = recall_at_k(Embedder(), held)
    assert set(recall) == {"@1", "@10"} and recall["@10"] == 1.0  # 2 documents, 4 pairs: all within the top 10
