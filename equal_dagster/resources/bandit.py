"""The bandit's settings as a Dagster resource: policy, round size, exploration, budget, reference set, reward."""

from __future__ import annotations

from typing import Literal, Optional

import dagster as dg
from pydantic import Field

from equal_dagster.core.bandit import BanditParams, Budget
from equal_dagster.core.reward import OTSettings, ReferenceSet, load_reference_set
from equal_dagster.core.rounds import MAX_FAILURE_SHARE, RoundSettings


class BanditResource(dg.ConfigurableResource):
    """What `bandit_rounds`, `next_round_sensor` and the re-extraction schedule share: one place for the budget and
    the goal (the reference set), so that they agree on when to stop."""

    policy: Literal["equal_ucb", "thompson", "epsilon_greedy", "random", "all", "knn_reference", "classifier"] = Field(
        BanditParams.policy, description="equal_ucb | thompson | epsilon_greedy | random | all | knn_reference | "
                                         "classifier")
    arms_per_round: Optional[int] = Field(
        None, description="arms chosen per round; none: 5% of the arms (EQUAL's 50 of 1,000), at least 1")
    docs_per_arm: Optional[int] = Field(
        None, description="documents drawn from each chosen arm; none: EQUAL's 10, fewer or more so that the budget "
                          "left after the warm-up makes 10 to 30 rounds")
    alpha: float = Field(1.0, description="equal_ucb: exploration weight when alpha_decay is off")
    alpha_decay: bool = Field(True, description="equal_ucb: the paper's alpha = 1 / (total pulls + 1)")
    share_threshold: Optional[float] = Field(
        None, description="equal_ucb: share a reward with arms whose centroids lie within this cosine distance")
    share_weight: float = Field(0.5, description="equal_ucb: weight of a shared reward")
    epsilon: float = Field(0.1, description="epsilon_greedy: share of exploratory choices")
    warm_start: bool = Field(True, description="the warm-up's extractions count as each arm's first pull")
    seed: int = Field(0, description="seed of every draw (arms, documents); same seed and history, same choices")
    budget: str = Field("10%", description="documents for all extraction, warm-up included: a number or a share (10%)")
    budget_tokens: Optional[int] = Field(None, description="LLM tokens (in + out) for all extraction; none: no limit")
    reference: str = Field(description="JSONL file of question/answer pairs that describes the goal")
    ot_cost: Literal["cosine", "euclidean", "sqeuclidean"] = Field(
        "cosine", description="ground cost of the OT distance: cosine | euclidean | sqeuclidean")
    ot_exact_max_cells: int = Field(4_000_000, description="exact OT (ot.emd2) up to this cost-matrix size, Sinkhorn above")
    sinkhorn_reg: float = Field(0.05, description="entropic regularization of Sinkhorn")
    max_failure_share: float = Field(
        MAX_FAILURE_SHARE, description="a round with at least this share of its documents failed at the LLM backend is "
                                       "not written and stops the rounds (1.0: only a round where every call failed)")

    def round_settings(self) -> RoundSettings:
        return RoundSettings(
            bandit=BanditParams(
                policy=self.policy, arms_per_round=self.arms_per_round, docs_per_arm=self.docs_per_arm,
                alpha=self.alpha, alpha_decay=self.alpha_decay, share_threshold=self.share_threshold,
                share_weight=self.share_weight, epsilon=self.epsilon, warm_start=self.warm_start, seed=self.seed,
            ),
            budget=Budget.parse(self.budget, self.budget_tokens),
            ot=OTSettings(self.ot_cost, self.ot_exact_max_cells, self.sinkhorn_reg),
            max_failure_share=self.max_failure_share,
        )

    def load_reference(self) -> ReferenceSet:
        return load_reference_set(self.reference)
