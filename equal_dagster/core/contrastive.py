"""EQUAL's contrastive warm-up of the document embedder (arXiv 2505.12250, section 3.2): tune the embedder so that
a document lands near the QA pairs it yields, before clustering.

Rules:

* Training data: the warm-up's (document, QA pair) couples; a QA pair is rendered "Q: ...\\nA: ...".
* Held-out: a seeded share of the *documents* (default 20%) with all their pairs, never trained on.
* Positives: a document and one of its QA pairs. Negatives: every other pair in the batch (in-batch), plus one
  hard negative per couple: a QA pair of the nearest other document under the base embedder. A negative is never
  one of the document's own QA texts (copied FAQ entries, near-duplicate pages): the hard negative skips them,
  and the loss leaves them out of the anchor's softmax (``OwnPairsMaskedRankingLoss``).
* Loss: sentence-transformers' MultipleNegativesRankingLoss (InfoNCE) with scale = 1 / temperature (paper: 0.02)
  and that mask, trained with SentenceTransformerTrainer for ``epochs`` (paper: 2), batches without duplicate
  texts (NoDuplicatesBatchSampler).
* Check: recall@1 and recall@10 from each held-out document to its own QA pairs (the share of them in its top k),
  among all held-out QA texts (a text several documents yield is one candidate, relevant to each), for the base
  and the tuned embedder; also the hit rate (at least one of them there).
* Fewer couples than ``min_pairs``: no training; the base embedder is used and the reason reported. A tuned
  embedder whose held-out recall@10 is below the base's is not adopted either (``keep_base_if_worse``).
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from equal_dagster.core.embedding import EMBEDDER_INFO, Embedder


@dataclass(frozen=True)
class TrainingPair:
    doc_id: str
    document: str
    qa_text: str


def render_qa(question: str, answer: str) -> str:
    return f"Q: {question}\nA: {answer}"


@dataclass
class ContrastiveParams:
    temperature: float = 0.02
    epochs: int = 2
    learning_rate: float = 2e-5
    batch_size: int = 32
    held_out_fraction: float = 0.2
    min_pairs: int = 50
    hard_negatives: bool = True
    keep_base_if_worse: bool = True
    seed: int = 0


@dataclass
class ContrastiveReport:
    embedder_id: str  # the one to use from now on
    location: str
    trained: bool
    reason: str
    pairs: int
    train_pairs: int = 0
    held_out_pairs: int = 0
    held_out_documents: int = 0
    loss_per_epoch: list[float] = field(default_factory=list)
    recall: dict[str, dict[str, float]] = field(default_factory=dict)  # base / tuned -> {"@1": .., "@10": ..}
    seconds: float = 0.0


def split_by_document(pairs: Sequence[TrainingPair], fraction: float, seed: int) -> tuple[list[TrainingPair], list[TrainingPair]]:
    documents = sorted({p.doc_id for p in pairs})
    random.Random(seed).shuffle(documents)
    n_held = min(max(1, math.ceil(fraction * len(documents))), len(documents) - 1) if len(documents) > 1 else 0
    held = set(documents[:n_held])
    return [p for p in pairs if p.doc_id not in held], [p for p in pairs if p.doc_id in held]


def own_qa_texts(pairs: Sequence[TrainingPair]) -> dict[str, set[str]]:
    """Document id -> the QA texts it yields."""
    own: dict[str, set[str]] = {}
    for p in pairs:
        own.setdefault(p.doc_id, set()).add(p.qa_text)
    return own


def recall_at_k(embedder: Embedder, pairs: Sequence[TrainingPair], ks: Sequence[int] = (1, 10),
                distractors: Sequence[TrainingPair] = ()) -> dict[str, float]:
    """From each document to its own QA pairs, among all the QA pairs given (and the ``distractors``, pairs of
    other documents), averaged over the documents: ``@k`` is recall, the share of the document's pairs in its
    top k (the standard definition; a document with more than k pairs cannot reach 1); ``hit@k`` is the share
    of documents with at least one of theirs there.

    Candidates are QA *texts*: a text that several documents yield (an FAQ entry copied across sites, a
    near-duplicate page) is one candidate, relevant to each of them. Counted per row, identical candidates tie
    and the check would measure how ties are broken (on the demo warm-up, 202 pairs are 94 distinct texts)."""
    documents = sorted({p.doc_id for p in pairs})
    text_of = {p.doc_id: p.document for p in pairs}
    own = own_qa_texts(pairs)
    pool = list(dict.fromkeys([p.qa_text for p in pairs] + [p.qa_text for p in distractors]))
    doc_vectors = embedder.encode([text_of[d] for d in documents])
    qa_vectors = embedder.encode(pool)
    relevant = np.array([[text in own[d] for text in pool] for d in documents])
    order = np.argsort(-(doc_vectors @ qa_vectors.T), axis=1, kind="stable")
    ranked_relevant = np.take_along_axis(relevant, order, axis=1)
    out = {}
    for k in ks:
        found = ranked_relevant[:, :k].sum(axis=1)
        out[f"@{k}"] = round(float(np.mean(found / relevant.sum(axis=1))), 4)
        out[f"hit@{k}"] = round(float(np.mean(found > 0)), 4)
    return out


def hard_negative_texts(embedder: Embedder, pairs: Sequence[TrainingPair]) -> list[str] | None:
    """For each couple: a QA pair of the document nearest to its document (under ``embedder``) that is not one
    of its own document's QA texts (near-duplicate pages yield the same pairs; such a pair is no negative).
    None when some document has no such pair (every other document's pairs are its own too)."""
    own = own_qa_texts(pairs)
    documents = sorted(own)
    text_of = {p.doc_id: p.document for p in pairs}
    listed: dict[str, list[str]] = {}
    for p in pairs:
        listed.setdefault(p.doc_id, []).append(p.qa_text)
    vectors = embedder.encode([text_of[d] for d in documents])
    similarity = vectors @ vectors.T
    np.fill_diagonal(similarity, -np.inf)
    negative_of: dict[str, str] = {}
    for i, doc_id in enumerate(documents):
        for j in np.argsort(-similarity[i], kind="stable"):
            other = [text for text in listed[documents[j]] if text not in own[doc_id]]
            if other:
                negative_of[doc_id] = other[0]
                break
    if len(negative_of) < len(documents):
        return None
    return [negative_of[p.doc_id] for p in pairs]


def embedder_id_for(base_id: str, pairs: Sequence[TrainingPair], params: ContrastiveParams) -> str:
    digest = hashlib.sha256()
    digest.update(base_id.encode())
    digest.update(json.dumps(asdict(params), sort_keys=True).encode())
    for p in pairs:
        digest.update(f"{p.doc_id}\x1f{p.qa_text}\x1e".encode())
    return f"equal-{base_id}-{digest.hexdigest()[:12]}"


def tune_embedder(
    base: Embedder,
    pairs: Sequence[TrainingPair],
    params: ContrastiveParams,
    embedders_dir: str | Path,
    log: Callable[[str], None] | None = None,
) -> ContrastiveReport:
    """Fine-tune ``base`` on the couples (see the module's rules) and save it under ``embedders_dir/<id>``."""
    began = time.perf_counter()
    say = log or (lambda message: None)
    if len(pairs) < params.min_pairs:
        return ContrastiveReport(base.embedder_id, base.resolved.location, False,
                                 f"{len(pairs)} warm-up QA pairs, fewer than min_pairs = {params.min_pairs}: the base "
                                 "embedder is used", len(pairs), seconds=time.perf_counter() - began)
    train, held_out = split_by_document(pairs, params.held_out_fraction, params.seed)
    embedder_id = embedder_id_for(base.embedder_id, pairs, params)
    out_dir = Path(embedders_dir) / embedder_id
    say(f"contrastive warm-up: {len(train):,} couples to train on, {len(held_out):,} held out "
        f"({len({p.doc_id for p in held_out})} documents); temperature {params.temperature}, {params.epochs} epochs")
    base_recall = recall_at_k(base, held_out) if held_out else {}
    model, losses = _train(base, train, params, say)
    say(f"contrastive warm-up: loss per epoch {losses}")
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save(str(out_dir))
    tuned = Embedder(str(out_dir), device=str(base.model.device), batch_size=base.batch_size)
    tuned_recall = recall_at_k(tuned, held_out) if held_out else {}
    recall = {"base": base_recall, "tuned": tuned_recall}
    info = {"embedder_id": embedder_id, "base": base.embedder_id, "params": asdict(params), "pairs": len(pairs),
            "loss_per_epoch": losses, "recall": recall}
    (out_dir / EMBEDDER_INFO).write_text(json.dumps(info, indent=1))
    report = ContrastiveReport(embedder_id, str(out_dir), True, "tuned on the warm-up pairs", len(pairs), len(train),
                               len(held_out), len({p.doc_id for p in held_out}), losses, recall)
    if params.keep_base_if_worse and held_out and tuned_recall["@10"] < base_recall["@10"]:
        report.embedder_id, report.location = base.embedder_id, base.resolved.location
        report.reason = (f"the tuned embedder ({embedder_id}) found fewer held-out QA pairs in its top 10 "
                         f"({tuned_recall['@10']}) than the base ({base_recall['@10']}): the base embedder is kept")
    elif held_out and base_recall["@10"] == tuned_recall["@10"] == 1.0:
        report.reason += ("; the held-out check cannot tell base and tuned apart: both rank every held-out "
                          "document's QA pairs in its top 10")
    report.seconds = time.perf_counter() - began
    return report


def _training_columns(base: Embedder, train: Sequence[TrainingPair], params: ContrastiveParams,
                      say: Callable[[str], None]) -> dict[str, list]:
    """The trainer's rows: each document (anchor), one of its QA texts (positive), a hard negative when asked for,
    and the row's number (the loss masks a document's own QA texts with it)."""
    columns: dict[str, list] = {"anchor": [p.document for p in train], "positive": [p.qa_text for p in train]}
    negatives = hard_negative_texts(base, train) if params.hard_negatives else None
    if negatives is not None:
        columns["negative"] = negatives
    elif params.hard_negatives:
        say("contrastive warm-up: no hard negatives (a document shares every QA text of the others)")
    columns["label"] = list(range(len(train)))
    return columns


def _train(base: Embedder, train: Sequence[TrainingPair], params: ContrastiveParams, say: Callable[[str], None]):
    """sentence-transformers' trainer with the masked InfoNCE loss; returns the model and the loss per epoch."""
    from datasets import Dataset
    from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from sentence_transformers.training_args import BatchSamplers
    from transformers import PrinterCallback

    from equal_dagster.core.contrastive_loss import OwnPairsMaskedRankingLoss

    columns = _training_columns(base, train, params, say)
    candidate_texts = list(zip(*[columns[name] for name in ("positive", "negative") if name in columns]))
    own = own_qa_texts(train)
    model = SentenceTransformer(base.resolved.location, device=str(base.model.device))
    model.max_seq_length = base.model.max_seq_length
    steps = math.ceil(len(train) / params.batch_size) * params.epochs
    with tempfile.TemporaryDirectory(prefix="equal-embedder-") as scratch:
        args = SentenceTransformerTrainingArguments(
            output_dir=scratch, num_train_epochs=params.epochs, per_device_train_batch_size=params.batch_size,
            learning_rate=params.learning_rate, warmup_steps=math.ceil(0.1 * steps), seed=params.seed,
            data_seed=params.seed,
            batch_sampler=BatchSamplers.NO_DUPLICATES, logging_strategy="epoch", save_strategy="no",
            report_to="none", disable_tqdm=True, dataloader_num_workers=0,
            use_cpu=str(base.model.device) == "cpu",
        )
        trainer = SentenceTransformerTrainer(
            model=model, args=args, train_dataset=Dataset.from_dict(columns),
            loss=OwnPairsMaskedRankingLoss(model, 1.0 / params.temperature, candidate_texts,
                                           [own[p.doc_id] for p in train]),
        )
        trainer.remove_callback(PrinterCallback)  # the loss per epoch goes to ``log``, not to stdout
        trainer.train()
        losses = [round(float(entry["loss"]), 4) for entry in trainer.state.log_history if "loss" in entry]
    return model, losses
