"""Arm-selection policies for the bandit rounds (EQUAL, arXiv 2505.12250, section 3.3, and the baselines it is
measured against).

One interface: a :class:`Policy` chooses the arms of a round from a :class:`BanditState` (:meth:`Policy.choose`)
and learns from the round's rewards (:meth:`Policy.update`). The state holds, per arm, its (possibly fractional)
pull count and reward sum; nothing else. It is rebuilt for every round by replaying the rewards stored in the
``rounds`` table (see :mod:`equal_dagster.core.rounds`), and every random draw comes from a generator seeded with
(seed, round number): the same history and seed give the same choices.

Rules:

* ``equal_ucb``: score ``DS_i = mean_i + alpha * sqrt(2 ln(N) / T_i)`` with ``T_i`` the arm's pulls and ``N`` the
  pulls of all arms; ``alpha`` constant, or the paper's decay ``alpha = 1 / (N + 1)``. Arms never played come
  first (their score is infinite; among them the draw is seeded). Optional neighbour sharing, as EQUAL does it: each
  cluster is a Gaussian with its vectors' mean and per-dimension standard deviation, two clusters lie at the
  2-Wasserstein distance of their Gaussians, ``sqrt(|m1 - m2|^2 + |s1 - s2|^2)``, and a reward observed on arm ``i``
  is also observed, with weight ``share_weight``, on every arm within ``share_threshold`` of ``i`` (the paper:
  0.2). Measured off and on (docs/benchmarks.md): no gain on the suite's corpora, so it is off by default. The
  reward is EQUAL's ``1 - W`` (its offset of 1 turns the distance into a reward; a constant offset changes no UCB
  choice); a reward weighted by the share of documents that yielded pairs was measured and did not win.
* ``thompson``: each arm's mean reward has a Beta(1 + reward sum, 1 + pulls - reward sum) posterior (rewards lie in
  [0, 1]); one draw per arm, the highest draws win.
* ``epsilon_greedy``: unplayed arms first; then each slot takes, with probability ``epsilon``, an arm drawn
  uniformly, else the arm with the highest mean reward.
* ``random`` and ``all`` choose documents, not arms: ``random`` draws uniformly among documents not yet extracted,
  ``all`` takes them in source order (crawl, file, line). They are the baselines of the selection benchmark.
* Only playable arms are chosen: an arm with no unextracted document left is exhausted and leaves the game; when
  a new crawl brings it documents it is playable again, with its pull counts intact.
* The documents of a round are at most ``arms_per_round * docs_per_arm``, and never more than the budget leaves.

The round's shape follows from the data (:func:`round_shape`), so that the defaults fit a corpus nobody tuned them
for; a setting given explicitly wins:

* **Arms per round**: EQUAL's ratio, 5% of the arms (its 50 of 1,000), at least 1.
* **Documents per arm**: EQUAL's 10, as long as the budget left for the rounds (the budget less the warm-up's
  spend) makes between ``MIN_ROUNDS`` (10) and ``MAX_ROUNDS`` (30) rounds of that shape. Fewer: documents per arm
  shrink (to 1 at least), then arms per round, until there are 10 rounds: a bandit needs rounds to learn in. More:
  documents per arm grow until there are 30 rounds, since every round costs a run of its own.
* Policies that do not learn from rewards (``random``, ``all``, ``knn_reference``, ``classifier``) play
  ``MIN_ROUNDS`` rounds of equal size: how they cut the budget into rounds changes nothing they choose.
* With a token budget alone, the documents left are estimated from the warm-up's tokens per document
  (:func:`equal_dagster.core.rounds.documents_for_rounds`); with no budget at all, the rounds take EQUAL's shape.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

POLICIES = ("equal_ucb", "thompson", "epsilon_greedy", "random", "all", "knn_reference", "classifier")
ARM_POLICIES = frozenset({"equal_ucb", "thompson", "epsilon_greedy"})

ARM_SHARE_PER_ROUND = 0.05  # EQUAL: 50 of its 1,000 arms each round ...
DOCS_PER_ARM = 10  # ... and 10 documents from each
MIN_ROUNDS = 10  # rounds the bandit gets to learn in, at least
MAX_ROUNDS = 30  # documents per arm grow beyond 10 rather than play more rounds than this


@dataclass(frozen=True)
class RoundShape:
    """How many arms a round plays and how many documents it draws from each, and why."""

    arms_per_round: int
    docs_per_arm: int
    expected_rounds: int | None  # None: no document budget to divide
    reason: str

    @property
    def documents(self) -> int:
        return self.arms_per_round * self.docs_per_arm

    def as_json(self) -> dict:
        return asdict(self)


def round_shape(n_arms: int, round_budget: int | None, *, learns: bool = True, arms_per_round: int | None = None,
                docs_per_arm: int | None = None) -> RoundShape:
    """The shape of every round (see the module's rules): ``n_arms`` arms in the clustering, ``round_budget`` documents
    for all rounds (the budget less the warm-up's documents; None: no document budget)."""
    arms = arms_per_round or max(1, round(ARM_SHARE_PER_ROUND * n_arms))
    docs = docs_per_arm or DOCS_PER_ARM
    why = [f"{arms} arm(s) a round ({'set' if arms_per_round else f'5% of {n_arms}'}), "
           f"{docs} document(s) each ({'set' if docs_per_arm else 'EQUAL'})"]
    if round_budget is None:
        return RoundShape(arms, docs, None, why[0] + "; no document budget to divide")
    budget = max(1, round_budget)
    if not learns:
        if arms_per_round and docs_per_arm:
            return RoundShape(arms, docs, math.ceil(budget / (arms * docs)), why[0])
        docs = math.ceil(budget / MIN_ROUNDS / (arms_per_round or 1))
        return RoundShape(arms_per_round or 1, docs, math.ceil(budget / ((arms_per_round or 1) * docs)),
                          f"{MIN_ROUNDS} equal rounds of the {budget:,} documents left: the policy does not learn "
                          "from rewards")
    if budget < MIN_ROUNDS * arms * docs and not docs_per_arm:
        docs = max(1, budget // (MIN_ROUNDS * arms))
        why.append(f"documents per arm cut to {docs} for {MIN_ROUNDS} rounds")
    elif budget > MAX_ROUNDS * arms * docs and not docs_per_arm:
        docs = math.ceil(budget / (MAX_ROUNDS * arms))
        why.append(f"documents per arm raised to {docs} for at most {MAX_ROUNDS} rounds")
    if budget < MIN_ROUNDS * arms * docs and not arms_per_round:
        arms = max(1, budget // (MIN_ROUNDS * docs))
        why.append(f"arms per round cut to {arms} for {MIN_ROUNDS} rounds")
    rounds = math.ceil(budget / (arms * docs))
    return RoundShape(arms, docs, rounds, "; ".join(why) + f": about {rounds} rounds of the {budget:,} documents left")


@dataclass(frozen=True)
class BanditParams:
    policy: str = "equal_ucb"
    arms_per_round: int | None = None  # None: from the data (round_shape)
    docs_per_arm: int | None = None  # None: from the data (round_shape)
    alpha: float = 1.0
    alpha_decay: bool = True  # EQUAL: alpha = 1 / (N + 1)
    share_threshold: float | None = None  # W2 distance between cluster Gaussians (paper: 0.2); None: no sharing
    share_weight: float = 0.5
    epsilon: float = 0.1
    warm_start: bool = True  # the warm-up's extractions count as each arm's first pull
    seed: int = 0

    def __post_init__(self) -> None:
        if self.policy not in POLICIES:
            raise ValueError(f"unknown policy {self.policy!r}: choose one of {', '.join(POLICIES)}")
        if (self.arms_per_round is not None and self.arms_per_round < 1) or (
                self.docs_per_arm is not None and self.docs_per_arm < 1):
            raise ValueError("arms_per_round and docs_per_arm must be at least 1 (or unset: derived from the data)")
        if self.alpha < 0:
            raise ValueError("alpha must not be negative")
        if not 0 <= self.epsilon <= 1:
            raise ValueError("epsilon must be in [0, 1]")
        if not 0 < self.share_weight <= 1:
            raise ValueError("share_weight must be in (0, 1]")
        if self.share_threshold is not None and self.share_threshold < 0:
            raise ValueError("share_threshold is a 2-Wasserstein distance: it must not be negative")

    @property
    def chooses_arms(self) -> bool:
        return self.policy in ARM_POLICIES

    def as_json(self) -> dict:
        return asdict(self)


@dataclass
class ArmStats:
    pulls: float = 0.0
    reward_sum: float = 0.0

    @property
    def mean(self) -> float | None:
        return self.reward_sum / self.pulls if self.pulls > 0 else None


@dataclass
class BanditState:
    arms: dict[int, ArmStats] = field(default_factory=dict)

    def observe(self, arm: int, reward: float, weight: float = 1.0) -> None:
        stats = self.arms.setdefault(arm, ArmStats())
        stats.pulls += weight
        stats.reward_sum += weight * reward

    @property
    def total_pulls(self) -> float:
        return sum(s.pulls for s in self.arms.values())

    def stats(self, arm: int) -> ArmStats:
        return self.arms.get(arm, ArmStats())


@dataclass
class ArmChoice:
    arm: int
    score: float | None  # None: unplayed (an infinite score)
    pulls: float
    mean: float | None
    reason: str  # unplayed | ucb | thompson | explore | exploit
    documents: int = 0  # filled in once the round's documents are allotted

    def as_json(self) -> dict:
        return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in asdict(self).items()}


@dataclass
class ArmReward:
    arm: int
    reward: float
    distance: float | None  # the OT distance W; None when the pull yielded no QA pair
    documents: int
    qa_pairs: int
    counted: bool = True  # False: every document failed for a transient reason; the pull teaches nothing

    def as_json(self) -> dict:
        return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_json(cls, row: dict) -> ArmReward:
        return cls(int(row["arm"]), float(row["reward"]), row.get("distance"), int(row.get("documents", 0)),
                   int(row.get("qa_pairs", 0)), bool(row.get("counted", True)))


class Policy(ABC):
    """Choose the arms of a round; learn from its rewards."""

    name = "policy"

    @abstractmethod
    def choose(self, state: BanditState, playable: dict[int, int], k: int, rng: np.random.Generator) -> list[ArmChoice]:
        """Up to ``k`` of the ``playable`` arms (arm -> unextracted documents), best first."""

    def update(self, state: BanditState, rewards: Sequence[ArmReward]) -> None:
        for reward in rewards:
            if reward.counted:
                state.observe(reward.arm, reward.reward)


def _unplayed_first(state: BanditState, playable: dict[int, int], k: int, rng: np.random.Generator) -> tuple[list[ArmChoice], list[int]]:
    """Up to ``k`` never-played arms (a seeded draw among them), and the played ones left to rank."""
    arms = sorted(playable)
    unplayed = [a for a in arms if state.stats(a).pulls == 0]
    played = [a for a in arms if state.stats(a).pulls > 0]
    drawn = [unplayed[i] for i in rng.permutation(len(unplayed))[:k]] if unplayed else []
    return [ArmChoice(a, None, 0.0, None, "unplayed") for a in drawn], played


def _top(candidates: list[tuple[int, float]], k: int, rng: np.random.Generator) -> list[tuple[int, float]]:
    """The ``k`` highest scores; ties broken by a seeded draw."""
    tie_break = rng.permutation(len(candidates))
    order = sorted(range(len(candidates)), key=lambda i: (-candidates[i][1], tie_break[i]))
    return [candidates[i] for i in order[:k]]


class EqualUCB(Policy):
    name = "equal_ucb"

    def __init__(self, alpha: float = 1.0, alpha_decay: bool = True, share_threshold: float | None = None,
                 share_weight: float = 0.5, gaussians: dict[int, tuple[np.ndarray, np.ndarray]] | None = None):
        self.alpha = alpha
        self.alpha_decay = alpha_decay
        self.share_threshold = share_threshold
        self.share_weight = share_weight
        self._neighbours: dict[int, list[int]] = {}
        if share_threshold is not None and gaussians:
            arms = sorted(gaussians)
            distance = gaussian_w2([gaussians[a][0] for a in arms], [gaussians[a][1] for a in arms])
            for i, arm in enumerate(arms):
                self._neighbours[arm] = [arms[j] for j in np.flatnonzero(distance[i] <= share_threshold) if j != i]

    def exploration_weight(self, total_pulls: float) -> float:
        return 1.0 / (total_pulls + 1.0) if self.alpha_decay else self.alpha

    def score(self, state: BanditState, arm: int) -> float:
        """``mean + alpha * sqrt(2 ln(N) / T)``; infinite for an unplayed arm."""
        stats = state.stats(arm)
        if stats.pulls == 0:
            return math.inf
        total = state.total_pulls
        bonus = math.sqrt(2.0 * math.log(max(total, 1.0)) / stats.pulls)
        return stats.mean + self.exploration_weight(total) * bonus

    def choose(self, state, playable, k, rng):
        chosen, played = _unplayed_first(state, playable, k, rng)
        scored = [(a, self.score(state, a)) for a in played]
        for arm, score in _top(scored, k - len(chosen), rng):
            stats = state.stats(arm)
            chosen.append(ArmChoice(arm, score, stats.pulls, stats.mean, "ucb"))
        return chosen

    def neighbours(self, arm: int) -> list[int]:
        return self._neighbours.get(arm, [])

    def update(self, state, rewards):
        for reward in rewards:
            if not reward.counted:
                continue
            state.observe(reward.arm, reward.reward)
            for other in self.neighbours(reward.arm):
                state.observe(other, reward.reward, self.share_weight)


def gaussian_w2(means: Sequence[np.ndarray], spreads: Sequence[np.ndarray]) -> np.ndarray:
    """The 2-Wasserstein distances between diagonal Gaussians: ``sqrt(|m_i - m_j|^2 + |s_i - s_j|^2)``."""
    m, sd = np.asarray(means, dtype=np.float64), np.asarray(spreads, dtype=np.float64)

    def squared(x: np.ndarray) -> np.ndarray:
        norms = (x * x).sum(axis=1)
        return np.maximum(norms[:, None] + norms[None, :] - 2 * x @ x.T, 0)

    return np.sqrt(squared(m) + squared(sd))


class ThompsonSampling(Policy):
    name = "thompson"

    def choose(self, state, playable, k, rng):
        draws = []
        for arm in sorted(playable):
            stats = state.stats(arm)
            successes = min(max(stats.reward_sum, 0.0), stats.pulls)
            draws.append((arm, float(rng.beta(1.0 + successes, 1.0 + stats.pulls - successes))))
        return [ArmChoice(a, s, state.stats(a).pulls, state.stats(a).mean, "thompson") for a, s in _top(draws, k, rng)]


class EpsilonGreedy(Policy):
    name = "epsilon_greedy"

    def __init__(self, epsilon: float = 0.1):
        self.epsilon = epsilon

    def choose(self, state, playable, k, rng):
        chosen, played = _unplayed_first(state, playable, k, rng)
        left = list(played)
        while len(chosen) < k and left:
            if rng.random() < self.epsilon:
                arm, reason = left[int(rng.integers(len(left)))], "explore"
            else:
                arm, _ = _top([(a, state.stats(a).mean) for a in left], 1, rng)[0]
                reason = "exploit"
            left.remove(arm)
            stats = state.stats(arm)
            chosen.append(ArmChoice(arm, stats.mean, stats.pulls, stats.mean, reason))
        return chosen


class DocumentPolicy(Policy):
    """``random`` and ``all``: they draw documents, not arms (``core/rounds.py``), and choose no arm; the rewards of
    their rounds still update the arms the documents fell in, for a later arm policy."""

    def __init__(self, name: str):
        self.name = name

    def choose(self, state, playable, k, rng):
        return []


def make_policy(params: BanditParams, gaussians: dict[int, tuple[np.ndarray, np.ndarray]] | None = None) -> Policy:
    """The policy named in ``params``; ``gaussians``: each arm's (mean, spread), for neighbour sharing."""
    if params.policy == "equal_ucb":
        return EqualUCB(params.alpha, params.alpha_decay, params.share_threshold, params.share_weight, gaussians)
    if params.policy == "thompson":
        return ThompsonSampling()
    if params.policy == "epsilon_greedy":
        return EpsilonGreedy(params.epsilon)
    return DocumentPolicy(params.policy)


def round_rng(seed: int, round_no: int) -> np.random.Generator:
    return np.random.default_rng([seed, round_no])


def allot_documents(choices: list[ArmChoice], playable: dict[int, int], docs_per_arm: int,
                    budget_left: int | None) -> list[ArmChoice]:
    """Give each chosen arm ``min(docs_per_arm, its unextracted documents)``, in choice order, until the budget's
    documents run out; arms left with none are dropped."""
    allotted = []
    left = math.inf if budget_left is None else budget_left
    for choice in choices:
        n = int(min(docs_per_arm, playable.get(choice.arm, 0), left))
        if n <= 0:
            continue
        choice.documents = n
        left -= n
        allotted.append(choice)
    return allotted


@dataclass(frozen=True)
class Budget:
    """How much the whole extraction may spend, the warm-up included: documents (a number, or a share of the corpus)
    and, optionally, LLM tokens (in + out, as the ledger counts them)."""

    documents: int | None = None
    share: float | None = None
    tokens: int | None = None

    @classmethod
    def parse(cls, text: str | None, tokens: int | None = None) -> Budget:
        """``"500"`` (documents), ``"10%"`` (of the corpus), or empty/None (no document limit)."""
        if tokens is not None and tokens < 1:
            raise ValueError(f"a token budget must be at least 1, got {tokens}")
        if text is None or not str(text).strip():
            return cls(tokens=tokens)
        text = str(text).strip()
        try:
            if text.endswith("%"):
                share = float(text[:-1]) / 100.0
                if not 0 < share <= 1:
                    raise ValueError
                return cls(share=share, tokens=tokens)
            documents = int(text)
            if documents < 1:
                raise ValueError
            return cls(documents=documents, tokens=tokens)
        except ValueError:
            raise ValueError(f"budget {text!r}: give a number of documents (such as 500) or a share of the corpus "
                             "(such as 10%)") from None

    def document_limit(self, corpus_documents: int) -> int | None:
        if self.share is not None:
            return int(math.floor(self.share * corpus_documents + 1e-9))
        return self.documents

    def left(self, corpus_documents: int, docs_spent: int, tokens_spent: int) -> tuple[int | None, int | None]:
        """(documents left, tokens left); None where there is no limit."""
        limit = self.document_limit(corpus_documents)
        return (None if limit is None else max(0, limit - docs_spent),
                None if self.tokens is None else max(0, self.tokens - tokens_spent))

    def describe(self) -> str:
        parts = []
        if self.share is not None:
            parts.append(f"{self.share * 100:.4g}% of the corpus")
        if self.documents is not None:
            parts.append(f"{self.documents:,} documents")
        if self.tokens is not None:
            parts.append(f"{self.tokens:,} tokens")
        return " and ".join(parts) or "no limit"

    def as_json(self) -> dict:
        return asdict(self)
