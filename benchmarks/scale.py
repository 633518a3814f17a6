"""Scale on this machine (issue 19): what Ray costs against the local path, and what the driver holds.

1. embeddings: a crawl of N synthetic documents (default 100,000 and 1,000,000) embedded by an instant embedder (a
   vector from each text's bytes, no model: what is measured is everything around the model), in this process
   (`local`: ``embed_crawl``) and through Ray (``embed_crawl_on_ray``: staged to Parquet, a Ray Data actor pool with
   the default settings, each batch's vectors a Parquet shard that DuckDB loads). Wall time, documents/s, and the
   driver's peak memory.
2. clusters: a store of 1,000,000 documents with synthetic normalized 384-dimensional vectors (from 2,000 Gaussian
   blobs) clustered into 1,000 arms with the project's k-means (faiss, trained on a seeded sample of 256 per
   centroid), every vector assigned, the summaries and the clusters written: in this process (`local`:
   ``build_clustering``, the driver loads every vector) and with the assignment on Ray (``cluster_on_ray``: the
   driver reads the training sample; the default actor pool assigns). Time, the driver's peak memory, and how many
   documents land in the same arm under both.
3. rounds: 20 rounds of 500 new documents each through the openai backend against an instant OpenAI-compatible
   server (tests/doubles.py, in a process of its own, answering at once): extraction, cache and the round's write, in
   this process (8 requests in flight, the default) and through Ray Data LLM (the default 2 workers).

Each measurement runs in a fresh process (its own peak memory); the Ray runs start a local Ray in that process and
report its start apart. The goal (issue 19): Ray at most 1.5x local for the instant embedder; the driver's memory flat
from 100k to 1M documents.

    .venv/bin/python benchmarks/scale.py [--documents 100000 1000000] [--vectors 1000000] [--rounds 20]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))

from ingest import peak_rss_kib  # noqa: E402

DIMENSION = 384
WORDS = ("apple", "train", "river", "number", "theorem", "garden", "invoice", "protein", "kernel", "violin", "harbor",
         "matrix", "pepper", "ledger", "orbit", "canyon", "syntax", "meadow", "cipher", "falcon")


class InstantEmbedder:
    """A normalized vector from each text's bytes, no model (pickled by value into Ray workers: defined in __main__)."""

    embedder_id = "instant"

    def encode(self, texts: list[str]) -> np.ndarray:
        vectors = np.zeros((len(texts), DIMENSION), dtype=np.float32)
        for row, text in enumerate(texts):
            data = np.frombuffer(text.encode()[:DIMENSION].ljust(DIMENSION, b" "), dtype=np.uint8)
            vectors[row] = data
        vectors -= vectors.mean(axis=1, keepdims=True)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True) + 1e-9
        return vectors


class PeakMemory:
    """The peak of this process's private memory (RssAnon, sampled every 50 ms): what the driver itself holds, apart
    from the pages of Ray's shared object store it maps while reading blocks (RssShmem, reported apart)."""

    def __init__(self) -> None:
        import threading

        self.anon = self.shmem = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while True:
            fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
            self.anon = max(self.anon, int(fields["RssAnon"].split()[0]) // 1024)
            self.shmem = max(self.shmem, int(fields["RssShmem"].split()[0]) // 1024)
            if self._stop.wait(0.05):
                return

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def write_crawl(folder: Path, documents: int, seed: int = 0) -> None:
    """One crawl of ``documents`` JSONL rows of about 300 characters each."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "part.jsonl", "w") as out:
        for i in range(documents):
            words = " ".join(rng.choice(WORDS) for _ in range(45))
            out.write(json.dumps({"id": f"d{i}", "text": f"Document {i}. {words}."}) + "\n")


def child_prepare(store: str, documents: int) -> dict:
    from equal_dagster.core.corpus import CrawlFormat, ingest_crawl
    from equal_dagster.core.store import Store

    with tempfile.TemporaryDirectory() as tmp:
        crawls = Path(tmp) / "crawls"
        write_crawl(crawls / "scale", documents)
        began = time.perf_counter()
        with Store.open(store) as db:
            ingest_crawl(db, "scale", crawls / "scale", crawls, CrawlFormat())
            count = db.document_count()
    return {"documents": count, "ingest_s": round(time.perf_counter() - began, 1)}


def timed_on(engine: str, work):
    """``work(ray_settings)`` (None for local) timed on ``engine``: (its result, seconds, Ray's start in seconds).
    A Ray run starts its own Ray, whose start is counted apart."""
    from equal_dagster.core.ray_setup import RaySettings, ray_session

    if engine == "local":
        began = time.perf_counter()
        return work(None), time.perf_counter() - began, 0.0
    settings = RaySettings()
    started = time.perf_counter()
    with ray_session(settings):
        began = time.perf_counter()
        result = work(settings)
        return result, time.perf_counter() - began, began - started


def child_embed(store: str, engine: str) -> dict:
    from equal_dagster.core.compute import embed_crawl_on_ray
    from equal_dagster.core.embedding import embed_crawl
    from equal_dagster.core.store import Store

    with Store.open(store) as db, PeakMemory() as memory:
        report, seconds, ray_start = timed_on(engine, lambda ray: (
            embed_crawl(db, "scale", InstantEmbedder()) if ray is None else
            embed_crawl_on_ray(db, "scale", InstantEmbedder, InstantEmbedder.embedder_id, ray)))
        assert db.embedding_counts("scale").get(InstantEmbedder.embedder_id) == report.embedded == db.document_count()
    return {"embedded": report.embedded, "seconds": round(seconds, 1), "ray_start_s": round(ray_start, 1),
            "documents_per_s": round(report.embedded / seconds), "peak_rss_mib": peak_rss_kib() // 1024,
            "peak_private_mib": memory.anon, "peak_shared_mib": memory.shmem}


def child_drop(store: str) -> dict:
    """Each engine embeds every document: the vectors of the engine before go, in a process of their own (what
    deleting them takes is not the next engine's memory)."""
    from equal_dagster.core.store import Store

    with Store.open(store) as db:
        return {"dropped": db.drop_embeddings(InstantEmbedder.embedder_id)}


def child_prepare_vectors(store: str, vectors: int) -> dict:
    """A store of ``vectors`` short documents, each with a synthetic normalized vector (2,000 Gaussian blobs)."""
    import polars as pl
    import pyarrow as pa

    from equal_dagster.core.store import Store

    rng = np.random.default_rng(0)
    centers = rng.normal(size=(2000, DIMENSION)).astype(np.float32)
    began = time.perf_counter()
    with Store.open(store) as db:
        with db.replace_partition("crawl_id", "scale", ["documents"]) as writer:
            for start in range(0, vectors, 100_000):
                n = min(100_000, vectors - start)
                ids = [f"d{start + i:08d}" for i in range(n)]
                texts = [f"Document {start + i}. {' '.join(WORDS[(start + i + j) % len(WORDS)] for j in range(6))}."
                         for i in range(n)]
                writer.insert("documents", pl.DataFrame({
                    "doc_id": ids, "crawl_id": ["scale"] * n, "source_file": ["part.jsonl"] * n,
                    "line_no": list(range(start + 1, start + n + 1)), "url": [None] * n, "text": texts,
                    "n_chars": [len(t) for t in texts], "content_hash": ids,
                }).with_columns(pl.lit(0).cast(pl.Datetime("us")).alias("ingested_at")))
        for start in range(0, vectors, 100_000):
            n = min(100_000, vectors - start)
            data = centers[rng.integers(0, len(centers), n)] + 0.6 * rng.normal(size=(n, DIMENSION)).astype(np.float32)
            data /= np.linalg.norm(data, axis=1, keepdims=True)
            offsets = pa.array(np.arange(0, (n + 1) * DIMENSION, DIMENSION, dtype=np.int32))
            db.insert_embeddings(pl.from_arrow(pa.table({
                "doc_id": [f"d{start + i:08d}" for i in range(n)], "embedder_id": ["instant"] * n,
                "crawl_id": ["scale"] * n, "vector": pa.ListArray.from_arrays(offsets, pa.array(data.ravel())),
            })).with_columns(pl.lit(0).cast(pl.Datetime("us")).alias("embedded_at")))
    return {"vectors": vectors, "prepare_s": round(time.perf_counter() - began, 1)}


def child_cluster(store: str, engine: str, arms: int) -> dict:
    """The ``clusters`` asset's work on a store: ``build_clustering`` (the driver loads every vector) or
    ``cluster_on_ray`` (it reads the training sample; an actor pool assigns)."""
    from equal_dagster.core.clustering import ClusteringParams, build_clustering
    from equal_dagster.core.compute import cluster_on_ray
    from equal_dagster.core.store import Store

    params = ClusteringParams(n_clusters=arms, seed=0)
    with Store.open(store) as db, PeakMemory() as memory:
        report, seconds, ray_start = timed_on(engine, lambda ray: (
            build_clustering(db, "instant", params) if ray is None else cluster_on_ray(db, "instant", params, ray)))
    sizes = [row["size"] for row in report.summaries]
    return {"vectors": report.documents, "arms": report.n_clusters, "seconds": round(seconds, 1),
            "ray_start_s": round(ray_start, 1), "timings": report.seconds, "smallest_arm": min(sizes),
            "largest_arm": max(sizes), "clustering_id": report.clustering_id, "peak_rss_mib": peak_rss_kib() // 1024,
            "peak_private_mib": memory.anon}


def child_agreement(store: str, first: str, second: str) -> dict:
    """Documents in the same arm in two clusterings."""
    from equal_dagster.core.store import Store

    with Store.open(store, read_only=True) as db:
        a, b = db.clusters(first), db.clusters(second)
    same = a.select("doc_id", "cluster_id").join(b.select("doc_id", "cluster_id"), on="doc_id")
    return {"documents": a.height, "same_arm": int((same["cluster_id"] == same["cluster_id_right"]).sum())}


def child_rounds(engine: str, rounds: int, per_round: int, base_url: str) -> dict:
    from equal_dagster.core.ray_setup import RaySettings, ray_session
    from equal_dagster.core.extraction import Document, ExtractionConfig, StoreResponseCache, build_extractor
    from equal_dagster.core.rounds import write_extraction_round
    from equal_dagster.core.store import Store

    config = ExtractionConfig(backend="openai", base_url=base_url, model="instant", max_retries=0)
    settings = RaySettings() if engine == "ray" else None
    timings = []
    with tempfile.TemporaryDirectory() as tmp, Store.open(Path(tmp) / "rounds.duckdb") as db:
        started = time.perf_counter()
        with ray_session(settings) if settings else contextlib.nullcontext():
            ray_start = time.perf_counter() - started
            for number in range(1, rounds + 1):
                docs = [Document(f"r{number}-{i}", f"DOC=r{number}-{i} MODE=good\nA text about topic {i} of round "
                                 f"{number}.") for i in range(per_round)]
                began = time.perf_counter()
                run = build_extractor(config, StoreResponseCache(db), ray=settings).extract(docs)
                write_extraction_round(db, f"r{number:04d}", number, "bench", run, seed=0, dagster_run_id=None)
                timings.append(time.perf_counter() - began)
                assert run.totals()["backend_calls"] == per_round
    return {"rounds": rounds, "documents": rounds * per_round, "seconds": round(sum(timings), 1),
            "first_round_s": round(timings[0], 2), "median_round_s": round(sorted(timings)[len(timings) // 2], 2),
            "ray_start_s": round(ray_start, 1), "peak_rss_mib": peak_rss_kib() // 1024}


def _child(*args: str) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _server(latency_ms: float = 0.0):
    code = ("import sys, time; sys.path.insert(0, sys.argv[1]); from doubles import FakeOpenAIServer\n"
            "with FakeOpenAIServer(latency_s=float(sys.argv[2])) as s:\n"
            "    print(s.base_url, flush=True)\n    time.sleep(10**6)\n")
    process = subprocess.Popen([sys.executable, "-c", code, str(HERE.parent / "tests"), str(latency_ms / 1000)],
                               stdout=subprocess.PIPE, text=True)
    return process, process.stdout.readline().strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--vectors", type=int, default=1_000_000)
    parser.add_argument("--arms", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--round-documents", type=int, default=500)
    parser.add_argument("--skip", nargs="*", default=[], choices=["embeddings", "clusters", "rounds"])
    args = parser.parse_args()
    print(f"    {Path(sys.executable).relative_to(Path.cwd()) if Path(sys.executable).is_relative_to(Path.cwd()) else sys.executable} "
          f"benchmarks/{Path(__file__).name} {' '.join(sys.argv[1:])}".rstrip())
    from equal_dagster.core.ray_setup import RaySettings

    ray = RaySettings()
    print(f"machine: {os.cpu_count()} cores; Ray with its defaults ({ray.workers} workers of {ray.num_cpus:g} CPU)\n")
    if "embeddings" not in args.skip:
        print("| documents | engine | embed s | Ray start s | documents/s | driver peak RSS MiB | of it private | "
              "of it Ray's shared objects | ray / local |")
        print("|---:|---|---:|---:|---:|---:|---:|---:|---:|")
        with tempfile.TemporaryDirectory() as tmp:
            for n in args.documents:
                store = str(Path(tmp) / f"scale-{n}.duckdb")
                _child("prepare", store, str(n))
                results = {}
                for engine in ("local", "ray"):
                    _child("drop", store)
                    results[engine] = _child("embed", store, engine)
                for engine, r in results.items():
                    ratio = f"{r['seconds'] / results['local']['seconds']:.2f}x" if engine == "ray" else ""
                    print(f"| {n:,} | {engine} | {r['seconds']} | {r['ray_start_s'] or ''} | {r['documents_per_s']:,} | "
                          f"{r['peak_rss_mib']:,} | {r['peak_private_mib']:,} | {r['peak_shared_mib']:,} | {ratio} |",
                          flush=True)
        print()
    if "clusters" not in args.skip:
        print("| vectors | engine | arms | cluster and assign s | Ray start s | smallest arm | largest arm | "
              "driver peak RSS MiB | of it private | ray / local |")
        print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        with tempfile.TemporaryDirectory() as tmp:
            store = str(Path(tmp) / "vectors.duckdb")
            _child("prepare-vectors", store, str(args.vectors))
            results = {engine: _child("cluster", store, engine, str(args.arms)) for engine in ("local", "ray")}
            agreement = _child("agreement", store, results["local"]["clustering_id"], results["ray"]["clustering_id"])
        for engine, r in results.items():
            ratio = f"{r['seconds'] / results['local']['seconds']:.2f}x" if engine == "ray" else ""
            print(f"| {r['vectors']:,} | {engine} | {r['arms']:,} | {r['seconds']} | {r['ray_start_s'] or ''} | "
                  f"{r['smallest_arm']} | {r['largest_arm']} | {r['peak_rss_mib']:,} | {r['peak_private_mib']:,} | "
                  f"{ratio} |", flush=True)
        print(f"\nsteps (s): local {results['local']['timings']}; ray {results['ray']['timings']}")
        print(f"same arm under both engines: {agreement['same_arm']:,} of {agreement['documents']:,} documents\n",
              flush=True)
    if "rounds" not in args.skip:
        server, base_url = _server()
        try:
            print("| engine | rounds x documents | total s | first round s | median round s | Ray start s | peak MiB | ray / local |")
            print("|---|---:|---:|---:|---:|---:|---:|---:|")
            results = {e: _child("rounds", e, str(args.rounds), str(args.round_documents), base_url) for e in ("local", "ray")}
            for engine, r in results.items():
                ratio = f"{r['seconds'] / results['local']['seconds']:.2f}x" if engine == "ray" else ""
                print(f"| {engine} | {r['rounds']} x {args.round_documents} | {r['seconds']} | {r['first_round_s']} | "
                      f"{r['median_round_s']} | {r['ray_start_s'] or ''} | {r['peak_rss_mib']:,} | {ratio} |", flush=True)
        finally:
            server.kill()


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] in ("prepare", "drop", "embed", "prepare-vectors", "cluster", "agreement",
                                             "rounds"):
        command, rest = sys.argv[1], sys.argv[2:]
        if command == "prepare":
            result = child_prepare(rest[0], int(rest[1]))
        elif command == "drop":
            result = child_drop(rest[0])
        elif command == "embed":
            result = child_embed(rest[0], rest[1])
        elif command == "prepare-vectors":
            result = child_prepare_vectors(rest[0], int(rest[1]))
        elif command == "cluster":
            result = child_cluster(rest[0], rest[1], int(rest[2]))
        elif command == "agreement":
            result = child_agreement(rest[0], rest[1], rest[2])
        else:
            result = child_rounds(rest[0], int(rest[1]), int(rest[2]), rest[3])
        print(json.dumps(result))
    else:
        main()
