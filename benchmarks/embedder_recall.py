"""Held-out retrieval of the contrastive warm-up (issue 4): on the demo corpus's warm-up pairs, recall@1 / @10 from
each held-out document to its own QA pairs, base all-MiniLM-L6-v2 against the tuned embedder, for several seeds.

The demo data is ingested and warmed up once (5% of the documents, rules backend, seed 0) in a temporary home
through the Dagster jobs; then, per seed, the warm-up pairs are split by document (20% held out, the asset's
default), the base embedder is tuned with the given settings (default: the asset's, EQUAL's temperature 0.02 and 2
epochs) and both are scored twice: among the held-out pairs only (the asset's check) and among all warm-up pairs
(the trained ones as distractors). ``@k`` is recall (the share of a document's pairs in its top k); ``hit@k`` the
share of documents with one of theirs there. Candidates are distinct QA texts: a text several documents yield is
one candidate, relevant to each (the demo's 202 warm-up pairs are 94 distinct texts).

With ``--clusters``, also what the warm-up is for: every demo document is embedded by the base and by each tuned
embedder and clustered with the `clusters` asset's defaults (PCA to 5 dimensions, HDBSCAN, min_cluster_size 15),
and the clusters are scored by the adjusted Rand index against the generated kinds.

    .venv/bin/python benchmarks/embedder_recall.py [--seeds 0 1 2] [--epochs 2] [--learning-rate 2e-5] [--clusters]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def warm_up_demo(home: Path) -> Path:
    import dagster as dg

    from equal_dagster.core.settings import EqualPaths
    from equal_dagster.definitions import build_definitions
    from equal_dagster.demo.corpus import CRAWL_NAMES
    from equal_dagster.demo.run import write_demo_data
    from equal_dagster.partitions import crawls_partitions
    from equal_dagster.resources.llm import ExtractionResource

    paths = EqualPaths.from_env(home)
    write_demo_data(paths.crawl_dir, paths.reference_dir / "reference.jsonl", seed=0, n_documents=6000)
    with dg.instance_for_test() as instance:
        defs = build_definitions(paths, llm=ExtractionResource(backend="rules"))
        instance.add_dynamic_partitions(crawls_partitions.name, list(CRAWL_NAMES))
        for crawl in CRAWL_NAMES:
            assert defs.resolve_job_def("ingest_crawl").execute_in_process(partition_key=crawl, instance=instance).success
        assert defs.resolve_job_def("warmup").execute_in_process(instance=instance).success
    return paths.store


def cluster_agreement(embedder, texts: list[str], kinds: list[str]) -> tuple[float, int]:
    from equal_dagster.core.clustering import ClusteringParams, adjusted_rand_index, cluster_vectors

    assignment = cluster_vectors(embedder.encode(texts), ClusteringParams())
    return round(adjusted_rand_index(kinds, assignment.labels), 3), assignment.n_clusters


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--learning-rate", type=float, default=2e-5)
    parser.add_argument("--clusters", action="store_true", help="also cluster the corpus with each embedder (ARI)")
    args = parser.parse_args()

    from equal_dagster.core.contrastive import (
        ContrastiveParams,
        TrainingPair,
        recall_at_k,
        render_qa,
        split_by_document,
        tune_embedder,
    )
    from equal_dagster.core.embedding import Embedder
    from equal_dagster.core.rounds import WARMUP_ROUND_ID
    from equal_dagster.core.store import Store
    from equal_dagster.demo.corpus import kinds_by_doc_id

    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        with Store.open(warm_up_demo(home), read_only=True) as store:
            rows = store.qa_pairs_with_documents([WARMUP_ROUND_ID])
            documents = store.documents() if args.clusters else None
        pairs = [TrainingPair(r["doc_id"], r["text"], render_qa(r["question"], r["answer"]))
                 for r in rows.iter_rows(named=True)]
        print(f"{len(pairs)} warm-up pairs ({len({p.qa_text for p in pairs})} distinct texts) from "
              f"{len({p.doc_id for p in pairs})} documents; "
              f"epochs {args.epochs}, learning rate {args.learning_rate}", flush=True)
        print("| seed | held-out docs / pairs | pool | base @1 | tuned @1 | base @10 | tuned @10 | base hit@10 | tuned hit@10 |")
        print("|---:|---|---|---:|---:|---:|---:|---:|---:|")
        base = Embedder()
        tuned_locations = {}
        for seed in args.seeds:
            _, held = split_by_document(pairs, 0.2, seed)
            params = ContrastiveParams(seed=seed, epochs=args.epochs, learning_rate=args.learning_rate,
                                       keep_base_if_worse=False)
            report = tune_embedder(base, pairs, params, Path(tmp) / "embedders")
            tuned = Embedder(report.location)
            tuned_locations[seed] = report.location
            for pool_name, distractors in (("held-out pairs", ()), ("all warm-up pairs", pairs)):
                b, t = recall_at_k(base, held, distractors=distractors), recall_at_k(tuned, held, distractors=distractors)
                print(f"| {seed} | {len({p.doc_id for p in held})} / {len(held)} | {pool_name} | {b['@1']} | {t['@1']} | "
                      f"{b['@10']} | {t['@10']} | {b['hit@10']} | {t['hit@10']} |", flush=True)

        if args.clusters:
            kind_of = kinds_by_doc_id(home / "crawls")
            texts, kinds = documents["text"].to_list(), [kind_of[d] for d in documents["doc_id"]]
            print(f"\nClusters of all {len(texts):,} documents against their {len(set(kinds))} generated kinds:")
            print("| embedder | clusters | adjusted Rand index |\n|---|---:|---:|")
            ari, n = cluster_agreement(base, texts, kinds)
            print(f"| base | {n} | {ari} |", flush=True)
            for seed, location in tuned_locations.items():
                ari, n = cluster_agreement(Embedder(location), texts, kinds)
                print(f"| tuned, seed {seed} | {n} | {ari} |", flush=True)


if __name__ == "__main__":
    main()
