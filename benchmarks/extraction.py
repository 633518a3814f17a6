"""Extraction throughput: everything around the model, and the openai backend against a slow server.

1. An instant in-process backend (tests/doubles.py ``InstantBackend``) for 20,000 demo documents through the
   whole path: render the prompt, cache lookup, backend, cache write, parse, and writing the round (extractions
   and QA pairs) into a fresh DuckDB store. Run twice: cold (every call a miss, written to the cache) and warm
   (every call a hit). Goal: at least 2,000 documents/s, so that we are never what an LLM server waits on.
2. The openai backend against the fake OpenAI-compatible server (tests/doubles.py, in a process of its own, as
   a real server would be) answering after 50 ms, with 1, 8 and 32 requests in flight.

    .venv/bin/python benchmarks/extraction.py [--documents 20000] [--latency-ms 50] [--in-flight 1 8 32]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DOUBLES = Path(__file__).resolve().parent.parent / "tests" / "doubles.py"
sys.path.insert(0, str(DOUBLES.parent))

from doubles import InstantBackend  # noqa: E402

from equal_dagster.core.extraction import Document, ExtractionConfig, InMemoryResponseCache, LLMExtractor, StoreResponseCache, build_extractor  # noqa: E402
from equal_dagster.core.store import Store  # noqa: E402
from equal_dagster.core.rounds import write_extraction_round  # noqa: E402
from equal_dagster.demo.corpus import generate_demo_corpus  # noqa: E402


def demo_documents(n: int) -> list[Document]:
    corpus = generate_demo_corpus(seed=0, n_documents=int(n * 1.05))
    docs = []
    for row in (r for rows in corpus.crawls.values() for r in rows):
        if isinstance(row, dict) and isinstance(row.get("text"), str) and row["text"].strip():
            docs.append(Document(f"d{len(docs)}", f"{row['text']}\nDOC=d{len(docs)}"))
    return docs[:n]


def instant(n: int) -> None:
    docs = demo_documents(n)
    print(f"instant backend, {len(docs):,} demo documents (mean {sum(len(d.text) for d in docs) / len(docs):,.0f} chars)")
    print("| run | documents | extract s | store s | total s | documents/s | backend calls | cache hits |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp, Store.open(Path(tmp) / "bench.duckdb") as store:
        for label in ("cold (all misses)", "warm (all hits)"):
            backend = InstantBackend()
            began = time.perf_counter()
            run = LLMExtractor(backend, StoreResponseCache(store)).extract(docs)
            extracted = time.perf_counter()
            write_extraction_round(store, "round-bench", 1, "bench", run, seed=0, dagster_run_id=None)
            done = time.perf_counter()
            totals = run.totals()
            print(f"| {label} | {len(docs):,} | {extracted - began:.2f} | {done - extracted:.2f} | {done - began:.2f} | "
                  f"{len(docs) / (done - began):,.0f} | {totals['backend_calls']:,} | {totals['cache_hits']:,} |")


def server(latency_ms: float, in_flight: list[int]) -> None:
    print(f"\nopenai backend against the fake server answering after {latency_ms:g} ms")
    print("| requests in flight | cache | documents | seconds | documents/s | ideal documents/s |")
    print("|---:|---|---:|---:|---:|---:|")
    fake = subprocess.Popen([sys.executable, str(DOUBLES), "--latency-ms", str(latency_ms)], stdout=subprocess.PIPE, text=True)
    try:
        base_url = fake.stdout.readline().strip()
        for k in in_flight:
            n = max(100, 50 * k)
            for cache in ("memory", "store"):  # the store: each answer committed to llm_cache as it arrives
                docs = [Document(f"d{i}", f"DOC=d{i} MODE=good text {i} in flight {k} {cache}") for i in range(n)]
                config = ExtractionConfig(backend="openai", base_url=base_url, model="fake", max_in_flight=k)
                with tempfile.TemporaryDirectory() as tmp, Store.open(Path(tmp) / "cache.duckdb") as store:
                    extractor = build_extractor(config, InMemoryResponseCache() if cache == "memory" else StoreResponseCache(store))
                    began = time.perf_counter()
                    run = extractor.extract(docs)
                    seconds = time.perf_counter() - began
                assert run.totals()["status"]["ok"] == n, run.totals()
                print(f"| {k} | {cache} | {n:,} | {seconds:.2f} | {n / seconds:,.1f} | {k * 1000 / latency_ms:,.0f} |")
    finally:
        fake.terminate()
        fake.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=int, default=20_000)
    parser.add_argument("--latency-ms", type=float, default=50)
    parser.add_argument("--in-flight", type=int, nargs="+", default=[1, 8, 32])
    args = parser.parse_args()
    instant(args.documents)
    server(args.latency_ms, args.in_flight)


if __name__ == "__main__":
    main()
