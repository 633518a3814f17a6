"""The data rules of each stage, as the asset checks show them (``equal_dagster/checks.py`` and the assets' own
check specs). Each rule returns a :class:`Outcome`: passed or not, one line saying why, and the figures.

Rules:

- ``corpus``: the share of a crawl's rows quarantined (duplicates aside) is under :data:`MAX_QUARANTINE_SHARE`
  (a crawl mostly broken is a wrong format or field name, not bad luck); no id conflict (one id, two texts).
- ``embedder``: the embedder in use recalls held-out QA pairs at least as well as the base.
- ``embeddings``: every document of the crawl has a vector for the current embedder.
- ``clusters``: every document embedded with the clustering's embedder is in exactly one arm.
- ``warmup_extractions`` and ``bandit_rounds``: every drawn document has an extraction status; a round's reward is in
  [0, 1]; the documents spent stay within the budget.
- ``qa_dataset``: no kept pair overlaps an evaluation item; no two kept pairs are the same pair; no filter drops more
  than its share of the scored pairs (:data:`MAX_DROP_SHARE`: contamination past 5% means the crawl holds the
  evaluation data; one filter taking half means a source repeating itself or a broken rule). Selection (top-k,
  threshold) is the user's choice and has no limit.
- ``fine_tuned_model``: the loss fell from the first logged step to the last.
- ``eval_scores``: the base and the fine-tuned models were scored on the same items (the same n per task).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from equal_dagster.core.extraction.results import STATUSES
from equal_dagster.core.quality import Decontaminator, exact_duplicates
from equal_dagster.core.store import Store

MAX_QUARANTINE_SHARE = 0.5
MAX_DROP_SHARE = {"contaminated": 0.05, "exact_duplicate": 0.5, "near_duplicate": 0.5, "reinstruct": 0.5}


@dataclass(frozen=True)
class Outcome:
    passed: bool
    message: str
    metadata: dict[str, Any] = field(default_factory=dict)


def quarantine_share(rows_read: int, quarantined: Mapping[str, int]) -> Outcome:
    bad = sum(n for reason, n in quarantined.items() if reason != "duplicate")
    share = bad / rows_read if rows_read else (1.0 if bad else 0.0)
    passed = share < MAX_QUARANTINE_SHARE
    message = (f"{bad:,} of {rows_read:,} rows quarantined ({share:.1%})" +
               ("" if passed else f", at least {MAX_QUARANTINE_SHARE:.0%}: check the crawl's format and field names"))
    return Outcome(passed, message, {"quarantined": bad, "rows_read": rows_read, "share": round(share, 4)})


def no_id_conflict(quarantined: Mapping[str, int]) -> Outcome:
    conflicts = int(quarantined.get("id_conflict", 0))
    return Outcome(conflicts == 0, f"{conflicts:,} rows reuse an id another text already has" if conflicts
                   else "every id names one text", {"id_conflicts": conflicts})


def crawl_embedded(store: Store, crawl_id: str, embedder_id: str) -> Outcome:
    missing = len(store.documents_without_embedding(crawl_id, embedder_id))
    return Outcome(missing == 0, f"{missing:,} documents of crawl {crawl_id} have no vector from {embedder_id}"
                   if missing else f"every document of crawl {crawl_id} has a vector from {embedder_id}",
                   {"documents_without_vector": missing})


def every_document_in_one_arm(store: Store, clustering_id: str) -> Outcome:
    missing, documents = store.documents_outside_clustering(clustering_id)
    if documents == 0:
        return Outcome(False, f"clustering {clustering_id} has no embedded document (no summaries, or no vectors)", {})
    return Outcome(missing == 0, f"{missing:,} of {documents:,} embedded documents are in no arm" if missing
                   else f"each of the {documents:,} embedded documents is in exactly one arm",
                   {"documents": documents, "documents_in_no_arm": missing})


def statuses_recorded(store: Store, round_id: str, drawn: int) -> Outcome:
    statuses = store.extractions(round_id)["status"].to_list()
    unknown = sum(1 for s in statuses if s not in STATUSES)
    passed = len(statuses) == drawn and unknown == 0
    return Outcome(passed, f"{len(statuses):,} of {drawn:,} drawn documents have a status" +
                   (f", {unknown} unknown" if unknown else ""), {"drawn": drawn, "with_status": len(statuses)})


def reward_in_range(reward: float) -> Outcome:
    passed = 0.0 <= reward <= 1.0
    return Outcome(passed, f"round reward {reward:.4f}" + ("" if passed else ", outside [0, 1]"), {"reward": reward})


def within_budget(docs_spent: int, docs_limit: int | None, tokens_spent: int, tokens_limit: int | None) -> Outcome:
    over_docs = docs_limit is not None and docs_spent > docs_limit
    over_tokens = tokens_limit is not None and tokens_spent > tokens_limit
    limit = "no limit" if docs_limit is None else f"{docs_limit:,}"
    return Outcome(not (over_docs or over_tokens),
                   f"{docs_spent:,} documents spent of {limit}" + (f"; {tokens_spent:,} tokens of {tokens_limit:,}"
                                                                  if tokens_limit is not None else ""),
                   {"documents_spent": docs_spent, "tokens_spent": tokens_spent})


def _kept_question_answers(store: Store) -> list[tuple[str, str]]:
    pairs = store.kept_pairs()
    return list(zip(pairs["question"].to_list(), pairs["answer"].to_list()))


def kept_pairs_uncontaminated(store: Store, evaluation_texts: Sequence[str], ngram: int = 13) -> Outcome:
    """No kept pair shares an ``ngram``-word n-gram with an evaluation text: tested again on the kept pairs,
    independently of the filter that should have dropped them."""
    decontaminator = Decontaminator(evaluation_texts, ngram)
    pairs = _kept_question_answers(store)
    contaminated = sum(1 for q, a in pairs if decontaminator.overlap(f"{q}\n{a}"))
    return Outcome(contaminated == 0, f"{contaminated:,} kept pairs overlap an evaluation item" if contaminated
                   else f"none of the {len(pairs):,} kept pairs overlaps an evaluation item",
                   {"contaminated_kept": contaminated})


def kept_pairs_distinct(store: Store) -> Outcome:
    """No two kept pairs are the same question and answer once normalized (the dedup filter's own key)."""
    pairs = _kept_question_answers(store)
    duplicates = len(exact_duplicates(pairs))
    return Outcome(duplicates == 0, f"{duplicates:,} kept pairs repeat another kept pair" if duplicates
                   else f"the {len(pairs):,} kept pairs are distinct", {"duplicates_kept": duplicates})


def drop_shares(scored: int, dropped: Mapping[str, int]) -> Outcome:
    """The share of the scored pairs each filter dropped, under its :data:`MAX_DROP_SHARE` (``reinstruct:<rule>``
    reasons count as ``reinstruct``; selection reasons are not limited)."""
    by_filter: dict[str, int] = {}
    for reason, n in dropped.items():
        name = reason.split(":")[0]
        by_filter[name] = by_filter.get(name, 0) + n
    shares = {name: round(n / scored, 4) if scored else 0.0 for name, n in sorted(by_filter.items())}
    over = [f"{name} dropped {share:.1%} (limit {MAX_DROP_SHARE[name]:.0%})" for name, share in shares.items()
            if share > MAX_DROP_SHARE.get(name, 1.0)]
    summary = ", ".join(f"{name} {share:.1%}" for name, share in shares.items()) or "nothing dropped"
    return Outcome(not over, "; ".join(over) if over else f"of {scored:,} scored pairs: {summary}",
                   {"scored": scored, **{f"share_{name}": share for name, share in shares.items()}})


def kept_pairs_clean(store: Store, evaluation_texts: Sequence[str], ngram: int = 13) -> tuple[Outcome, Outcome]:
    """Both rules on the kept pairs: (:func:`kept_pairs_uncontaminated`, :func:`kept_pairs_distinct`)."""
    return kept_pairs_uncontaminated(store, evaluation_texts, ngram), kept_pairs_distinct(store)


def embedder_not_worse(recall: Mapping[str, Mapping[str, float]], in_use_is_base: bool) -> Outcome:
    """The embedder in use recalls a held-out document's QA pairs in its top 10 at least as often as the base."""
    base, tuned = recall.get("base", {}).get("@10"), recall.get("tuned", {}).get("@10")
    if base is None or tuned is None:
        return Outcome(True, "no held-out check: the base embedder is in use (too few warm-up pairs to train)", {})
    in_use = base if in_use_is_base else tuned
    return Outcome(in_use >= base, f"held-out recall@10: {in_use} in use, {base} for the base",
                   {"recall_at_10_in_use": in_use, "recall_at_10_base": base})


def loss_fell(first: float | None, last: float | None) -> Outcome:
    if first is None or last is None:
        return Outcome(False, "no loss was logged", {})
    return Outcome(last < first, f"loss {first:.4f} at the first logged step, {last:.4f} at the last",
                   {"first_loss": first, "last_loss": last})


def same_items(n_by_model: Mapping[str, Mapping[str, int | None]]) -> Outcome:
    """Every model scored on the same number of items per task."""
    tasks = sorted({t for per_task in n_by_model.values() for t in per_task})
    differ = [t for t in tasks if len({n_by_model[m].get(t) for m in n_by_model}) > 1]
    return Outcome(not differ, f"tasks scored on different items: {', '.join(differ)}" if differ
                   else f"{len(n_by_model)} models scored on the same items of {len(tasks)} task(s)", {"tasks": len(tasks)})
