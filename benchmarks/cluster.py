"""Clustering time and peak memory: faiss k-means into 1,000 arms at 100k, 300k and 1M documents (goal: 1M in at most
90 s and 3 GiB on 2 cores), or HDBSCAN (goal: 100k in at most 120 s, under 4 GiB).

Vectors: all-MiniLM-L6-v2 embeddings of 3,000 demo documents, each repeated with Gaussian jitter (sigma 0.02,
renormalized) up to the size, so that the clusters have the demo's structure at every size; embedding 1M real
documents on this CPU would take hours. Each size runs in a fresh process with a fresh store: documents and
vectors are written; then `build_clustering` runs in a process of its own (open the store, load the vectors,
cluster, summaries, write), whose peak RSS is the figure. Prints one row per size.

    .venv/bin/python benchmarks/cluster.py [--method kmeans] [--sizes 100000 300000 1000000]
    .venv/bin/python benchmarks/cluster.py --method hdbscan --sizes 20000 100000 300000
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def peak_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run_size(base_npz: str, size: int, method: str, store_path: str) -> dict:
    import numpy as np
    import polars as pl
    import pyarrow as pa

    from equal_dagster.core.store import Store

    base = np.load(base_npz, allow_pickle=True)  # our own file, written by the parent process
    vectors, texts = base["vectors"], base["texts"]
    rng = np.random.default_rng(0)
    source = np.arange(size) % len(vectors)
    with Store.open(store_path) as store:
        with store.replace_partition("crawl_id", "bench", ["documents"]) as writer:
            for start in range(0, size, 50_000):
                idx = source[start : start + 50_000]
                n = len(idx)
                writer.insert("documents", pl.DataFrame({
                    "doc_id": [f"d{start + i:07d}" for i in range(n)], "crawl_id": ["bench"] * n,
                    "source_file": ["bench.jsonl"] * n, "line_no": list(range(start, start + n)), "url": [None] * n,
                    "text": [str(texts[j]) for j in idx], "n_chars": [len(str(texts[j])) for j in idx],
                    "content_hash": [f"h{start + i}" for i in range(n)],
                }).with_columns(pl.lit(0).cast(pl.Datetime("us")).alias("ingested_at")))
                jittered = vectors[idx] + rng.normal(scale=0.02, size=(n, vectors.shape[1])).astype(np.float32)
                jittered /= np.linalg.norm(jittered, axis=1, keepdims=True)
                flat = pa.array(jittered.astype(np.float32).ravel())
                offsets = pa.array(np.arange(0, (n + 1) * vectors.shape[1], vectors.shape[1], dtype=np.int32))
                frame = pl.from_arrow(pa.table({
                    "doc_id": [f"d{start + i:07d}" for i in range(n)], "embedder_id": ["bench"] * n,
                    "crawl_id": ["bench"] * n, "vector": pa.ListArray.from_arrays(offsets, flat),
                })).with_columns(pl.lit(0).cast(pl.Datetime("us")).alias("embedded_at"))
                store.insert_embeddings(frame)
        setup_peak = peak_rss_mib()
    # clustering in a fresh process of its own: the setup's allocations (DuckDB's buffers among them) stay out
    done = subprocess.run([sys.executable, __file__, "--method", method, "--cluster-only", store_path],
                          capture_output=True, text=True, check=True)
    measured = json.loads(done.stdout.strip().splitlines()[-1])
    return {"size": size, **measured, "setup_peak_mib": setup_peak}


def cluster_only(method: str, store_path: str) -> dict:
    from equal_dagster.core.clustering import ClusteringParams, build_clustering
    from equal_dagster.core.store import Store

    began = time.perf_counter()
    with Store.open(store_path) as store:
        report = build_clustering(store, "bench", ClusteringParams(method=method, n_clusters=1000))
    seconds = time.perf_counter() - began
    return {"seconds": seconds, "peak_mib": peak_rss_mib(),
            "clusters": report.n_clusters, "noise_joined": report.by_assignment.get("noise_joined", 0),
            "timings": report.seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=None)
    parser.add_argument("--method", default="kmeans", choices=["kmeans", "hdbscan"])
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--cluster-only", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.cluster_only:
        print(json.dumps(cluster_only(args.method, args.cluster_only)))
        return
    if args.child:
        print(json.dumps(run_size(args.child[0], int(args.child[1]), args.method, args.child[2])))
        return
    import numpy as np

    from equal_dagster.core.embedding import Embedder

    args.sizes = args.sizes or ([100_000, 300_000, 1_000_000] if args.method == "kmeans" else [20_000, 100_000, 300_000])
    from equal_dagster.demo.corpus import generate_demo_corpus

    corpus = generate_demo_corpus(seed=0, n_documents=3200)
    texts = [r["text"] for rows in corpus.crawls.values() for r in rows
             if isinstance(r, dict) and isinstance(r.get("text"), str) and r["text"].strip()][:3000]
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "base.npz"
        np.savez(base, vectors=Embedder().encode(texts), texts=np.array(texts, dtype=object))
        print(f"method {args.method}{' (1,000 arms)' if args.method == 'kmeans' else ''}; vectors: 3,000 demo "
              "embeddings (384 dimensions) with jitter")
        print("| documents | seconds | peak RSS while clustering (MiB) | clusters | noise joined | load / cluster / summaries+write s |")
        print("|---:|---:|---:|---:|---:|---|")
        for size in args.sizes:
            store = Path(tmp) / f"store-{size}.duckdb"
            out = subprocess.run([sys.executable, __file__, "--method", args.method, "--child", str(base), str(size), str(store)],
                                 capture_output=True, text=True, check=True)
            row = json.loads(out.stdout.strip().splitlines()[-1])
            t = row["timings"]
            print(f"| {size:,} | {row['seconds']:.1f} | {row['peak_mib']:,.0f} | {row['clusters']:,} | {row['noise_joined']:,} | "
                  f"{t['load_s']:.1f} / {t['cluster_s']:.1f} / {t['summaries_and_write_s']:.1f} |", flush=True)


if __name__ == "__main__":
    main()
