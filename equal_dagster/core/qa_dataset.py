"""The QA dataset: every harvested pair scored (InstructMining), filtered, de-duplicated, decontaminated, selected and
exported (DESIGN.md step 5).

Rules, in the order they apply (the first that drops a pair gives its reason):

1. ``reinstruct:<rule>``: REInstruct's post-filter (`core/extraction/reinstruct.py`), when on.
2. ``exact_duplicate``: the same question and answer as an earlier pair (normalized); the earliest round's is kept.
3. ``near_duplicate``: MinHash LSH estimated Jaccard at or above the threshold with a kept earlier pair.
4. ``contaminated``: shares a word n-gram (default 13) with an evaluation item (the overlapping text is recorded).
5. Selection among the rest, by quality score (InstructMining's rule, `core/quality.py`): ``below_threshold`` when a
   threshold is set and the score is lower; ``below_top_k`` beyond the ``top_k`` best. Pairs without a score rank last.

Every pair of the store gets its indicators (``quality`` JSON), ``quality_score``, ``kept`` and ``drop_reason``
written back into ``qa_pairs`` in one transaction. The kept pairs, best score first, are exported in the chosen
formats (`core/export.py`) with the dataset's hash.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from equal_dagster.core.export import FORMATS, dataset_hash, export_dataset
from equal_dagster.core.extraction.reinstruct import post_filter
from equal_dagster.core.quality import (
    Decontaminator,
    UNIEVAL_QUESTIONS,
    INSTRUCTMINING_RULES,
    answer_perplexities,
    exact_duplicates,
    knn_distance,
    mtld,
    near_duplicates,
    reward_scores,
    token_length,
    unieval_scores,
)
from equal_dagster.core.reward import embed_qa_pairs
from equal_dagster.core.store import Store, table_frame


@dataclass(frozen=True)
class DatasetParams:
    top_k: int | None = None
    threshold: float | None = None
    knn_k: int = 6
    near_duplicate_threshold: float = 0.8
    ngram: int = 13
    reinstruct_filter: bool = True
    reward_model: str | None = None
    perplexity_model: str | None = None
    unieval_model: str | None = None  # a UniEval dialogue model: naturalness, coherence, understandability
    length_tokenizer: str | None = None  # lengths (the rule's Len) in this tokenizer's tokens; default: words
    rule: str = "rew_len_knn"  # which published InstructMining fit scores the pairs (core/quality.py)
    formats: tuple[str, ...] = FORMATS
    system_prompt: str | None = None

    def __post_init__(self) -> None:
        if self.top_k is not None and self.top_k < 1:
            raise ValueError("top_k must be at least 1")
        unknown = [f for f in self.formats if f not in FORMATS]
        if unknown:
            raise ValueError(f"unknown export format(s) {', '.join(unknown)}: choose among {', '.join(FORMATS)}")
        if self.rule not in INSTRUCTMINING_RULES:
            raise ValueError(f"unknown quality rule {self.rule!r}: choose among {', '.join(INSTRUCTMINING_RULES)}")
        if not self.unieval_model and set(INSTRUCTMINING_RULES[self.rule].indicators) & set(UNIEVAL_QUESTIONS):
            raise ValueError(f"quality rule {self.rule!r} needs UniEval's scores: set unieval_model (a folder of a "
                             "UniEval dialogue model), or use the rule 'rew_len_knn'")


@dataclass
class DatasetReport:
    pairs: int
    kept: int
    dropped: dict[str, int]
    dataset_hash: str
    files: dict[str, str]
    scores: list[float]
    missing_indicators: list[str]
    seconds: float
    kept_preview: list[dict] = field(default_factory=list)


def _order_by_round(pairs: pl.DataFrame, store: Store) -> pl.DataFrame:
    """Pairs in the order their rounds were played (the warm-up first), so that a duplicate keeps the earliest."""
    order = {r: n for r, n in zip(store.rounds()["round_id"].to_list(), store.rounds()["round_no"].to_list())}
    return (pairs.with_columns(pl.col("round_id").replace_strict(order, default=10**9).alias("_round_no"))
            .sort("_round_no", "doc_id", "qa_id").drop("_round_no"))


def build_qa_dataset(store: Store, embedder, evaluation_texts: Sequence[str], params: DatasetParams, out_dir: str | Path,
                     *, name: str = "qa_dataset", log: Callable[[str], None] | None = None) -> DatasetReport:
    """Score, filter, select and export every QA pair of the store (see the module's rules)."""
    say = log or (lambda message: None)
    began = time.perf_counter()
    pairs = _order_by_round(store.qa_pairs_of_rounds(), store)
    if pairs.height == 0:
        raise ValueError("the store holds no QA pair: run the warm-up and some bandit rounds first")
    questions, answers = pairs["question"].to_list(), pairs["answer"].to_list()
    n = pairs.height
    say(f"qa_dataset: {n:,} QA pairs to score")

    # indicators
    tokenizer = None
    if params.length_tokenizer:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(params.length_tokenizer)
    input_length = [token_length(q, tokenizer) for q in questions]
    output_length = [token_length(a, tokenizer) for a in answers]
    diversity = [mtld(a) for a in answers]
    vectors = embed_qa_pairs(store, embedder, questions, answers, say)
    knn = knn_distance(vectors, params.knn_k)
    missing = []
    rewards: list[float | None] = [None] * n
    if params.reward_model:
        rewards = reward_scores(params.reward_model, questions, answers)
    else:
        missing.append("reward (no reward model configured: the rule's reward term is 0 for every pair)")
    perplexity: list[float | None] = [None] * n
    if params.perplexity_model:
        perplexity = answer_perplexities(params.perplexity_model, questions, answers)
    else:
        missing.append("perplexity (no reference LM configured)")
    unieval: dict[str, list[float | None]] = {d: [None] * n for d in UNIEVAL_QUESTIONS}
    if params.unieval_model:
        unieval = unieval_scores(params.unieval_model, questions, answers)
    else:
        missing.append("naturalness, coherence, understandability (no UniEval model configured)")
    rule = INSTRUCTMINING_RULES[params.rule]
    scores = [rule.quality_score({
        "reward": rewards[i], "output_length": output_length[i], "knn6": float(knn[i]),
        **{d: unieval[d][i] for d in UNIEVAL_QUESTIONS},
    }) for i in range(n)]

    # filters, in order
    reasons: list[str | None] = [None] * n
    if params.reinstruct_filter:
        for i, (q, a) in enumerate(zip(questions, answers)):
            why = post_filter(q, a)
            if why:
                reasons[i] = f"reinstruct:{why}"
    qa_ids = pairs["qa_id"].to_list()
    question_answers = list(zip(questions, answers))
    exact = exact_duplicates(question_answers)
    for i in exact:
        reasons[i] = reasons[i] or "exact_duplicate"
    near = near_duplicates(question_answers, params.near_duplicate_threshold,
                           skip=[i for i, r in enumerate(reasons) if r is not None])
    for i in near:
        reasons[i] = reasons[i] or "near_duplicate"
    decontaminator = Decontaminator(evaluation_texts, params.ngram)
    overlaps: dict[int, str] = {}
    for i in range(n):
        if reasons[i] is None:
            hit = decontaminator.overlap(f"{questions[i]}\n{answers[i]}")
            if hit:
                reasons[i], overlaps[i] = "contaminated", hit

    # selection by score
    alive = [i for i in range(n) if reasons[i] is None]
    ranked = sorted(alive, key=lambda i: (scores[i] is None, -(scores[i] or 0.0), qa_ids[i]))
    if params.threshold is not None:
        for i in ranked:
            if scores[i] is None or scores[i] < params.threshold:
                reasons[i] = "below_threshold"
        ranked = [i for i in ranked if reasons[i] is None]
    if params.top_k is not None:
        for i in ranked[params.top_k :]:
            reasons[i] = "below_top_k"
        ranked = ranked[: params.top_k]

    indicators = [json.dumps({
        "input_length": input_length[i], "output_length": output_length[i], "mtld": round(diversity[i], 4),
        f"knn{params.knn_k}": None if np.isnan(knn[i]) else round(float(knn[i]), 6),
        "reward": rewards[i], "perplexity": perplexity[i], **{d: unieval[d][i] for d in UNIEVAL_QUESTIONS},
        **({"duplicate_of": qa_ids[exact[i]]} if i in exact else {}),
        **({"near_duplicate_of": qa_ids[near[i]]} if i in near else {}),
        **({"contamination": overlaps[i]} if i in overlaps else {}),
    }) for i in range(n)]
    store.set_qa_quality(table_frame("qa_pairs", {
        "qa_id": qa_ids, "quality": indicators, "quality_score": scores,
        "kept": [r is None for r in reasons], "drop_reason": reasons,
    }))
    kept = pairs[ranked].with_columns(pl.Series("quality_score", [scores[i] for i in ranked], dtype=pl.Float64))
    export = kept.select("qa_id", "doc_id", "round_id", "question", "answer", "quality_score")
    files = export_dataset(export, out_dir, params.formats, name=name, system=params.system_prompt)
    dropped = Counter(r.split(":")[0] if r.startswith("reinstruct:") else r for r in reasons if r)
    say(f"qa_dataset: kept {len(ranked):,} of {n:,}; dropped {dict(dropped)}")
    return DatasetReport(n, len(ranked), dict(sorted(dropped.items())), dataset_hash(export),
                         {k: str(v) for k, v in files.items()}, [s for s in scores if s is not None], missing,
                         round(time.perf_counter() - began, 2), export.head(5).to_dicts())
