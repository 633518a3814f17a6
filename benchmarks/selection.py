"""Selection benchmark: `equal run` on the demo corpus with the rules backend, for `equal_ucb` and `random` at a
budget of 10% of the documents and for `all` at 100%, each with three seeds.

For each run: documents extracted, QA pairs, reference-relevant QA pairs (pairs from documents whose generated kind
is a worked math problem, or a near-duplicate / re-crawl of one: the generator's `meta.kind`, which the pipeline
never reads), and the OT distance of the whole harvested set to the reference set (measured with the base
all-MiniLM-L6-v2, the same yardstick for every run). The goals (issue 5): `equal_ucb` harvests at least 2x the
relevant pairs of `random` at the same budget, and its harvested set lies at least as close to the reference as
`all`'s with at most a tenth of the documents.

    .venv/bin/python benchmarks/selection.py [--documents 6000] [--seeds 0 1 2] [--work DIR]

Each run is `equal run` in its own process and its own home. Rounds: `equal_ucb` plays 1 arm x 30 documents per
round (the demo corpus has about 25 clusters; EQUAL's 50 of 1,000 arms per round is 5% of them, about one here),
`random` draws 30 documents per round, `all` takes 1,000 per round.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from equal_dagster.core.store import Store  # noqa: E402
from equal_dagster.demo.corpus import generate_reference_set, relevant_doc_ids, write_demo_crawls  # noqa: E402

RUNS = (("equal_ucb", "10%", 1, 30), ("random", "10%", 1, 30), ("all", "100%", 10, 100))


def equal_run(crawl_dir: Path, reference: Path, home: Path, policy: str, budget: str, seed: int, arms: int, docs: int) -> dict:
    command = [sys.executable, "-m", "equal_dagster.cli", "run", "--crawl-dir", str(crawl_dir), "--reference",
               str(reference), "--policy", policy, "--budget", budget, "--seed", str(seed), "--home", str(home),
               "--arms-per-round", str(arms), "--docs-per-arm", str(docs)]
    env = {**os.environ, "EQUAL_LLM_BACKEND": "rules"}
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise SystemExit(f"equal run failed ({policy}, seed {seed}):\n{done.stderr[-4000:]}")
    return json.loads(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--documents", type=int, default=6000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--work", default=None, help="folder for the crawls and the homes (default: a temporary one)")
    args = parser.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="equal-selection-"))
    crawl_dir, reference = work / "crawls", work / "reference.jsonl"
    corpus = write_demo_crawls(crawl_dir, seed=0, n_documents=args.documents)
    reference.write_text("".join(json.dumps(r) + "\n" for r in generate_reference_set(0, exclude=corpus.math_questions)))
    relevant = relevant_doc_ids(crawl_dir)
    print(f"demo corpus: {args.documents} generated rows (seed 0) in {crawl_dir}; {len(relevant)} relevant rows", flush=True)

    rows = []
    for policy, budget, arms, docs in RUNS:
        for seed in args.seeds:
            home = work / f"home-{policy}-{seed}"
            summary = equal_run(crawl_dir, reference, home, policy, budget, seed, arms, docs)
            with Store.open(home / "equal.duckdb", read_only=True) as store:
                pairs = store.qa_pairs_of_rounds()
            relevant_pairs = sum(1 for d in pairs["doc_id"].to_list() if d in relevant)
            row = {"policy": policy, "budget": budget, "seed": seed, "documents": summary["documents_extracted"],
                   "share": summary["share_extracted"], "rounds": summary["rounds"], "qa_pairs": summary["qa_pairs"],
                   "relevant_pairs": relevant_pairs, "ot_distance": summary["ot_distance_to_reference"],
                   "elapsed_s": summary["elapsed_s"]}
            rows.append(row)
            print(json.dumps(row), flush=True)

    print()
    print("| policy | budget | seed | documents extracted | rounds | QA pairs | relevant QA pairs | OT distance to reference | run s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['policy']} | {r['budget']} | {r['seed']} | {r['documents']:,} ({r['share']:.1%}) | {r['rounds']} | "
              f"{r['qa_pairs']:,} | {r['relevant_pairs']:,} | {r['ot_distance']:.4f} | {r['elapsed_s']:.0f} |")
    mean = {p: {k: statistics.mean(r[k] for r in rows if r["policy"] == p) for k in ("documents", "relevant_pairs", "ot_distance", "qa_pairs")}
            for p, *_ in RUNS}
    print()
    print("| policy | mean documents | mean QA pairs | mean relevant QA pairs | mean OT distance |")
    print("|---|---|---|---|---|")
    for p, m in mean.items():
        print(f"| {p} | {m['documents']:,.0f} | {m['qa_pairs']:,.0f} | {m['relevant_pairs']:,.1f} | {m['ot_distance']:.4f} |")
    ratio = mean["equal_ucb"]["relevant_pairs"] / max(mean["random"]["relevant_pairs"], 1e-9)
    closer = mean["equal_ucb"]["ot_distance"] <= mean["all"]["ot_distance"]
    share = mean["equal_ucb"]["documents"] / mean["all"]["documents"]
    print()
    print(f"equal_ucb / random relevant QA pairs: {ratio:.2f}x (goal: at least 2x) -> {'met' if ratio >= 2 else 'NOT met'}")
    print(f"equal_ucb OT distance {mean['equal_ucb']['ot_distance']:.4f} vs all {mean['all']['ot_distance']:.4f} with "
          f"{share:.1%} of its documents (goal: at most as far, with at most 10%) -> "
          f"{'met' if closer and share <= 0.1 + 1e-9 else 'NOT met'}")


if __name__ == "__main__":
    main()
