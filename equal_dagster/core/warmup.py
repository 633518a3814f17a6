"""EQUAL's warm-up (arXiv 2505.12250, section 3.1): extract QA pairs from a small random sample of the corpus
(the paper: 5%) before any bandit round, so that the embedder can be tuned on (document, QA pair) couples.

Rules:

* The sample is ``ceil(fraction * documents)`` documents (the paper: 5%), capped at ``max_documents`` and at
  ``max_budget_share`` (20%) of the extraction budget's documents, at least one. The warm-up is a uniform random
  sample, as good as the ``random`` policy and no better: the share of the budget it takes is the share the bandit
  cannot steer. The paper's 5% of 1.46M documents left its 5% round budget as large again; at a 10% budget on a
  small corpus, 5% would take half of it (measured in docs/benchmarks.md). It is seeded
  (:meth:`Store.random_documents`), so the same seed over the same corpus gives the same sample.
* The sample is extracted with the configured extractor and stored as round 0 (``round-0``): a ``rounds`` row
  (policy ``warmup``), one ``extractions`` row per sampled document and its ``qa_pairs``, written as one partition
  (a re-run replaces round 0 whole; a crash leaves the previous round 0).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from equal_dagster.core.extraction import ExtractionRun
from equal_dagster.core.rounds import (
    MAX_FAILURE_SHARE,
    WARMUP_ROUND_ID,
    check_failures,
    documents_to_extract,
    write_extraction_round,
)
from equal_dagster.core.store import Store


WARMUP_FRACTION = 0.05  # EQUAL: 5% of the corpus
WARMUP_MAX_DOCUMENTS = 2000
WARMUP_MAX_BUDGET_SHARE = 0.2  # at most a fifth of the budget goes to the (unsteered) warm-up


def warmup_sample_size(documents: int, fraction: float = WARMUP_FRACTION, max_documents: int = WARMUP_MAX_DOCUMENTS,
                       budget_documents: int | None = None,
                       max_budget_share: float = WARMUP_MAX_BUDGET_SHARE) -> int:
    """The warm-up's documents (see the module's rules); ``budget_documents`` None: no document budget."""
    if not 0 < fraction <= 1:
        raise ValueError(f"warm-up fraction must be in (0, 1], got {fraction}")
    if max_documents < 1:
        raise ValueError(f"max_documents must be at least 1, got {max_documents}")
    if not 0 < max_budget_share <= 1:
        raise ValueError(f"the warm-up's share of the budget must be in (0, 1], got {max_budget_share}")
    if documents == 0:
        return 0
    n = min(max_documents, math.ceil(fraction * documents))
    if budget_documents is not None:
        n = min(n, math.floor(max_budget_share * budget_documents))
    return max(1, n)


@dataclass
class WarmupReport:
    corpus_documents: int
    sampled: int
    run: ExtractionRun
    qa_pairs_written: int


def run_warmup(
    store: Store,
    extractor,
    *,
    fraction: float = WARMUP_FRACTION,
    max_documents: int = WARMUP_MAX_DOCUMENTS,
    budget_documents: int | None = None,
    max_budget_share: float = WARMUP_MAX_BUDGET_SHARE,
    seed: int = 0,
    max_failure_share: float = MAX_FAILURE_SHARE,
    dagster_run_id: str | None = None,
    log: Callable[[str], None] | None = None,
) -> WarmupReport:
    total = store.document_count()
    if total == 0:
        raise ValueError("the store holds no documents: materialize the corpus (one crawl at least) first")
    n = warmup_sample_size(total, fraction, max_documents, budget_documents, max_budget_share)
    began = time.perf_counter()
    sample = store.random_documents(n, seed)
    if log:
        budget = "" if budget_documents is None else f", at most {max_budget_share:g} of the budget's {budget_documents:,}"
        log(f"warm-up: {sample.height:,} of {total:,} documents sampled (fraction {fraction:g}, cap {max_documents:,}"
            f"{budget}, seed {seed})")
    documents = documents_to_extract(store, sample)
    run = extractor.extract(documents)
    extraction_s = time.perf_counter() - began
    check_failures(run, WARMUP_ROUND_ID, max_failure_share)  # a dead backend fails here, not as an empty warm-up
    written = write_extraction_round(
        store, WARMUP_ROUND_ID, 0, "warmup", run, seed=seed, dagster_run_id=dagster_run_id,
        timings={"extraction_s": round(extraction_s, 3), "total_s": round(time.perf_counter() - began, 3)},
    )
    return WarmupReport(total, len(documents), run, written)
