"""The data rules the asset checks apply (core/checks.py), on hand-computed cases."""

from equal_dagster.core.checks import (
    MAX_QUARANTINE_SHARE,
    drop_shares,
    embedder_not_worse,
    loss_fell,
    no_id_conflict,
    quarantine_share,
    reward_in_range,
    same_items,
    within_budget,
)


def test_quarantine_share_counts_broken_rows_not_duplicates():
    assert MAX_QUARANTINE_SHARE == 0.5
    assert quarantine_share(10, {"duplicate": 9}).passed  # re-crawled pages are not broken rows
    assert quarantine_share(10, {"invalid_json": 4, "duplicate": 3}).passed
    failed = quarantine_share(10, {"invalid_json": 5})
    assert not failed.passed and "5 of 10 rows quarantined (50.0%)" in failed.message and "field names" in failed.message
    assert not quarantine_share(0, {"unreadable_file": 1}).passed  # nothing read at all
    assert not no_id_conflict({"id_conflict": 2}).passed and no_id_conflict({"duplicate": 2}).passed


def test_budget_reward_and_loss_rules():
    assert within_budget(100, 100, 5_000, None).passed
    assert not within_budget(101, 100, 0, None).passed
    assert not within_budget(10, None, 2_001, 2_000).passed
    assert within_budget(10, None, 0, None).message == "10 documents spent of no limit"
    assert reward_in_range(0.0).passed and reward_in_range(1.0).passed and not reward_in_range(1.2).passed
    assert loss_fell(2.0, 1.5).passed and not loss_fell(1.5, 2.0).passed and not loss_fell(None, None).passed


def test_each_filter_drops_under_its_share_and_selection_is_not_limited():
    fine = drop_shares(100, {"exact_duplicate": 30, "contaminated": 5, "below_top_k": 60})
    assert fine.passed and fine.metadata["share_below_top_k"] == 0.6 and "contaminated 5.0%" in fine.message
    leak = drop_shares(100, {"contaminated": 6})
    assert not leak.passed and leak.message == "contaminated dropped 6.0% (limit 5%)"
    repeated = drop_shares(100, {"reinstruct:too_short": 30, "reinstruct:refusal": 21})  # one filter, its rules summed
    assert not repeated.passed and repeated.metadata["share_reinstruct"] == 0.51
    assert drop_shares(0, {}).passed and drop_shares(0, {}).message == "of 0 scored pairs: nothing dropped"


def test_models_scored_on_the_same_items_and_the_embedder_in_use():
    assert same_items({"base": {"gsm": 60, "mc": 60}, "tuned": {"gsm": 60, "mc": 60}}).passed
    differ = same_items({"base": {"gsm": 60}, "tuned": {"gsm": 50}})
    assert not differ.passed and "gsm" in differ.message
    recall = {"base": {"@10": 0.8}, "tuned": {"@10": 0.7}}
    assert embedder_not_worse(recall, in_use_is_base=True).passed
    assert not embedder_not_worse(recall, in_use_is_base=False).passed
    assert embedder_not_worse({}, in_use_is_base=True).passed  # not trained: nothing to compare


def test_kept_pairs_are_tested_again_for_contamination_and_duplicates(tmp_path):
    from equal_dagster.core.checks import kept_pairs_clean
    from equal_dagster.core.extraction import Document, RuleExtractor
    from equal_dagster.core.rounds import write_extraction_round
    from equal_dagster.core.store import Store, table_frame

    answer = "Paris has been the capital of France since the late tenth century under the Capetian kings of France."
    documents = [Document("a", f"Q: What is the capital of France?\nA: {answer}"),
                 Document("b", f"Q: What is the capital of France?\nA: {answer}"),  # the same pair again
                 Document("c", "Q: How many legs does a spider have?\nA: Eight legs, like every other arachnid.")]
    with Store.open(tmp_path / "s.duckdb") as store:
        write_extraction_round(store, "round-0", 0, "warmup", RuleExtractor().extract(documents), seed=0,
                               dagster_run_id=None)
        ids = store.qa_pairs()["qa_id"].to_list()
        assert store.drop_reasons() == (0, {})  # qa_dataset has not scored them yet
        store.set_qa_quality(table_frame("qa_pairs", {"qa_id": ids, "quality": ["{}"] * 3, "quality_score": [1.0] * 3,
                                                      "kept": [True] * 3, "drop_reason": [None] * 3}))
        contaminated, duplicates = kept_pairs_clean(store, [f"Evaluation item. {answer}"])
        clean, _ = kept_pairs_clean(store, ["nothing in common with any pair at all here"])
        assert store.drop_reasons() == (3, {})
        store.set_qa_quality(table_frame("qa_pairs", {"qa_id": ids, "quality": ["{}"] * 3, "quality_score": [1.0] * 3,
                                                      "kept": [True, False, False],
                                                      "drop_reason": [None, "exact_duplicate", "contaminated"]}))
        assert store.drop_reasons() == (3, {"exact_duplicate": 1, "contaminated": 1})
        assert not drop_shares(*store.drop_reasons()).passed  # a third contaminated
    assert not contaminated.passed and contaminated.metadata["contaminated_kept"] == 2
    assert not duplicates.passed and duplicates.metadata["duplicates_kept"] == 1
    assert clean.passed


def test_every_document_has_a_vector_and_an_arm_until_one_comes_without(clustered, tmp_path):
    """On a copy of the shared clustered home: the first crawl is embedded and clustered, the second only ingested."""
    import shutil

    import numpy as np

    from equal_dagster.core.checks import crawl_embedded, every_document_in_one_arm
    from equal_dagster.core.store import Store, table_frame
    from equal_dagster.demo.corpus import CRAWL_NAMES

    shutil.copy(clustered.store, tmp_path / "s.duckdb")
    with Store.open(tmp_path / "s.duckdb") as store:
        clustering = store.current_clustering()
        embedder_id = clustering["embedder_id"]
        first, second = CRAWL_NAMES
        assert crawl_embedded(store, first, embedder_id).passed
        missing = crawl_embedded(store, second, embedder_id)
        assert not missing.passed and missing.metadata["documents_without_vector"] > 0
        in_arms = every_document_in_one_arm(store, clustering["clustering_id"])
        assert in_arms.passed and in_arms.metadata["documents_in_no_arm"] == 0
        newcomer = store.documents_without_embedding(second, embedder_id)[0]  # embedded after the clustering
        store.insert_embeddings(table_frame("embeddings", {
            "doc_id": [newcomer], "embedder_id": [embedder_id], "crawl_id": [second],
            "vector": [np.ones(384, dtype=np.float32) / np.sqrt(384)], "embedded_at": [clustering["written_at"]]}))
        outside = every_document_in_one_arm(store, clustering["clustering_id"])
        assert not outside.passed and outside.metadata["documents_in_no_arm"] == 1
        assert crawl_embedded(store, second, embedder_id).metadata["documents_without_vector"] == \
            missing.metadata["documents_without_vector"] - 1


def test_a_failed_blocking_check_stops_the_assets_downstream():
    """check_result makes a failed blocking rule an ERROR, which Dagster does not let flow downstream."""
    import dagster as dg

    from equal_dagster.assets.metadata import check_result
    from equal_dagster.core.checks import Outcome

    @dg.asset(check_specs=[dg.AssetCheckSpec("rule", asset="upstream", blocking=True)])
    def upstream():
        yield dg.Output(1)
        yield check_result("rule", Outcome(False, "broken"), blocking=True)

    @dg.asset
    def downstream(upstream: int) -> int:
        return upstream + 1

    result = dg.materialize([upstream, downstream], raise_on_error=False)
    assert not result.success
    assert len(result.asset_materializations_for_node("upstream")) == 1
    assert result.asset_materializations_for_node("downstream") == []
    evaluation = result.get_asset_check_evaluations()[0]
    assert not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.ERROR
