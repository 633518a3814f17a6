"""The defaults a user gets, derived from the data: round shape, warm-up size, number of arms; and the baselines'
rankings on small fixed data."""

import numpy as np
import pytest

from equal_dagster.cli import main
from equal_dagster.core.bandit import BanditParams, round_shape
from equal_dagster.core.baselines import reference_classifier_scores, reference_similarity, top_documents
from equal_dagster.core.clustering import ClusteringParams, arms_for, cluster_vectors
from equal_dagster.core.settings import EqualPaths
from equal_dagster.core.warmup import warmup_sample_size
from equal_dagster.definitions import bandit_resource_from_env
from equal_dagster.resources.bandit import BanditResource


def shape(*args, **kwargs):
    s = round_shape(*args, **kwargs)
    return s.arms_per_round, s.docs_per_arm, s.expected_rounds


def test_round_shape_on_hand_computed_cases():
    # the corpus: 16 HDBSCAN arms, 520 documents of budget less a 260-document warm-up
    assert shape(16, 260) == (1, 10, 26)  # 5% of 16 arms is 0.8: one arm; 10 documents; 26 rounds
    # EQUAL's scale: 1,000 arms, 73,000 documents for the rounds: 50 arms x 10 would be 146 rounds; at most 30
    assert shape(1000, 73_000) == (50, 49, 30)
    assert shape(1000, 5_000) == (50, 10, 10)
    # a budget too small for 10 rounds of EQUAL's shape: documents per arm shrink, then arms per round
    assert shape(1000, 3_000) == (50, 6, 10)
    assert shape(16, 50) == (1, 5, 10)
    assert shape(200, 40) == (4, 1, 10)
    assert shape(16, 5) == (1, 1, 5)  # fewer documents than rounds: one document a round
    # no document budget: EQUAL's shape as it is
    assert shape(1000, None) == (50, 10, None)
    # an explicit setting wins
    assert shape(16, 260, arms_per_round=2, docs_per_arm=15) == (2, 15, 9)
    assert shape(16, 260, docs_per_arm=3) == (1, 3, 87)
    # a policy that does not learn plays 10 equal rounds
    assert shape(16, 260, learns=False) == (1, 26, 10)
    assert "5% of 16" in round_shape(16, 260).reason


def test_the_warmup_takes_the_papers_share_within_a_fifth_of_the_budget():
    assert warmup_sample_size(100_000) == 2000  # 5%, at most 2,000
    assert warmup_sample_size(5_000) == 250
    assert warmup_sample_size(5_000, budget_documents=500) == 100  # a fifth of a 10% budget
    assert warmup_sample_size(1_460_000, budget_documents=146_000) == 2000
    assert warmup_sample_size(40, fraction=0.25, budget_documents=4) == 1  # at least one
    with pytest.raises(ValueError, match="share of the budget"):
        warmup_sample_size(100, max_budget_share=0)


def test_arms_follow_the_warmup():
    assert arms_for(100) == 20 and arms_for(2000) == 400 and arms_for(3) == 2 and arms_for(100_000) == 1000
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(3, 16)) * 5
    x = np.concatenate([c + rng.normal(size=(50, 16)) for c in centers]).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    result = cluster_vectors(x, ClusteringParams(n_clusters=3))
    assert ClusteringParams().method == "kmeans" and result.n_clusters == 3 and len(result.labels) == 150
    assert np.allclose(np.linalg.norm(result.centroids, axis=1), 1.0, atol=1e-5)
    with pytest.raises(ValueError, match="needs n_clusters"):
        cluster_vectors(x, ClusteringParams())


def test_knn_reference_ranks_the_documents_nearest_the_reference_first():
    reference = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], dtype=np.float32)
    documents = np.array([[0.0, 0.0, 1.0], [0.6, 0.8, 0.0], [0.0, 1.0, 0.0], [0.8, 0.0, 0.6]], dtype=np.float32)
    scores = reference_similarity(documents, reference)
    assert np.allclose(scores, [0.0, 0.8, 1.0, 0.8])
    assert top_documents(["d0", "d1", "d2", "d3"], scores, 3) == [2, 1, 3]  # a tie goes by doc_id


def test_classifier_ranks_reference_like_texts_first():
    reference = [f"Q: Ava has {n} apples and buys {n + 3} more. How many apples does she have?\nA: {2 * n + 3}."
                 for n in range(20)]
    background = [f"The council met on day {n} to discuss the new bike lanes and the library budget." for n in range(60)]
    texts = ["Liam has 7 marbles and buys 5 more. How many marbles does he have now?",
             "Storm closes schools: winds reached 90 km/h and the council cancelled the market.",
             "Add to cart | Free delivery | 2-year warranty"]
    scores = reference_classifier_scores(reference, background, texts, seed=0)
    assert scores[0] > 0.5 > scores[1] and scores[0] > scores[2]


def test_the_asset_equal_run_and_the_environment_resolve_the_same_defaults(monkeypatch, tmp_path, capsys):
    for name in ("EQUAL_BANDIT_POLICY", "EQUAL_BANDIT_ARMS_PER_ROUND", "EQUAL_BANDIT_DOCS_PER_ARM", "EQUAL_BUDGET"):
        monkeypatch.delenv(name, raising=False)
    resource = BanditResource(reference="r.jsonl")
    from_env = bandit_resource_from_env(EqualPaths(tmp_path, tmp_path / "crawls"))
    defaults = BanditParams()
    for settings in (resource, from_env):
        params = settings.round_settings().bandit
        assert (params.policy, params.arms_per_round, params.docs_per_arm) == (defaults.policy, None, None)
        assert settings.budget == resource.budget == "10%"
    # `equal run` passes None for what its user did not give: the same rule decides
    import equal_dagster.headless as headless

    seen = {}

    def fake_plan_run(crawl_dir, reference, **kwargs):
        seen.update(kwargs)
        return headless.RunPlan(EqualPaths(tmp_path / "h", tmp_path), [], {}, resource, 0, 0.05, True)

    monkeypatch.setattr(headless, "plan_run", fake_plan_run)
    monkeypatch.setattr(headless, "execute_run", lambda plan: {})
    assert main(["run", "--crawl-dir", str(tmp_path), "--reference", "r.jsonl", "--home", str(tmp_path / "h")]) == 0
    assert seen["arms_per_round"] is None and seen["docs_per_arm"] is None and seen["policy"] == defaults.policy
    assert seen["budget"] == resource.budget
