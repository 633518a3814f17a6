"""How the selection defaults were chosen: the bandit replayed in memory over a whole corpus, for settings a user does
not set (warm-up share of the budget, warm-up documents per arm, reward), on corpora made with generator seed 0.
The real benchmark (``benchmarks/selection.py``) then runs the chosen defaults through the pipeline on corpora made
with seed 1.

    .venv/bin/python benchmarks/selection_sim.py [--corpora demo rare spread] [--seeds 0 1 2] [--cache DIR]

Per corpus: every document is embedded once with the base all-MiniLM-L6-v2 and extracted once with the rules
backend (what a round would extract); a simulated run then draws the warm-up, clusters with faiss k-means
(``kmeans_labels``), and plays rounds of the shape ``round_shape`` gives, choosing arms with ``EqualUCB`` from the
warm start on, each pull rewarded with ``ot_reward`` of the drawn documents' pairs. The same core functions as the
pipeline; no Dagster, no store, so one run takes a second. Figures: relevant pairs over ``random``'s, mean of the
seeds (and the lowest seed).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402

from equal_dagster.core.bandit import ArmReward, BanditParams, BanditState, make_policy, round_rng, round_shape  # noqa: E402
from equal_dagster.core.baselines import reference_similarity  # noqa: E402
from equal_dagster.core.clustering import ClusteringParams, cluster_vectors, kmeans_labels  # noqa: E402
from equal_dagster.core.contrastive import render_qa  # noqa: E402
from equal_dagster.core.extraction.rules import extract_structured_pairs  # noqa: E402
from equal_dagster.core.reward import ot_reward  # noqa: E402
from equal_dagster.demo.corpus import generate_demo_corpus, generate_reference_set  # noqa: E402
from equal_dagster.demo.suite import suite_corpus  # noqa: E402

BUDGET = 0.1


def prepare(name: str, cache: Path) -> dict:
    """Documents (deduplicated), their vectors, their rules pairs and the pairs' vectors, the reference's vectors."""
    path = cache / f"{name}-0.npz"
    if not path.exists():
        from equal_dagster.core.embedding import Embedder

        corpus = suite_corpus(name)
        generated = generate_demo_corpus(0, corpus.documents, corpus.mix)
        seen, rows = set(), []
        for crawl in generated.crawls.values():
            for row in crawl:
                if isinstance(row, dict) and isinstance(row.get("text"), str) and row["text"].strip() and row["text"] not in seen:
                    seen.add(row["text"])
                    rows.append(row)
        kinds = [r["meta"].get("source_kind", r["meta"]["kind"]) for r in rows]
        pairs = [extract_structured_pairs(r["text"]) for r in rows]
        embedder = Embedder("all-MiniLM-L6-v2")
        reference = generate_reference_set(0, exclude=generated.math_questions)
        np.savez(path, dv=embedder.encode([r["text"] for r in rows]),
                 pv=embedder.encode([render_qa(p.question, p.answer) for ps in pairs for p in ps]),
                 rv=embedder.encode([render_qa(r["question"], r["answer"]) for r in reference]),
                 pair_doc=np.array([i for i, ps in enumerate(pairs) for _ in ps]),
                 relevant=np.array([k in corpus.mix.relevant for k in kinds]))
    data = dict(np.load(path))
    data["npairs"] = np.bincount(data["pair_doc"], minlength=len(data["dv"]))
    return data


def harvest(c: dict, docs: np.ndarray) -> int:
    return int(c["npairs"][docs][c["relevant"][docs]].sum())


def pull_reward(c: dict, docs: np.ndarray, weighted_by_yield: bool) -> float:
    vectors = c["pv"][np.isin(c["pair_doc"], docs)]
    reward, _ = ot_reward(vectors, c["rv"])
    return reward * float(np.mean(c["npairs"][docs] > 0)) if weighted_by_yield else reward


def simulate(c: dict, seed: int, *, warmup_share: float, docs_per_arm_of_warmup: float, policy: str = "equal_ucb",
             weighted_by_yield: bool = False, share_threshold: float | None = None, hdbscan: bool = False) -> int:
    rng = np.random.default_rng(seed)
    n = len(c["dv"])
    budget = int(BUDGET * n)
    warm_n = max(1, min(math.ceil(0.05 * n), 2000, int(warmup_share * budget)))
    warm = rng.permutation(n)[:warm_n]
    extracted = np.zeros(n, bool)
    extracted[warm] = True
    left = budget - warm_n
    if policy == "random":
        return harvest(c, np.r_[warm, rng.choice(np.flatnonzero(~extracted), left, replace=False)])
    if policy == "knn_reference":
        scores = reference_similarity(c["dv"], c["rv"])
        scores[extracted] = -np.inf
        return harvest(c, np.r_[warm, np.argsort(-scores)[:left]])
    if hdbscan:  # the clusters asset's HDBSCAN option with its defaults
        labels = cluster_vectors(c["dv"], ClusteringParams(method="hdbscan", seed=seed)).labels
    else:
        labels = kmeans_labels(c["dv"], max(2, round(warm_n / docs_per_arm_of_warmup)), seed)
    arms = np.unique(labels)
    gaussians = {int(a): (c["dv"][labels == a].mean(0), c["dv"][labels == a].std(0)) for a in arms}
    bandit = make_policy(BanditParams(share_threshold=share_threshold), gaussians)
    state = BanditState()
    bandit.update(state, [ArmReward(int(a), pull_reward(c, warm[labels[warm] == a], weighted_by_yield), None, 0, 0)
                          for a in np.unique(labels[warm])])
    shape = round_shape(len(arms), left)
    round_no = 0
    while left > 0:
        round_no += 1
        playable = {int(a): int(m) for a, m in zip(*np.unique(labels[~extracted], return_counts=True))}
        if not playable:
            break
        rewards = []
        for choice in bandit.choose(state, playable, shape.arms_per_round, round_rng(seed, round_no)):
            candidates = np.flatnonzero((labels == choice.arm) & ~extracted)
            take = min(shape.docs_per_arm, len(candidates), left)
            if take <= 0:
                break
            docs = rng.choice(candidates, take, replace=False)
            extracted[docs] = True
            left -= take
            rewards.append(ArmReward(choice.arm, pull_reward(c, docs, weighted_by_yield), None, take, 0))
        bandit.update(state, rewards)
    return harvest(c, np.flatnonzero(extracted))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--corpora", nargs="+", default=["demo", "rare", "spread"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--cache", default=".equal/selection-sim")
    args = parser.parse_args()
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    variants = [("default: warm-up <= 0.2 of the budget, 5 warm-up docs per arm", {})]
    variants += [(f"warm-up <= {w} of the budget", {"warmup_share": w}) for w in (0.1, 0.3, 0.5)]
    variants += [(f"{m} warm-up docs per arm", {"docs_per_arm_of_warmup": m}) for m in (2, 3, 8, 12)]
    variants += [("HDBSCAN arms (PCA 5, min_cluster_size 15)", {"hdbscan": True}),
                 ("reward x share of documents with pairs", {"weighted_by_yield": True}),
                 ("neighbour sharing, W2 <= 0.2", {"share_threshold": 0.2}),
                 ("neighbour sharing, W2 <= 0.8", {"share_threshold": 0.8}),
                 ("knn_reference", {"policy": "knn_reference"})]
    print("command: .venv/bin/python benchmarks/selection_sim.py " + " ".join(sys.argv[1:]))
    print("| variant | " + " | ".join(args.corpora) + " |")
    print("|---|" + "---:|" * len(args.corpora))
    data = {name: prepare(name, cache) for name in args.corpora}
    base = {name: np.mean([simulate(c, s, warmup_share=0.2, docs_per_arm_of_warmup=5, policy="random")
                           for s in args.seeds]) for name, c in data.items()}
    for label, change in variants:
        settings = {"warmup_share": 0.2, "docs_per_arm_of_warmup": 5, **change}
        cells = []
        for name, c in data.items():
            got = [simulate(c, s, **settings) / base[name] for s in args.seeds]
            cells.append(f"{np.mean(got):.2f}x (low {min(got):.2f})")
        print(f"| {label} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
