"""Bandit rounds (EQUAL, arXiv 2505.12250, algorithm 1): choose arms, sample their unextracted documents, extract
QA pairs, reward each arm by the optimal-transport closeness of its new pairs to the reference set, and write the
round as one partition.

Rules:

* Round ``N`` (partition ``r0001`` is round 1) is played only when round ``N - 1`` exists (round 1 needs nothing
  before it but documents, and clusters for a policy that chooses arms) and no round after ``N`` does: a round is
  built on every round before it, so rewriting one in the middle would rewrite its successors' history. A round
  already played is refused (two runs that both meant to play the next round play one each, in turn, not the same
  one twice); asked for with ``replay``, the latest round is played again and replaces it.
* The bandit's state is rebuilt for each round from what the store holds, never kept elsewhere: with
  ``warm_start``, the warm-up's extractions (round 0), grouped by arm, count as each arm's first pull (reward
  computed as for any pull); then the stored rewards of rounds ``1 .. N-1`` played on the same clustering are
  replayed through the policy's update. The round's draws come from a generator seeded with (seed, N).
* Documents already extracted in an earlier round (the warm-up's included) are never drawn again, unless their
  extraction failed for a transient reason (backend error, timeout; :data:`~.extraction.results.TRANSIENT_FAILURES`),
  and then for at most :data:`MAX_ATTEMPTS` attempts in all: the last one's failure is recorded as ``gave_up``.
  A permanent failure (``rejected``, ``parse_error``) is not drawn again.
* The budget (documents, or a share of the corpus, and optionally tokens) charges each document once, at its first
  attempt, the warm-up's included: a redraw after a transient failure is free. Tokens count every call a round's
  documents took, answers from the cache included (a re-played round paid for them once). A round trims its
  documents to what the budget leaves; a round asked for when nothing is left is refused.
* A round in which at least ``max_failure_share`` of the documents failed at the backend (transient or rejected;
  every one, at 1.0) is not written and fails with the cause: nothing is charged, the answers that did arrive stay
  cached, and the rounds stop until the backend is fixed (:class:`RoundFailed`).
* Every round has the same shape, from :func:`equal_dagster.core.bandit.round_shape` over the clustering's arms and
  the documents the budget leaves for all rounds (the budget less the warm-up's documents; with a token budget
  alone, the tokens left over the warm-up's tokens per document). The shape and its reason are part of the round's
  record.
* ``knn_reference`` and ``classifier`` rank every unextracted document (:mod:`equal_dagster.core.baselines`;
  ``knn_reference`` those with a vector from the current embedder) and take the best; ``random`` draws them, ``all``
  takes them in source order.
* The round (its ``rounds`` row with arms, scores, rewards, settings and timings; its extractions; its QA pairs) is
  written in one partition write: a failure before the end leaves no trace but the LLM calls already paid for
  (``llm_cache``) and the vectors already computed, so a re-run of the round makes the same choices and pays for
  nothing twice.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import numpy as np

from equal_dagster.core.bandit import (
    ArmChoice,
    ArmReward,
    BanditParams,
    BanditState,
    Budget,
    RoundShape,
    allot_documents,
    make_policy,
    round_rng,
    round_shape,
)
from equal_dagster.core.baselines import negatives_wanted, reference_classifier_scores, reference_similarity, top_documents
from equal_dagster.core.extraction import Document, ExtractionRun
from equal_dagster.core.extraction.ledger import extraction_rows, qa_pair_rows
from equal_dagster.core.extraction.results import TRANSIENT_FAILURES, why_no_pairs
from equal_dagster.core.reward import OTSettings, ReferenceSet, embed_qa_pairs, embed_texts, ot_distance, ot_reward
from equal_dagster.core.store import Store, table_frame

WARMUP_ROUND_ID = "round-0"
ROUND_TABLES = ("rounds", "extractions", "qa_pairs")
RETRY_STATUSES = TRANSIENT_FAILURES  # a transient failure: the document may be drawn again
MAX_ATTEMPTS = 3  # attempts at one document in all rounds; a third transient failure is recorded as gave_up
MAX_FAILURE_SHARE = 0.5  # a round with at least this share of its documents failed at the backend is not written
BACKEND_FAILURES = (*TRANSIENT_FAILURES, "rejected")
_ROUND_KEY = re.compile(r"^r(\d{4,})$")


class RoundRefused(ValueError):
    """A round that must not be played now: no predecessor, later rounds exist, already played, budget spent,
    nothing to draw."""


class RoundAlreadyPlayed(RoundRefused):
    """The round exists and no replay was asked for: another run played it (the caller may go on with the next)."""


class RoundFailed(RuntimeError):
    """A round whose extraction failed at the backend for too many documents (see the module's rules)."""


def round_key(round_no: int) -> str:
    return f"r{round_no:04d}"


def round_no_of(key: str) -> int:
    match = _ROUND_KEY.match(key)
    if not match or int(match.group(1)) < 1:
        raise RoundRefused(f"round partition {key!r} is not of the form r0001, r0002, ... (round numbers start at 1)")
    return int(match.group(1))


@dataclass(frozen=True)
class RoundSettings:
    bandit: BanditParams = BanditParams()
    budget: Budget = Budget(share=0.1)
    ot: OTSettings = OTSettings()
    max_failure_share: float = MAX_FAILURE_SHARE

    def as_json(self, reference: ReferenceSet | None = None, embedder_id: str | None = None) -> dict:
        out = {"bandit": self.bandit.as_json(), "budget": self.budget.as_json(), "ot": self.ot.__dict__,
               "max_failure_share": self.max_failure_share}
        if reference is not None:
            out["reference"] = {"path": reference.path, "sha256": reference.sha256, "pairs": len(reference.pairs)}
        if embedder_id:
            out["embedder_id"] = embedder_id
        return out


@dataclass(frozen=True)
class RoundRecord:
    """A ``rounds`` row with its JSON columns read: ``summary`` is the round's reward, distance, QA pairs and documents;
    ``arm_rewards`` one :class:`ArmReward` per arm pulled; ``warm_start`` the warm-up's pulls it started from."""

    round_id: str
    round_no: int
    policy: str
    docs_spent: int
    tokens_spent: int
    clustering_id: str | None
    arms: list[dict]
    summary: dict
    arm_rewards: list[ArmReward]
    warm_start: list[ArmReward]

    @classmethod
    def from_row(cls, row: dict) -> RoundRecord:
        rewards = json.loads(row["rewards"]) if row.get("rewards") else {}
        return cls(row["round_id"], row["round_no"], row["policy"], row["docs_spent"], row["tokens_spent"],
                   row.get("clustering_id"), json.loads(row["arms"]) if row.get("arms") else [],
                   rewards.get("round", {}), [ArmReward.from_json(r) for r in rewards.get("arms", [])],
                   [ArmReward.from_json(r) for r in rewards.get("warm_start", [])])


def round_records(rounds) -> list[RoundRecord]:
    """The records of a ``rounds`` frame (``store.rounds()``, ``store.rounds_before(n)``), in its order."""
    return [RoundRecord.from_row(row) for row in rounds.iter_rows(named=True)]


def write_extraction_round(
    store: Store,
    round_id: str,
    round_no: int,
    policy: str,
    run: ExtractionRun,
    *,
    seed: int | None,
    dagster_run_id: str | None,
    arms: object = None,
    rewards: object = None,
    timings: dict | None = None,
    config: dict | None = None,
    clustering_id: str | None = None,
    embedder_id: str | None = None,
    docs_charged: int | None = None,
) -> int:
    """Replace round ``round_id`` (its rounds row, extractions and QA pairs) with ``run``, in one partition write.
    ``docs_charged``: the documents the budget charges (None: every one); the tokens of every call, cached ones
    included. Returns the QA pairs written."""
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    totals = run.totals()
    tokens = sum(totals[k] for k in ("tokens_in", "tokens_out", "tokens_in_cached", "tokens_out_cached"))
    round_row = table_frame("rounds", {
        "round_id": [round_id], "round_no": [round_no], "policy": [policy], "seed": [seed],
        "docs_spent": [totals["documents"] if docs_charged is None else docs_charged], "tokens_spent": [tokens],
        "arms": [json.dumps(arms) if arms is not None else None],
        "rewards": [json.dumps(rewards) if rewards is not None else None],
        "timings": [json.dumps(timings or {"extraction_s": totals["elapsed_s"]})],
        "dagster_run_id": [dagster_run_id], "finished_at": [now],
        "config": [json.dumps(config) if config is not None else None],
        "clustering_id": [clustering_id], "embedder_id": [embedder_id],
    })
    pairs = qa_pair_rows(run.results, round_id, dagster_run_id, now)
    with store.replace_partition("round_id", round_id, ROUND_TABLES) as writer:
        writer.insert_together({"rounds": round_row,
                                "extractions": extraction_rows(run.results, round_id, dagster_run_id, now),
                                "qa_pairs": pairs})
    return pairs.height


@dataclass
class RoundReport:
    round_id: str
    round_no: int
    policy: str
    clustering_id: str | None
    choices: list[ArmChoice]
    rewards: list[ArmReward]
    round_reward: float
    round_distance: float | None
    documents: int
    qa_pairs: int
    run: ExtractionRun
    docs_spent_total: int
    tokens_spent_total: int
    docs_left: int | None
    tokens_left: int | None
    candidates_left: int
    shape: RoundShape
    warm_start: list[ArmReward] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def budget_spent(self) -> bool:
        return self.docs_left == 0 or self.tokens_left == 0 or self.candidates_left == 0


def _pull_rewards(outcomes: Iterable[tuple[str, str]], arm_of: dict[str, int], pair_doc_ids: list[str],
                  pair_vectors: np.ndarray, reference_vectors: np.ndarray, ot: OTSettings) -> list[ArmReward]:
    """One reward per arm among the extracted documents (``outcomes``: doc_id, status): ``1 - W`` of the arm's QA
    pairs (``pair_doc_ids`` and ``pair_vectors``, aligned) against the reference."""
    documents: dict[int, int] = {}
    transient: dict[int, int] = {}
    for doc_id, status in outcomes:
        arm = arm_of.get(doc_id)
        if arm is None:
            continue
        documents[arm] = documents.get(arm, 0) + 1
        if status in (*BACKEND_FAILURES, "gave_up"):  # a failure says nothing of the arm
            transient[arm] = transient.get(arm, 0) + 1
    arms_of_pairs = np.asarray([arm_of.get(d, -1) for d in pair_doc_ids])
    rewards = []
    for arm in sorted(documents):
        mine = pair_vectors[arms_of_pairs == arm] if len(pair_vectors) else pair_vectors
        reward, distance = ot_reward(mine, reference_vectors, ot)
        rewards.append(ArmReward(arm, reward, distance, documents[arm], int(len(mine)),
                                 counted=transient.get(arm, 0) < documents[arm]))
    return rewards


def warm_start_rewards(store: Store, clustering_id: str, embedder, reference_vectors: np.ndarray, ot: OTSettings,
                       log=None) -> list[ArmReward]:
    """The warm-up seen as one pull per arm it touched (see the module's rules)."""
    extractions = store.extractions(WARMUP_ROUND_ID)
    if extractions.height == 0:
        return []
    arm_of = store.clusters_of(extractions["doc_id"].to_list(), clustering_id)
    outcomes = zip(extractions["doc_id"].to_list(), extractions["status"].to_list())
    pairs = store.qa_pairs(WARMUP_ROUND_ID)
    vectors = embed_qa_pairs(store, embedder, pairs["question"].to_list(), pairs["answer"].to_list(), log)
    return _pull_rewards(outcomes, arm_of, pairs["doc_id"].to_list(), vectors, reference_vectors, ot)


def bandit_state(store: Store, policy, clustering_id: str, round_no: int, embedder, reference_vectors: np.ndarray,
                 ot: OTSettings, *, warm_start: bool, log=None) -> tuple[BanditState, list[ArmReward], int]:
    """The state before round ``round_no``, rebuilt from the store (see the module's rules): (state, the warm-up's
    pulls, rounds replayed)."""
    state = BanditState()
    warm: list[ArmReward] = []
    if warm_start:
        warm = warm_start_rewards(store, clustering_id, embedder, reference_vectors, ot, log)
        policy.update(state, warm)
    replayed = 0
    for record in round_records(store.rounds_before(round_no)):
        if record.round_no >= 1 and record.clustering_id == clustering_id and record.summary:
            policy.update(state, record.arm_rewards)
            replayed += 1
    return state, warm, replayed


@dataclass(frozen=True)
class BudgetStatus:
    """What the budget leaves before a round: documents and tokens spent by the rounds before it (the warm-up
    included), and left (None: no such limit)."""

    budget: Budget
    docs_spent: int
    tokens_spent: int
    docs_left: int | None
    tokens_left: int | None

    @property
    def spent(self) -> bool:
        return self.docs_left == 0 or self.tokens_left == 0

    def describe(self) -> str:
        return (f"the budget ({self.budget.describe()}) is spent: {self.docs_spent:,} documents and "
                f"{self.tokens_spent:,} tokens went to the rounds, the warm-up included")


def budget_status(store: Store, budget: Budget, round_no: int | None = None) -> BudgetStatus:
    """The one answer to "is the budget spent?" before round ``round_no`` (default: the next round to play), used by
    the round's check, the re-extraction schedule and the CLI."""
    if round_no is None:
        round_no = (store.last_round_no() or 0) + 1
    docs_spent, tokens_spent = store.spent_before(round_no)
    docs_left, tokens_left = budget.left(store.document_count(), docs_spent, tokens_spent)
    return BudgetStatus(budget, docs_spent, tokens_spent, docs_left, tokens_left)


def check_round(store: Store, round_no: int, settings: RoundSettings,
                replay: bool = False) -> tuple[int, int, int | None, int | None]:
    """Refuse a round that must not be played now (see the module's rules); else (docs spent, tokens spent, docs
    left, tokens left) before it."""
    if round_no < 1:
        raise RoundRefused(f"round numbers start at 1 (round 0 is the warm-up), got {round_no}")
    played = store.round_by_no(round_no)
    if played is not None and not replay and not store.rounds_after(round_no):
        raise RoundAlreadyPlayed(
            f"round {round_key(round_no)} was already played (Dagster run {played['dagster_run_id']}, finished "
            f"{played['finished_at']:%Y-%m-%d %H:%M:%S} UTC): go on with {round_key(round_no + 1)}, or ask for a "
            f"replay (run config `replay: true`) to play {round_key(round_no)} again and replace it")
    if round_no > 1 and store.round_by_no(round_no - 1) is None:
        played = store.last_round_no()
        last = f"the last round played is {round_key(played)}" if played else "no round has been played yet"
        raise RoundRefused(f"round {round_key(round_no)} needs round {round_key(round_no - 1)} first: {last}; rounds run "
                           "in order because each one is chosen from the results of all before it")
    later = store.rounds_after(round_no)
    if later:
        raise RoundRefused(f"round {round_key(round_no)} has later rounds ({', '.join(round_key(r) for r in later)}) "
                           "chosen from its results; re-running it would rewrite their history. Re-run the latest "
                           f"round ({round_key(max(later))}) or go on with {round_key(max(later) + 1)}")
    status = budget_status(store, settings.budget, round_no)
    if status.spent:
        raise RoundRefused(f"{status.describe()} before {round_key(round_no)}; raise the budget to go on")
    return status.docs_spent, status.tokens_spent, status.docs_left, status.tokens_left


def documents_for_rounds(store: Store, budget: Budget) -> int | None:
    """The documents the budget leaves for all rounds: its document limit less the warm-up's documents; with a token
    budget alone, the tokens left after the warm-up at the warm-up's tokens per document; None: no limit."""
    warm_docs, warm_tokens = store.spent_before(1)
    limit = budget.document_limit(store.document_count())
    if limit is not None:
        return max(0, limit - warm_docs)
    if budget.tokens is not None and warm_docs and warm_tokens:
        return max(0, (budget.tokens - warm_tokens) * warm_docs // warm_tokens)
    return None


def shape_of_rounds(store: Store, settings: RoundSettings, clustering_id: str | None) -> RoundShape:
    """The shape every round of these settings takes (see the module's rules)."""
    params = settings.bandit
    n_arms = store.cluster_summaries(clustering_id).height if clustering_id else 0
    return round_shape(n_arms, documents_for_rounds(store, settings.budget), learns=params.chooses_arms,
                       arms_per_round=params.arms_per_round, docs_per_arm=params.docs_per_arm)


def rank_documents(store: Store, policy: str, round_no: int, embedder, reference: ReferenceSet,
                   reference_vectors: np.ndarray, n: int, seed: int):
    """The ``n`` best unextracted documents for ``knn_reference`` or ``classifier`` (doc_id, text)."""
    candidates = store.unextracted_documents(round_no, RETRY_STATUSES,
                                             embedded_by=embedder.embedder_id if policy == "knn_reference" else None)
    if candidates.height == 0:
        return candidates
    ids = candidates["doc_id"].to_list()
    if policy == "knn_reference":
        scores = reference_similarity(store.embedding_vectors(ids, embedder.embedder_id), reference_vectors)
    else:
        background = store.random_documents(negatives_wanted(len(reference.texts)), seed)["text"].to_list()
        scores = reference_classifier_scores(reference.texts, background, candidates["text"].to_list(), seed)
    return candidates[top_documents(ids, scores, n)]


def documents_to_extract(store: Store, sample: Any) -> list[Document]:
    """The drawn rows (doc_id, text) as documents, each web page with its raw HTML."""
    doc_ids = sample["doc_id"].to_list()
    html = store.page_html(doc_ids)
    return [Document(d, t, html.get(d)) for d, t in zip(doc_ids, sample["text"].to_list())]


def check_failures(run: ExtractionRun, round_id: str, max_share: float) -> None:
    """Raise :class:`RoundFailed` with the cause when at least ``max_share`` of the round's documents failed at the
    backend (see the module's rules)."""
    failed = [r for r in run.results if r.status in BACKEND_FAILURES]
    if not run.results or len(failed) < max_share * len(run.results):
        return
    by_status = ", ".join(f"{n} {s}" for s, n in sorted(Counter(r.status for r in failed).items()))
    causes = Counter((r.error or "no error text").splitlines()[0][:200] for r in failed).most_common(2)
    raise RoundFailed(
        f"round {round_id}: {len(failed)} of {len(run.results)} documents failed at the backend ({by_status}), at or "
        f"over the limit of {max_share:.0%}; most common cause: " + "; ".join(f"{e} ({n}x)" for e, n in causes)
        + ". The round is not written and nothing is charged; the answers that arrived are cached. Fix the backend, "
        "then play the round again")


def give_up_after(run: ExtractionRun, attempts_before: dict[str, int], max_attempts: int) -> int:
    """Record as ``gave_up`` each transient failure that was the document's last allowed attempt; returns how many."""
    given_up = 0
    for result in run.results:
        if result.status in TRANSIENT_FAILURES and attempts_before.get(result.doc_id, 0) + 1 >= max_attempts:
            result.status, result.error = "gave_up", f"gave up after {max_attempts} attempts; last: {result.error}"
            run.counters["gave_up"] += 1
            given_up += 1
    return given_up


@dataclass
class DrawnDocuments:
    sample: Any  # polars DataFrame: doc_id, text (and cluster_id for arm policies)
    arm_of: dict[str, int]  # doc_id -> cluster, where the document has one
    choices: list[ArmChoice]  # empty for the document policies (random, all)
    warm_start: list[ArmReward]


def draw_documents(store: Store, round_no: int, settings: RoundSettings, shape: RoundShape, clustering_id: str | None,
                   embedder, reference: ReferenceSet, reference_vectors: np.ndarray, docs_left: int | None,
                   log: Callable[[str], None]) -> DrawnDocuments:
    """The documents of round ``round_no``: arms chosen by the policy from the rebuilt state, then a seeded draw of
    their unextracted documents; or, for the document policies, unextracted documents directly."""
    params = settings.bandit
    rng = round_rng(params.seed, round_no)
    sample_key = f"{params.seed}:{round_no}"
    if not params.chooses_arms:
        wanted = shape.documents if docs_left is None else min(shape.documents, docs_left)
        if params.policy in ("knn_reference", "classifier"):
            sample = rank_documents(store, params.policy, round_no, embedder, reference, reference_vectors, wanted,
                                    params.seed)
        else:
            sample = store.sample_unextracted_documents(round_no, RETRY_STATUSES, wanted,
                                                        sample_key=sample_key if params.policy == "random" else None)
        if sample.height == 0:
            raise RoundRefused("no unextracted document is left in the corpus")
        arm_of = store.clusters_of(sample["doc_id"].to_list(), clustering_id) if clustering_id else {}
        return DrawnDocuments(sample, arm_of, [], [])
    summaries = store.cluster_summaries(clustering_id)
    gaussians = {int(r["cluster_id"]): (np.asarray(r["mean"], dtype=np.float32), np.asarray(r["spread"], dtype=np.float32))
                 for r in summaries.iter_rows(named=True) if r["mean"] is not None} if params.share_threshold is not None else None
    policy = make_policy(params, gaussians)
    state, warm, replayed = bandit_state(store, policy, clustering_id, round_no, embedder, reference_vectors,
                                         settings.ot, warm_start=params.warm_start, log=log)
    playable = {arm: n for arm, n in store.unextracted_per_cluster(clustering_id, round_no, RETRY_STATUSES).items() if n > 0}
    log(f"round {round_key(round_no)}: state from {replayed} earlier round(s){' and the warm-up' if warm else ''}; "
        f"{len(playable)} playable arm(s), {summaries.height - len(playable)} exhausted")
    if not playable:
        raise RoundRefused(f"every arm of clustering {clustering_id} is exhausted: no unextracted document is left "
                           "(a new crawl, once embedded and clustered, makes arms playable again)")
    choices = allot_documents(policy.choose(state, playable, shape.arms_per_round, rng), playable,
                              shape.docs_per_arm, docs_left)
    sample = store.sample_unextracted_in_clusters(clustering_id, round_no, RETRY_STATUSES,
                                                  {c.arm: c.documents for c in choices}, sample_key)
    return DrawnDocuments(sample, dict(zip(sample["doc_id"].to_list(), sample["cluster_id"].to_list())), choices, warm)


@contextlib.contextmanager
def timed(timings: dict[str, float], name: str) -> Iterator[None]:
    """Add the body's seconds to ``timings[name]``."""
    tick = time.perf_counter()
    try:
        yield
    finally:
        timings[name] = round(timings.get(name, 0.0) + time.perf_counter() - tick, 3)


def describe_choices(choices: list[ArmChoice], limit: int = 12) -> str:
    shown = ", ".join(f"{c.arm} ({c.reason}{'' if c.score is None else f' {c.score:.3f}'}, {c.documents})"
                      for c in choices[:limit])
    return f" from {len(choices)} arm(s): {shown}{' ...' if len(choices) > limit else ''}" if choices else ""


def extract_round(store: Store, round_no: int, extractor, documents: list[Document],
                  settings: RoundSettings) -> tuple[ExtractionRun, int]:
    """Extract the round's documents and apply the failure rules (see the module's rules): (the run, the documents
    the budget charges)."""
    run = extractor.extract(documents)
    attempts_before = store.attempts_before(round_no, [d.doc_id for d in documents])
    check_failures(run, round_key(round_no), settings.max_failure_share)
    give_up_after(run, attempts_before, MAX_ATTEMPTS)
    return run, sum(1 for d in documents if d.doc_id not in attempts_before)


def candidates_left(store: Store, round_no: int, clustering_id: str | None, chooses_arms: bool) -> int:
    """Documents a round after ``round_no`` could still draw."""
    if chooses_arms:
        return sum(store.unextracted_per_cluster(clustering_id, round_no + 1, RETRY_STATUSES).values())
    return store.unextracted_count(round_no + 1, RETRY_STATUSES)


def play_round(
    store: Store,
    round_no: int,
    extractor,
    embedder,
    reference: ReferenceSet,
    settings: RoundSettings,
    *,
    dagster_run_id: str | None = None,
    replay: bool = False,
    log: Callable[[str], None] | None = None,
) -> RoundReport:
    """Play round ``round_no`` and write it (see the module's rules): check, choose, extract, reward, write."""
    say = log or (lambda message: None)
    params, timings, round_id = settings.bandit, {}, round_key(round_no)
    with timed(timings, "total_s"):
        with timed(timings, "prepare_s"):
            docs_spent, tokens_spent, docs_left, tokens_left = check_round(store, round_no, settings, replay)
            clustering = store.current_clustering()
            if params.chooses_arms and clustering is None:
                raise RoundRefused(f"policy {params.policy} chooses among clusters: materialize clusters first")
            clustering_id = clustering["clustering_id"] if clustering else None
            reference_vectors = embed_texts(store, embedder, reference.texts, say)
            shape = shape_of_rounds(store, settings, clustering_id)
        with timed(timings, "choose_s"):
            drawn = draw_documents(store, round_no, settings, shape, clustering_id, embedder, reference,
                                   reference_vectors, docs_left, say)
        say(f"round {round_id} ({params.policy}): {drawn.sample.height:,} documents{describe_choices(drawn.choices)}")
        documents = documents_to_extract(store, drawn.sample)
        with timed(timings, "extraction_s"):
            run, docs_charged = extract_round(store, round_no, extractor, documents, settings)
        with timed(timings, "reward_s"):
            qa_frame = qa_pair_rows(run.results, round_id, dagster_run_id, datetime.now(timezone.utc).replace(tzinfo=None))
            pair_vectors = embed_qa_pairs(store, embedder, qa_frame["question"].to_list(), qa_frame["answer"].to_list(), say)
            rewards = _pull_rewards([(r.doc_id, r.status) for r in run.results], drawn.arm_of,
                                    qa_frame["doc_id"].to_list(), pair_vectors, reference_vectors, settings.ot)
            round_reward, round_distance = ot_reward(pair_vectors, reference_vectors, settings.ot)
    with timed(timings, "write_s"):
        write_extraction_round(
            store, round_id, round_no, params.policy, run, seed=params.seed, dagster_run_id=dagster_run_id,
            arms=[c.as_json() for c in drawn.choices],
            rewards={"round": {"reward": round(round_reward, 6),
                               "distance": None if round_distance is None else round(round_distance, 6),
                               "qa_pairs": qa_frame.height, "documents": len(documents)},
                     "arms": [r.as_json() for r in rewards], "warm_start": [r.as_json() for r in drawn.warm_start]},
            timings=timings, config={**settings.as_json(reference, embedder.embedder_id), "shape": shape.as_json()},
            clustering_id=clustering_id, embedder_id=embedder.embedder_id, docs_charged=docs_charged)
    docs_after, tokens_after = store.spent_before(round_no + 1)
    docs_left_after, tokens_left_after = settings.budget.left(store.document_count(), docs_after, tokens_after)
    notes = [f"{len(documents)} documents drawn: fewer were left in the chosen arms than asked"] \
        if docs_left is not None and len(documents) < min(docs_left, shape.documents) else []
    return RoundReport(round_id, round_no, params.policy, clustering_id, drawn.choices, rewards, round_reward,
                       round_distance, len(documents), qa_frame.height, run, docs_after, tokens_after, docs_left_after,
                       tokens_left_after, candidates_left(store, round_no, clustering_id, params.chooses_arms), shape,
                       drawn.warm_start, notes, timings)


@dataclass
class HarvestSummary:
    rounds: int
    documents_extracted: int
    tokens: int
    qa_pairs: int
    ot_distance: float | None
    ot_embedder_id: str
    per_round: list[dict]
    why_no_pairs: str | None = None  # the likely cause when no round found a pair

    def as_json(self) -> dict:
        return self.__dict__.copy()


def harvest_summary(store: Store, embedder, reference: ReferenceSet, ot: OTSettings = OTSettings(), log=None) -> HarvestSummary:
    """What all rounds (the warm-up included) harvested: documents, tokens, QA pairs, and the OT distance of every
    harvested pair to the reference, measured with ``embedder``."""
    rounds = store.rounds()
    pairs = store.qa_pairs_of_rounds()
    distance = None
    if pairs.height:
        vectors = embed_qa_pairs(store, embedder, pairs["question"].to_list(), pairs["answer"].to_list(), log)
        distance = ot_distance(vectors, embed_texts(store, embedder, reference.texts), ot)
    per_round = [{"round_id": r.round_id, "policy": r.policy, "documents": r.docs_spent, "tokens": r.tokens_spent,
                  **{k: v for k, v in r.summary.items() if k != "documents"},
                  "arm_rewards": [round(a.reward, 6) for a in r.arm_rewards]} for r in round_records(rounds)]
    why = None if pairs.height else why_no_pairs(*store.extraction_statuses())
    return HarvestSummary(int(rounds.filter(rounds["round_no"] >= 1).height), int(rounds["docs_spent"].sum() or 0),
                          int(rounds["tokens_spent"].sum() or 0), pairs.height, distance, embedder.embedder_id, per_round,
                          why)


def round_history(store: Store) -> list[dict]:
    """Per round (the warm-up included): documents, QA pairs, QA yield, round reward, cumulative documents."""
    history = []
    cumulative = 0
    for record in round_records(store.rounds()):
        cumulative += record.docs_spent
        qa = record.summary.get("qa_pairs")
        if qa is None:
            qa = store.qa_pairs(record.round_id).height
        history.append({"round_id": record.round_id, "round_no": record.round_no, "policy": record.policy,
                        "documents": record.docs_spent, "qa_pairs": qa,
                        "qa_yield": qa / record.docs_spent if record.docs_spent else 0.0,
                        "reward": record.summary.get("reward"), "documents_cumulative": cumulative})
    return history
