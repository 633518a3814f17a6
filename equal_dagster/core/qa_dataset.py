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
from abc import ABC, abstractmethod
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


@dataclass
class WorkingSet:
    """The pairs as the filters see them: each pair's drop reason (None: still in) and notes for its indicators."""

    qa_ids: list[str]
    questions: list[str]
    answers: list[str]
    reasons: list[str | None] = field(default_factory=list)
    notes: dict[int, dict] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.reasons = self.reasons or [None] * len(self.qa_ids)

    def alive(self) -> list[int]:
        return [i for i, r in enumerate(self.reasons) if r is None]

    def drop(self, i: int, reason: str, **note: str) -> None:
        if self.reasons[i] is None:
            self.reasons[i] = reason
            self.notes.setdefault(i, {}).update(note)


class FilterStep(ABC):
    """One rule of the module's list (DataTrove-style): ``apply`` marks the pairs it drops; ``run`` counts what the
    step kept and dropped."""

    name = "filter"

    def __init__(self) -> None:
        self.kept = self.dropped = 0

    @abstractmethod
    def apply(self, pairs: WorkingSet) -> None:
        """Drop (``pairs.drop``) the pairs this rule rejects."""

    def run(self, pairs: WorkingSet) -> None:
        before = len(pairs.alive())
        self.apply(pairs)
        self.kept = len(pairs.alive())
        self.dropped = before - self.kept


class ReinstructFilter(FilterStep):
    """Rule 1: REInstruct's post-filter; the reason names its rule."""

    name = "reinstruct"

    def apply(self, pairs: WorkingSet) -> None:
        for i in pairs.alive():
            why = post_filter(pairs.questions[i], pairs.answers[i])
            if why:
                pairs.drop(i, f"reinstruct:{why}")


class ExactDuplicates(FilterStep):
    """Rule 2: the same (normalized) question and answer as an earlier pair."""

    name = "exact_duplicate"

    def apply(self, pairs: WorkingSet) -> None:
        for i, first in exact_duplicates(list(zip(pairs.questions, pairs.answers))).items():
            pairs.drop(i, self.name)
            pairs.notes.setdefault(i, {})["duplicate_of"] = pairs.qa_ids[first]


class NearDuplicates(FilterStep):
    """Rule 3: MinHash LSH Jaccard at or above the threshold with a kept earlier pair."""

    name = "near_duplicate"

    def __init__(self, threshold: float) -> None:
        super().__init__()
        self.threshold = threshold

    def apply(self, pairs: WorkingSet) -> None:
        dropped = [i for i, r in enumerate(pairs.reasons) if r is not None]
        for i, first in near_duplicates(list(zip(pairs.questions, pairs.answers)), self.threshold, skip=dropped).items():
            pairs.drop(i, self.name)
            pairs.notes.setdefault(i, {})["near_duplicate_of"] = pairs.qa_ids[first]


class Decontamination(FilterStep):
    """Rule 4: a word n-gram shared with an evaluation item; the overlapping text is noted."""

    name = "contaminated"

    def __init__(self, evaluation_texts: Sequence[str], ngram: int) -> None:
        super().__init__()
        self.decontaminator = Decontaminator(evaluation_texts, ngram)

    def apply(self, pairs: WorkingSet) -> None:
        for i in pairs.alive():
            hit = self.decontaminator.overlap(f"{pairs.questions[i]}\n{pairs.answers[i]}")
            if hit:
                pairs.drop(i, self.name, contamination=hit)


def filter_steps(params: DatasetParams, evaluation_texts: Sequence[str]) -> list[FilterStep]:
    """Rules 1 to 4, in order."""
    steps: list[FilterStep] = [ReinstructFilter()] if params.reinstruct_filter else []
    return steps + [ExactDuplicates(), NearDuplicates(params.near_duplicate_threshold),
                    Decontamination(evaluation_texts, params.ngram)]


@dataclass
class Indicators:
    """InstructMining's indicators of every pair, the rule's score, and the indicators no model was given for."""

    values: list[dict]
    scores: list[float | None]
    missing: list[str]


def _optional(model: str | None, what: str, n: int, missing: list[str], compute: Callable[[], list]) -> list:
    if model:
        return compute()
    missing.append(what)
    return [None] * n


def score_pairs(store: Store, embedder, questions: list[str], answers: list[str], params: DatasetParams,
                say: Callable[[str], None]) -> Indicators:
    """Rule 5's input: each pair's indicators (lengths, MTLD, kNN distance, and reward, perplexity and UniEval
    where a model is configured) and the configured InstructMining rule's score."""
    n = len(questions)
    tokenizer = None
    if params.length_tokenizer:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(params.length_tokenizer)
    knn = knn_distance(embed_qa_pairs(store, embedder, questions, answers, say), params.knn_k)
    missing: list[str] = []
    rewards = _optional(params.reward_model, "reward (no reward model configured: the rule's reward term is 0 for "
                        "every pair)", n, missing, lambda: reward_scores(params.reward_model, questions, answers))
    perplexity = _optional(params.perplexity_model, "perplexity (no reference LM configured)", n, missing,
                           lambda: answer_perplexities(params.perplexity_model, questions, answers))
    if params.unieval_model:
        unieval = unieval_scores(params.unieval_model, questions, answers)
    else:
        missing.append("naturalness, coherence, understandability (no UniEval model configured)")
        unieval = {d: [None] * n for d in UNIEVAL_QUESTIONS}
    values = [{
        "input_length": token_length(questions[i], tokenizer), "output_length": token_length(answers[i], tokenizer),
        "mtld": round(mtld(answers[i]), 4), f"knn{params.knn_k}": None if np.isnan(knn[i]) else round(float(knn[i]), 6),
        "reward": rewards[i], "perplexity": perplexity[i], **{d: unieval[d][i] for d in UNIEVAL_QUESTIONS},
    } for i in range(n)]
    rule = INSTRUCTMINING_RULES[params.rule]
    scores = [rule.quality_score({"reward": rewards[i], "output_length": values[i]["output_length"],
                                  "knn6": float(knn[i]), **{d: unieval[d][i] for d in UNIEVAL_QUESTIONS}})
              for i in range(n)]
    return Indicators(values, scores, missing)


def select_by_score(pairs: WorkingSet, scores: list[float | None], threshold: float | None, top_k: int | None) -> list[int]:
    """Rule 5: the pairs still in, best score first (unscored last); ``below_threshold``, then ``below_top_k``."""
    ranked = sorted(pairs.alive(), key=lambda i: (scores[i] is None, -(scores[i] or 0.0), pairs.qa_ids[i]))
    if threshold is not None:
        for i in ranked:
            if scores[i] is None or scores[i] < threshold:
                pairs.drop(i, "below_threshold")
        ranked = [i for i in ranked if pairs.reasons[i] is None]
    if top_k is not None:
        for i in ranked[top_k:]:
            pairs.drop(i, "below_top_k")
        ranked = ranked[:top_k]
    return ranked


def build_qa_dataset(store: Store, embedder, evaluation_texts: Sequence[str], params: DatasetParams, out_dir: str | Path,
                     *, name: str = "qa_dataset", log: Callable[[str], None] | None = None) -> DatasetReport:
    """Score, filter, select and export every QA pair of the store (see the module's rules)."""
    say = log or (lambda message: None)
    began = time.perf_counter()
    frame = _order_by_round(store.qa_pairs_of_rounds(), store)
    if frame.height == 0:
        raise ValueError("the store holds no QA pair: run the warm-up and some bandit rounds first")
    pairs = WorkingSet(frame["qa_id"].to_list(), frame["question"].to_list(), frame["answer"].to_list())
    say(f"qa_dataset: {frame.height:,} QA pairs to score")
    indicators = score_pairs(store, embedder, pairs.questions, pairs.answers, params, say)
    for step in filter_steps(params, evaluation_texts):
        step.run(pairs)
        say(f"qa_dataset: {step.name}: kept {step.kept:,}, dropped {step.dropped:,}")
    ranked = select_by_score(pairs, indicators.scores, params.threshold, params.top_k)

    store.set_qa_quality(table_frame("qa_pairs", {
        "qa_id": pairs.qa_ids,
        "quality": [json.dumps({**values, **pairs.notes.get(i, {})}) for i, values in enumerate(indicators.values)],
        "quality_score": indicators.scores, "kept": [r is None for r in pairs.reasons], "drop_reason": pairs.reasons,
    }))
    kept = frame[ranked].with_columns(pl.Series("quality_score", [indicators.scores[i] for i in ranked], dtype=pl.Float64))
    export = kept.select("qa_id", "doc_id", "round_id", "question", "answer", "quality_score")
    files = export_dataset(export, out_dir, params.formats, name=name, system=params.system_prompt)
    dropped = Counter(r.split(":")[0] if r.startswith("reinstruct:") else r for r in pairs.reasons if r)
    say(f"qa_dataset: kept {len(ranked):,} of {frame.height:,}; dropped {dict(dropped)}")
    return DatasetReport(frame.height, len(ranked), dict(sorted(dropped.items())), dataset_hash(export),
                         {k: str(v) for k, v in files.items()}, [s for s in indicators.scores if s is not None],
                         indicators.missing, round(time.perf_counter() - began, 2), export.head(5).to_dicts())
