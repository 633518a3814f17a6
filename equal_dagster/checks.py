"""Asset checks that read the store after an asset is written (the rules are in ``core/checks.py``). The partitioned
assets (``corpus``, ``embeddings``, ``bandit_rounds``) and the warm-up and fine-tune check what they wrote in their own
step (their ``check_specs``); these run after their asset in every job that materializes it, and on their own from the
UI."""

import dagster as dg

from equal_dagster.assets.metadata import check_result
from equal_dagster.core.checks import (
    drop_shares,
    every_document_in_one_arm,
    kept_pairs_distinct,
    kept_pairs_uncontaminated,
    same_items,
)
from equal_dagster.resources.evaluator import EvaluatorResource
from equal_dagster.resources.store import StoreResource


@dg.asset_check(asset="clusters", blocking=True, description="every embedded document is in exactly one arm")
def every_document_in_an_arm(store: StoreResource) -> dg.AssetCheckResult:
    with store.open_store(read_only=True) as db:
        clustering = db.current_clustering()
        if clustering is None:
            return dg.AssetCheckResult(passed=False, description="no clustering in the store")
        return check_result("every_document_in_an_arm", every_document_in_one_arm(db, clustering["clustering_id"]),
                            blocking=True)


@dg.asset_check(asset="qa_dataset", blocking=True,
                description="no kept pair shares a 13-word n-gram with an evaluation item (tested again on the kept pairs)")
def no_contaminated_pair(store: StoreResource, evaluator: EvaluatorResource) -> dg.AssetCheckResult:
    with store.open_store(read_only=True) as db:
        return check_result("no_contaminated_pair", kept_pairs_uncontaminated(db, evaluator.evaluation_texts()), blocking=True)


@dg.asset_check(asset="qa_dataset", blocking=True, description="no two kept pairs are the same question and answer")
def no_duplicate_pair(store: StoreResource) -> dg.AssetCheckResult:
    with store.open_store(read_only=True) as db:
        return check_result("no_duplicate_pair", kept_pairs_distinct(db), blocking=True)


@dg.asset_check(asset="qa_dataset", description="no filter dropped more than its share of the scored pairs "
                                                "(contamination 5%, duplicates and REInstruct's rules 50% each)")
def drop_share_per_reason(store: StoreResource) -> dg.AssetCheckResult:
    with store.open_store(read_only=True) as db:
        return check_result("drop_share_per_reason", drop_shares(*db.drop_reasons()))


@dg.asset_check(asset="eval_scores", description="the base and the fine-tuned models were scored on the same items")
def scored_on_the_same_items(store: StoreResource) -> dg.AssetCheckResult:
    with store.open_store(read_only=True) as db:
        scores = db.eval_scores()
    n_by_model: dict[str, dict[str, int | None]] = {}
    for row in scores.iter_rows(named=True):
        n_by_model.setdefault(row["model_id"], {})[row["task"]] = row["n"]
    return check_result("scored_on_the_same_items", same_items(n_by_model))


ASSET_CHECKS = [every_document_in_an_arm, no_contaminated_pair, no_duplicate_pair, drop_share_per_reason,
                scored_on_the_same_items]
