"""The data rules the asset checks apply (core/checks.py), on hand-computed cases."""

from equal_dagster.core.checks import (
    MAX_QUARANTINE_SHARE,
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
        store.set_qa_quality(table_frame("qa_pairs", {"qa_id": ids, "quality": ["{}"] * 3, "quality_score": [1.0] * 3,
                                                      "kept": [True] * 3, "drop_reason": [None] * 3}))
        contaminated, duplicates = kept_pairs_clean(store, [f"Evaluation item. {answer}"])
        clean, _ = kept_pairs_clean(store, ["nothing in common with any pair at all here"])
    assert not contaminated.passed and contaminated.metadata["contaminated_kept"] == 2
    assert not duplicates.passed and duplicates.metadata["duplicates_kept"] == 1
    assert clean.passed
