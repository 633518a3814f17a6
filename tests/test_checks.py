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
