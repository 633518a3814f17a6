"""Bandit policies, budget and the OT reward: core rules on known inputs."""

import json
import math

import numpy as np
import pytest

from equal_dagster.core.bandit import (
    ArmChoice,
    ArmReward,
    BanditParams,
    BanditState,
    Budget,
    EpsilonGreedy,
    EqualUCB,
    ThompsonSampling,
    allot_documents,
    gaussian_w2,
    make_policy,
    round_rng,
)
from equal_dagster.core.reward import OTSettings, ReferenceSetError, load_reference_set, ot_distance, ot_reward


def state_of(**arms):
    state = BanditState()
    for name, (pulls, reward_sum) in arms.items():
        arm = int(name[1:])
        for _ in range(pulls):
            state.observe(arm, reward_sum / pulls)
    return state


def test_ucb_score_matches_a_hand_computed_example():
    # arm 0: 2 pulls, rewards 0.4 and 0.6 (mean 0.5); arm 1: 1 pull, reward 0.8; N = 3 pulls in all
    state = BanditState()
    state.observe(0, 0.4)
    state.observe(0, 0.6)
    state.observe(1, 0.8)
    constant = EqualUCB(alpha=1.0, alpha_decay=False)
    # 0.5 + 1 * sqrt(2 ln 3 / 2) = 0.5 + 1.048147 ; 0.8 + sqrt(2 ln 3 / 1) = 0.8 + 1.482304
    assert constant.score(state, 0) == pytest.approx(1.548147, abs=1e-6)
    assert constant.score(state, 1) == pytest.approx(2.282304, abs=1e-6)
    # the paper's decay: alpha = 1 / (N + 1) = 0.25
    decayed = EqualUCB(alpha_decay=True)
    assert decayed.score(state, 0) == pytest.approx(0.5 + 0.25 * 1.048147, abs=1e-6)
    assert decayed.score(state, 1) == pytest.approx(0.8 + 0.25 * 1.482304, abs=1e-6)
    assert math.isinf(decayed.score(state, 7))  # never played
    # unplayed arms first, then the highest score
    choices = decayed.choose(state, {0: 5, 1: 5, 2: 5}, 2, round_rng(0, 1))
    assert [(c.arm, c.reason) for c in choices] == [(2, "unplayed"), (1, "ucb")]
    assert choices[0].score is None and choices[1].score == pytest.approx(1.170576, abs=1e-6)


def test_exhausted_arms_leave_the_game_and_come_back_with_their_counts():
    state = state_of(a0=(3, 2.4), a1=(2, 0.2), a2=(1, 0.1))
    policy = EqualUCB(alpha_decay=True)
    # arm 0 (the best) has no unextracted document left: it is not playable
    choices = policy.choose(state, {1: 4, 2: 4}, 3, round_rng(0, 2))
    assert {c.arm for c in choices} == {1, 2} and len(choices) == 2  # fewer playable arms than asked
    # a new crawl brings arm 0 documents: playable again, chosen first on its record (3 pulls kept)
    choices = policy.choose(state, {0: 2, 1: 4, 2: 4}, 1, round_rng(0, 3))
    assert choices[0].arm == 0 and choices[0].pulls == 3


def test_same_seed_and_history_give_the_same_choices():
    state = state_of(a0=(2, 1.0), a1=(2, 0.9), a2=(1, 0.2), a3=(3, 0.3))
    playable = {0: 9, 1: 9, 2: 9, 3: 9, 4: 9}
    for make in (lambda: EqualUCB(), ThompsonSampling, lambda: EpsilonGreedy(0.5)):
        first = [c.arm for c in make().choose(state, playable, 3, round_rng(7, 4))]
        again = [c.arm for c in make().choose(state, playable, 3, round_rng(7, 4))]
        assert first == again
    draws = {tuple(c.arm for c in ThompsonSampling().choose(state, playable, 3, round_rng(seed, 4))) for seed in range(20)}
    assert len(draws) > 1  # the seed matters


def test_thompson_and_epsilon_greedy_follow_the_rewards():
    state = state_of(a0=(20, 18.0), a1=(20, 2.0), a2=(20, 1.0))
    wins = sum(ThompsonSampling().choose(state, {0: 1, 1: 1, 2: 1}, 1, round_rng(s, 1))[0].arm == 0 for s in range(50))
    assert wins == 50
    greedy = EpsilonGreedy(0.0).choose(state, {0: 1, 1: 1, 2: 1, 3: 1}, 2, round_rng(0, 1))
    assert [(c.arm, c.reason) for c in greedy] == [(3, "unplayed"), (0, "exploit")]


def test_w2_between_two_clusters_by_hand():
    # means (0, 0) and (0.3, 0.4): |m1 - m2| = 0.5; spreads (0.1, 0.1) and (0.1, 0.22): |s1 - s2| = 0.12
    distance = gaussian_w2([np.array([0.0, 0.0]), np.array([0.3, 0.4])], [np.array([0.1, 0.1]), np.array([0.1, 0.22])])
    assert distance[0, 1] == distance[1, 0] == pytest.approx(0.514198, abs=1e-6)  # sqrt(0.25 + 0.0144)
    assert distance[0, 0] == pytest.approx(0.0, abs=1e-7)


def test_reward_sharing_reaches_arms_within_the_w2_threshold():
    spread = np.array([0.1, 0.1])
    gaussians = {0: (np.array([1.0, 0.0]), spread), 1: (np.array([0.9, 0.1]), spread + 0.05),
                 2: (np.array([0.0, 1.0]), spread)}  # W2(0, 1) = sqrt(0.02 + 0.005) = 0.158; W2(0, 2) = 1.41
    policy = make_policy(BanditParams(share_threshold=0.2, share_weight=0.5), gaussians)
    state = BanditState()
    policy.update(state, [ArmReward(0, 0.8, 0.2, 10, 5)])
    assert state.stats(0).pulls == 1 and state.stats(1).pulls == 0.5 and state.stats(1).mean == pytest.approx(0.8)
    assert state.stats(2).pulls == 0
    policy.update(state, [ArmReward(2, 0.3, 0.7, 10, 0, counted=False)])  # every document failed: no pull
    assert state.stats(2).pulls == 0


def test_documents_are_allotted_within_the_budget():
    choices = [ArmChoice(a, None, 0, None, "unplayed") for a in (4, 5, 6)]
    allotted = allot_documents(choices, {4: 3, 5: 50, 6: 50}, docs_per_arm=10, budget_left=15)
    assert [(c.arm, c.documents) for c in allotted] == [(4, 3), (5, 10), (6, 2)]
    assert [c.documents for c in allot_documents([ArmChoice(1, None, 0, None, "x")], {1: 50}, 10, 0)] == []


def test_budget_parsing_and_what_is_left():
    assert Budget.parse("10%").document_limit(5856) == 585
    assert Budget.parse("100%").document_limit(5856) == 5856
    assert Budget.parse("500").left(5856, 120, 0) == (380, None)
    assert Budget.parse("10%", tokens=1000).left(1000, 100, 1500) == (0, 0)
    assert Budget.parse(None).left(1000, 999, 10**9) == (None, None)
    for bad in ("ten", "0", "-5", "120%", "0%"):
        with pytest.raises(ValueError, match="budget"):
            Budget.parse(bad)
    with pytest.raises(ValueError, match="policy"):
        BanditParams(policy="greedy")


def test_ot_distance_is_zero_on_identical_sets_and_grows_with_the_shift():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 8))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    assert ot_distance(x, x) == pytest.approx(0.0, abs=1e-9)
    assert ot_reward(x, x) == (pytest.approx(1.0), pytest.approx(0.0, abs=1e-9))
    assert ot_reward(np.zeros((0, 8)), x) == (0.0, None)  # no QA pair: reward 0
    east = np.array([1.0] + [0.0] * 7) + 0.05 * rng.normal(size=(30, 8))
    west = np.array([-1.0] + [0.0] * 7) + 0.05 * rng.normal(size=(30, 8))
    assert ot_distance(east, west) > 1.9 and ot_reward(east, west)[0] == 0.0  # opposite: cosine distance near 2
    assert ot_distance(east, east[::-1]) == pytest.approx(0.0, abs=1e-9)  # order does not matter
    # Sinkhorn above the exact limit: close to the exact value
    y = rng.normal(size=(40, 8))
    y /= np.linalg.norm(y, axis=1, keepdims=True)
    exact = ot_distance(x, y)
    approximate = ot_distance(x, y, OTSettings(exact_max_cells=10, sinkhorn_reg=0.01))
    assert approximate == pytest.approx(exact, rel=0.05)
    with pytest.raises(ValueError, match="unknown OT cost"):
        OTSettings(cost="manhattan")


def test_reference_set_errors_name_the_lines(tmp_path):
    good = tmp_path / "good.jsonl"
    good.write_text(json.dumps({"question": "What is 2 + 2?", "answer": "4"}) + "\n\n")
    assert load_reference_set(good).pairs == [("What is 2 + 2?", "4")]
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join([json.dumps({"question": "q", "answer": "a"}), "{broken", "[1, 2]",
                              json.dumps({"question": "q only"}), json.dumps({"question": " ", "answer": "a"})]))
    with pytest.raises(ReferenceSetError) as error:
        load_reference_set(bad)
    message = str(error.value)
    assert "4 bad line(s)" in message and "line 2: not JSON" in message and "line 3: not an object" in message
    assert "line 4: answer missing" in message and "line 5: question missing" in message
    with pytest.raises(ReferenceSetError, match="does not exist"):
        load_reference_set(tmp_path / "missing.jsonl")


def test_reward_of_the_reference_against_itself_is_about_1_and_lower_for_unrelated_text(tmp_path):
    from equal_dagster.core.embedding import Embedder
    from equal_dagster.core.reward import embed_qa_pairs, embed_texts, load_reference_set
    from equal_dagster.core.store import Store
    from equal_dagster.demo.corpus import generate_reference_set, write_reference_set

    path = tmp_path / "reference.jsonl"
    write_reference_set(path, generate_reference_set(0, n=60))
    reference = load_reference_set(path)
    unrelated = [
        ("Which colours does the Aurora backpack come in?", "Black, olive and sand. Free returns within 30 days."),
        ("When does the council meet about the new bridge?", "On Tuesday evening at the town hall; the public may attend."),
        ("How do I clear my browser cookies?", "Open the settings, choose privacy, then clear browsing data."),
        ("What is the capital of the region?", "The regional capital lies on the river, north of the mountains."),
        ("How do I reverse a list in Python?", "Call list.reverse() in place, or use reversed(items) for an iterator."),
    ]
    with Store.open(tmp_path / "store.duckdb") as store:
        embedder = Embedder()
        reference_vectors = embed_texts(store, embedder, reference.texts)
        itself, _ = ot_reward(embed_qa_pairs(store, embedder, *zip(*reference.pairs)), reference_vectors)
        other, distance = ot_reward(embed_qa_pairs(store, embedder, *zip(*unrelated)), reference_vectors)
        assert store.table_row_counts()["text_embeddings"] == 65  # each text embedded once, then read back
    assert itself == pytest.approx(1.0, abs=1e-6)
    assert other < 0.4 and distance > 0.6  # measured with MiniLM: reward 0.170, W 0.830
