"""Embedding throughput: the pipeline (`embed_crawl`: read from DuckDB, embed, write back, in chunks) against bare
``SentenceTransformer.encode`` on the same documents, in the same run. Goal: at least 0.9 of bare.

    .venv/bin/python benchmarks/embed.py [--documents 5000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from equal_dagster.core.corpus import CrawlFormat, ingest_crawl
from equal_dagster.core.embedding import Embedder, embed_crawl
from equal_dagster.core.store import Store
from equal_dagster.demo.corpus import write_demo_crawls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=int, default=5000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        crawls = Path(tmp) / "crawls"
        write_demo_crawls(crawls, seed=0, n_documents=int(args.documents / 0.54))  # the first crawl holds ~55%
        crawl = "crawl-2026-10"
        with Store.open(Path(tmp) / "bench.duckdb") as store:
            ingest_crawl(store, crawl, crawls / crawl, crawls, CrawlFormat())
            texts = store.documents(crawl)["text"].to_list()
            embedder = Embedder()
            embedder.encode(texts[:64])  # load and warm the model once for both measurements
            began = time.perf_counter()
            embedder.model.encode(texts, batch_size=embedder.batch_size, normalize_embeddings=True, show_progress_bar=False)
            bare = time.perf_counter() - began
            began = time.perf_counter()
            embedded = embed_crawl(store, crawl, embedder).embedded
            pipeline = time.perf_counter() - began
    n = len(texts)
    print(f"{n:,} demo documents (mean {sum(map(len, texts)) / n:,.0f} chars), all-MiniLM-L6-v2, batch {embedder.batch_size}, CPU")
    print("| path | documents | seconds | documents/s | share of bare |")
    print("|---|---:|---:|---:|---:|")
    print(f"| bare SentenceTransformer.encode | {n:,} | {bare:.1f} | {n / bare:,.1f} | 1.00 |")
    print(f"| embed_crawl (DuckDB in, embed, DuckDB out) | {embedded:,} | {pipeline:.1f} | {embedded / pipeline:,.1f} | "
          f"{(embedded / pipeline) / (n / bare):.2f} |")


if __name__ == "__main__":
    main()
