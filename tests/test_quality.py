"""Quality indicators, duplicates and decontamination on known inputs."""

import numpy as np
import pytest

from equal_dagster.core.quality import (
    Decontaminator,
    exact_duplicates,
    knn_distance,
    mtld,
    near_duplicates,
    token_length,
)


def test_mtld_on_hand_worked_texts():
    # a b a b a b: a run ends at every third word (TTR 2/3 <= 0.72) both ways: 6 words / 2 runs
    assert mtld("a b a b a b") == pytest.approx(3.0)
    # a a x y z x: forwards one run (a a) and a partial one (TTR 3/4: (1 - 0.75) / 0.28 = 0.892857 of a run),
    # 6 / 1.892857 = 3.169811; backwards x z y x a a closes one run at the last word: 6 / 1 = 6
    assert mtld("a a x y z x") == pytest.approx((6 / (1 + 0.25 / 0.28) + 6.0) / 2)
    assert mtld("one two three") == 3.0  # never falls to the threshold: its length
    assert mtld("...") == 0.0
    assert mtld("The CAT, the cat.") == mtld("the cat the cat")  # words, case folded


def test_lengths_and_knn_distance():
    assert token_length("What is 2 + 3?") == 4  # words: what, is, 2, 3
    points = np.array([[0.0], [1.0], [3.0], [6.0], [10.0]])
    assert knn_distance(points, k=2).tolist() == [3.0, 2.0, 3.0, 4.0, 7.0]
    assert np.isnan(knn_distance(points[:2], k=6)).all()


def test_exact_and_near_duplicates():
    long_answer = ("First subtract the 12 apples given away from 40, which leaves 28 apples, then add the 9 apples "
                   "bought at the market, which makes 37 apples in all. The answer is 37.")
    pairs = [
        ("How many apples are left?", long_answer),
        ("  how many APPLES are left? ", long_answer.upper()),  # the same after normalization
        ("How many apples are left?", long_answer.replace("in all", "altogether")),  # Jaccard 0.71 on 5-shingles
        ("What is the capital of Peru?", "Lima is the capital of Peru."),
    ]
    exact = exact_duplicates(pairs)
    assert exact == {1: 0}
    assert near_duplicates(pairs, threshold=0.6, skip=exact) == {2: 0}
    assert near_duplicates(pairs, threshold=0.9, skip=exact) == {}


def test_a_planted_evaluation_question_is_caught():
    evaluation = [
        "Ava has 40 apples. Ava gives 12 to Liam and then buys 9 more. How many apples does Ava have now?",
        "A short question copied whole is caught too?",
        "The answer is 37.",
    ]
    decontaminator = Decontaminator(evaluation, n=13)
    planted = "Here is one from the test: Ava has 40 apples. Ava gives 12 to Liam and then buys 9 more. How many?"
    assert decontaminator.overlap(planted) == "ava has 40 apples ava gives 12 to liam and then buys 9"
    assert decontaminator.overlap("Omar has 40 apples and gives 12 away. How many are left?") is None
    assert decontaminator.overlap("Q: a short question copied whole is caught too? A: yes") is not None
    assert decontaminator.overlap("So the answer is 37.") is None and decontaminator.ignored_short == 1


def test_the_instructmining_rule_reproduces_the_published_formula():
    from equal_dagster.core.quality import INSTRUCTMINING_RULES

    rule = INSTRUCTMINING_RULES["rew_len_knn"]

    def score(reward, length, knn6):
        return rule.quality_score({"reward": reward, "output_length": length, "knn6": knn6})

    # worked example: Rew = 2.5, Len = 300 tokens, Knn6 = 0.8
    # 1.0694 - 0.1498 * 2.5 + 8.257e-5 * 300 - 0.9350 * 0.8 = 1.0694 - 0.3745 + 0.024771 - 0.748 = -0.028329
    assert rule.predicted_log_loss({"reward": 2.5, "output_length": 300, "knn6": 0.8}) == pytest.approx(-0.028329,
                                                                                                      abs=1e-9)
    assert score(2.5, 300, 0.8) == pytest.approx(0.028329, abs=1e-9)
    # no reward model: the reward term is 0 for every pair; the ranking follows length and distance
    assert score(None, 300, 0.8) == pytest.approx(-(1.0694 + 0.024771 - 0.748), abs=1e-9)
    assert score(None, 100, 0.9) > score(None, 100, 0.5)  # farther from the rest: better
    assert score(None, 100, 0.5) > score(None, 5000, 0.5)  # longer answers: worse
    assert score(1.0, 100, float("nan")) is None  # no 6th neighbour: no score


def test_the_first_revision_rule_uses_unieval_scores():
    from equal_dagster.core.quality import INSTRUCTMINING_RULES

    rule = INSTRUCTMINING_RULES["rew_unieval"]
    # Rew = 2.0, Und = 0.9, Nat = 0.8, Coh = 0.7:
    # 0.0274 - 0.0078 * 2 + 0.4421 * 0.9 - 0.3212 * 0.8 - 0.1520 * 0.7 = 0.0274 - 0.0156 + 0.39789 - 0.25696 - 0.1064
    indicators = {"reward": 2.0, "understandability": 0.9, "naturalness": 0.8, "coherence": 0.7}
    assert rule.predicted_log_loss(indicators) == pytest.approx(0.04633, abs=1e-9)
    assert rule.quality_score(indicators) == pytest.approx(-0.04633, abs=1e-9)
    assert rule.quality_score({**indicators, "coherence": None}) is None
    assert rule.quality_score({**indicators, "reward": None}) == pytest.approx(-(0.04633 + 0.0156), abs=1e-9)


def test_a_rule_that_needs_unieval_is_refused_without_its_model():
    from equal_dagster.core.qa_dataset import DatasetParams

    with pytest.raises(ValueError, match="needs UniEval's scores: set unieval_model"):
        DatasetParams(rule="rew_unieval")
    with pytest.raises(ValueError, match="unknown quality rule 'v9'"):
        DatasetParams(rule="v9")
    assert DatasetParams(rule="rew_unieval", unieval_model="/models/unieval").rule == "rew_unieval"
