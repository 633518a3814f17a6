"""Selection benchmark: what each policy harvests with the DEFAULT settings, on corpora the defaults were not written
for (``equal_dagster/demo/suite.py``), with the rules backend.

    .venv/bin/python benchmarks/selection.py [--corpora demo rare spread large realdocs] [--seeds 0 1 2] [--work DIR]
                                             [--generator-seed 1] [--policies ...]

``--policies`` takes the policy names, and ``equal_ucb+share`` for equal_ucb with EQUAL's neighbour sharing on.

Per corpus and seed, the stages that do not depend on the policy (ingest, warm-up, embedder, embeddings, clusters)
run once through the Dagster jobs, exactly as `equal run` runs them; each policy then plays its rounds until the
budget (10% of the corpus, the warm-up included) on a copy of that store. Every setting is the default: no round
shape, number of arms or warm-up size is given anywhere here.

Per run: documents extracted, QA pairs, relevant QA pairs (pairs of pages whose generated kind serves the math goal:
the generator's ``meta.kind``, which the pipeline never reads), pairs per extracted document, the OT distance of all
harvested pairs to the reference (with the base all-MiniLM-L6-v2 for every run), and for the arm policies the pulls
per arm. The oracle knows every arm's true yield of relevant pairs (the rules extractor run over the whole corpus and
the kinds): after the warm-up it extracts the arms in order of that yield; a policy's regret after round t is the
oracle's expected relevant pairs for the documents spent so far in rounds less the policy's.

``realdocs`` is real text (benchmarks/real_corpus.py: FAQ entries, manuals, man pages and READMEs from the labelled
fixtures; the goal is Python programming, the reference set the Python FAQ; relevance is each document's source).

The generated corpora are made with ``--generator-seed`` 1: the defaults were chosen on simulations of corpora made with
seed 0 (docs/benchmarks.md), so these documents, and the 50k corpus whole, are new to them.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import dagster as dg  # noqa: E402

from equal_dagster.core.embedding import Embedder  # noqa: E402
from equal_dagster.core.extraction.rules import extract_structured_pairs  # noqa: E402
from equal_dagster.core.rounds import harvest_summary  # noqa: E402
from equal_dagster.core.settings import EqualPaths  # noqa: E402
from equal_dagster.core.store import Store  # noqa: E402
from equal_dagster.definitions import build_definitions  # noqa: E402
from equal_dagster.demo.corpus import generate_reference_set, relevant_doc_ids, write_demo_crawls, write_reference_set  # noqa: E402
from equal_dagster.demo.suite import SELECTION_SUITE, suite_corpus  # noqa: E402
from equal_dagster.headless import play_rounds, run_stages_before_rounds  # noqa: E402
from equal_dagster.resources.bandit import BanditResource  # noqa: E402
from equal_dagster.resources.llm import ExtractionResource  # noqa: E402

from real_corpus import ABOUT as REAL_ABOUT, write_real_corpus  # noqa: E402

POLICIES = ("equal_ucb", "random", "knn_reference", "classifier")
REAL_CORPUS = "realdocs"


def quiet(message: str) -> None:
    pass


def true_yields(store: Store, relevant: set[str]) -> dict[str, int]:
    """doc_id -> relevant QA pairs the rules extractor finds in it (0 for a page that does not serve the goal)."""
    documents = store.documents()
    return {d: (len(extract_structured_pairs(t)) if d in relevant else 0)
            for d, t in zip(documents["doc_id"].to_list(), documents["text"].to_list())}


def oracle_curve(store: Store, yields: dict[str, int], clustering_id: str, round_budget: int) -> list[float]:
    """Expected relevant pairs of the oracle after spending 0..round_budget documents in rounds: arms by true yield
    among the documents the warm-up left."""
    warm = set(store.extractions("round-0")["doc_id"].to_list())
    clusters = store.clusters(clustering_id)
    arms: dict[int, list[int]] = {}
    for doc_id, arm in zip(clusters["doc_id"].to_list(), clusters["cluster_id"].to_list()):
        if doc_id not in warm:
            arms.setdefault(arm, []).append(yields.get(doc_id, 0))
    curve, total = [0.0], 0.0
    for values in sorted(arms.values(), key=lambda v: -sum(v) / len(v)):
        mean = sum(values) / len(values)
        for _ in values:
            if len(curve) > round_budget:
                return curve
            total += mean
            curve.append(total)
    return curve + [total] * (round_budget + 1 - len(curve))


def measure(home: Path, policy: str, seed: int, relevant: set[str], yields: dict[str, int], reference, yardstick,
            oracle: list[float], clustering_id: str) -> dict:
    with Store.open(home / "equal.duckdb") as store:
        pairs = store.qa_pairs_of_rounds()
        rounds = store.rounds()
        harvest = harvest_summary(store, yardstick, reference)
        extractions = store.extractions()
    relevant_pairs = sum(1 for d in pairs["doc_id"].to_list() if d in relevant)
    by_round = Counter(r for r, d in zip(pairs["round_id"].to_list(), pairs["doc_id"].to_list()) if d in relevant)
    docs_by_round = dict(zip(rounds["round_id"].to_list(), rounds["docs_spent"].to_list()))
    regret, spent, got = [], 0, 0
    pulls: Counter = Counter()
    for row in rounds.iter_rows(named=True):
        if row["round_no"] < 1:
            continue
        spent += docs_by_round[row["round_id"]]
        got += by_round.get(row["round_id"], 0)
        regret.append(round(oracle[min(spent, len(oracle) - 1)] - got, 1))
        for arm in json.loads(row["arms"] or "[]"):
            pulls[arm["arm"]] += 1
    shape = json.loads(rounds["config"][1])["shape"] if rounds.height > 1 else {}
    extracted = extractions["doc_id"].n_unique()
    return {
        "policy": policy, "seed": seed, "documents": harvest.documents_extracted, "rounds": harvest.rounds,
        "qa_pairs": harvest.qa_pairs, "relevant_pairs": relevant_pairs,
        "pairs_per_document": round(harvest.qa_pairs / max(extracted, 1), 3),
        "ot_distance": None if harvest.ot_distance is None else round(harvest.ot_distance, 4),
        "oracle_relevant_pairs": round(by_round.get("round-0", 0) + oracle[min(spent, len(oracle) - 1)], 1),
        "regret_per_round": regret, "arms_pulled": len(pulls), "pulls_per_arm": dict(sorted(pulls.items())),
        "shape": shape, "clustering_id": clustering_id,
    }


def write_corpus(name: str, crawl_dir: Path, reference_path: Path, generator_seed: int) -> set[str]:
    """Write the corpus's crawls and reference set; returns the ids of its relevant documents."""
    if name == REAL_CORPUS:
        relevant, parts = write_real_corpus(crawl_dir, reference_path)
        print(f"{name}: {sum(parts.values()):,} documents ({REAL_ABOUT}): {parts}; {len(relevant):,} relevant", flush=True)
        return relevant
    corpus = suite_corpus(name)
    generated = write_demo_crawls(crawl_dir, seed=generator_seed, n_documents=corpus.documents, mix=corpus.mix)
    write_reference_set(reference_path, generate_reference_set(generator_seed, exclude=generated.math_questions))
    relevant = relevant_doc_ids(crawl_dir, corpus.mix.relevant)
    print(f"{name}: {sum(generated.kinds.values()):,} rows ({corpus.mix.about}); {len(relevant):,} relevant rows",
          flush=True)
    return relevant


def run_corpus(name: str, seeds: list[int], policies: list[str], work: Path, generator_seed: int) -> list[dict]:
    crawl_dir, reference_path = work / name / "crawls", work / name / "reference.jsonl"
    relevant = write_corpus(name, crawl_dir, reference_path, generator_seed)
    crawls = sorted(p.name for p in crawl_dir.iterdir())
    yardstick = Embedder("all-MiniLM-L6-v2")
    rows = []
    for seed in seeds:
        shared = work / name / f"shared-{seed}"
        paths = EqualPaths(shared, crawl_dir)
        bandit = BanditResource(reference=str(reference_path), seed=seed)
        reference = bandit.load_reference()
        tick = time.perf_counter()
        with dg.instance_for_test() as instance:
            timings = run_stages_before_rounds(build_definitions(paths, llm=ExtractionResource(backend="rules"),
                                                                 bandit=bandit), instance, crawls, seed, say=quiet)
        with Store.open(paths.store, read_only=True) as store:
            clustering = store.current_clustering()
            yields = true_yields(store, relevant)
            limit = int(0.1 * store.document_count())
            round_budget = limit - store.spent_before(1)[0]
            oracle = oracle_curve(store, yields, clustering["clustering_id"], round_budget)
            arms = store.cluster_summaries(clustering["clustering_id"]).height
        print(f"  seed {seed}: shared stages {time.perf_counter() - tick:.0f} s {timings}; {arms} arms", flush=True)
        for policy in policies:
            home = work / name / f"{policy}-{seed}"
            shutil.rmtree(home, ignore_errors=True)
            shutil.copytree(shared, home, ignore=shutil.ignore_patterns("dagster"))
            tick = time.perf_counter()
            paths = EqualPaths(home, crawl_dir)
            with dg.instance_for_test() as instance:
                # "equal_ucb+share": EQUAL's neighbour sharing switched on (W2 threshold 0.2), to measure it
                sharing = {"share_threshold": 0.2} if policy.endswith("+share") else {}
                bandit = BanditResource(reference=str(reference_path), seed=seed, policy=policy.split("+")[0], **sharing)
                defs = build_definitions(paths, llm=ExtractionResource(backend="rules"), bandit=bandit)
                play_rounds(defs, instance, paths.store, None, say=quiet)
            row = {"corpus": name, **measure(home, policy, seed, relevant, yields, reference, yardstick, oracle,
                                             clustering["clustering_id"]), "arms": arms,
                   "rounds_s": round(time.perf_counter() - tick, 1)}
            rows.append(row)
            print("  " + json.dumps({k: v for k, v in row.items() if k not in ("pulls_per_arm",)}), flush=True)
            if policy != "equal_ucb":
                shutil.rmtree(home, ignore_errors=True)
    return rows


def tables(rows: list[dict]) -> str:
    out = ["| corpus | policy | documents | rounds | QA pairs | relevant pairs (mean of seeds) | pairs / document | "
           "OT distance | x random | x knn_reference | final regret | arms pulled |",
           "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for corpus in dict.fromkeys(r["corpus"] for r in rows):
        mine = [r for r in rows if r["corpus"] == corpus]
        mean = {p: {k: statistics.mean(r[k] for r in mine if r["policy"] == p) for k in
                    ("documents", "rounds", "qa_pairs", "relevant_pairs", "pairs_per_document", "ot_distance",
                     "arms_pulled")} | {"regret": statistics.mean(r["regret_per_round"][-1] for r in mine
                                                                   if r["policy"] == p)}
                for p in dict.fromkeys(r["policy"] for r in mine)}
        for policy, m in mean.items():
            seeds = ", ".join(str(r["relevant_pairs"]) for r in mine if r["policy"] == policy)
            ratio = {b: (m["relevant_pairs"] / mean[b]["relevant_pairs"] if b in mean and mean[b]["relevant_pairs"] else
                         float("nan")) for b in ("random", "knn_reference")}
            out.append(f"| {corpus} | {policy} | {m['documents']:,.0f} | {m['rounds']:.1f} | {m['qa_pairs']:,.0f} | "
                       f"{m['relevant_pairs']:,.1f} ({seeds}) | {m['pairs_per_document']:.2f} | {m['ot_distance']:.4f} | "
                       f"{ratio['random']:.2f} | {ratio['knn_reference']:.2f} | {m['regret']:,.1f} | "
                       f"{m['arms_pulled']:.1f} |")
    return "\n".join(out)


def regret_table(rows: list[dict]) -> str:
    """Regret against the oracle after rounds 1, 5, 10 and the last, mean of the seeds, and the pulls per arm."""
    out = ["| corpus | policy | regret after round 1 | 5 | 10 | last | pulls per arm (seed 0) |", "|---|---|---:|---:|---:|---:|---|"]
    for corpus in dict.fromkeys(r["corpus"] for r in rows):
        for policy in dict.fromkeys(r["policy"] for r in rows if r["corpus"] == corpus):
            mine = [r["regret_per_round"] for r in rows if r["corpus"] == corpus and r["policy"] == policy]
            at = [statistics.mean(r[min(i, len(r)) - 1] for r in mine) for i in (1, 5, 10)]
            last = statistics.mean(r[-1] for r in mine)
            pulls = next((r["pulls_per_arm"] for r in rows if r["corpus"] == corpus and r["policy"] == policy), {})
            shown = ", ".join(f"{a}: {n}" for a, n in sorted(pulls.items(), key=lambda x: -x[1])) or "(documents, not arms)"
            out.append(f"| {corpus} | {policy} | {at[0]:,.1f} | {at[1]:,.1f} | {at[2]:,.1f} | {last:,.1f} | {shown} |")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--corpora", nargs="+", default=[c.mix.name for c in SELECTION_SUITE] + [REAL_CORPUS])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--policies", nargs="+", default=list(POLICIES))
    parser.add_argument("--generator-seed", type=int, default=1)
    parser.add_argument("--work", default=None, help="folder for the crawls and the homes (default: a temporary one)")
    parser.add_argument("--out", default=None, help="also write every run's row as JSON lines here")
    parser.add_argument("--tables-from", default=None, help="print the tables of rows written by --out, and stop")
    args = parser.parse_args()
    if args.tables_from:
        rows = [json.loads(line) for line in Path(args.tables_from).read_text().splitlines() if line.strip()]
        print(tables(rows))
        print()
        print(regret_table(rows))
        return
    work = Path(args.work or tempfile.mkdtemp(prefix="equal-selection-"))
    rows = []
    for name in args.corpora:
        rows += run_corpus(name, args.seeds, args.policies, work, args.generator_seed)
        if args.out:
            Path(args.out).write_text("".join(json.dumps(r) + "\n" for r in rows))
        print(tables(rows), flush=True)
    print()
    print("command: .venv/bin/python benchmarks/selection.py " + " ".join(sys.argv[1:]))
    print(tables(rows))
    print()
    print(regret_table(rows))


if __name__ == "__main__":
    main()
