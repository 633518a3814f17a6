"""Where the work inside one asset fans out: ``local`` (the asset's own process, the default) or ``ray``.

Dagster runs steps in parallel, not the work inside one step; the steps whose work is wide go to Ray when the
``compute`` resource says ``ray`` (launched through dagster-ray: :mod:`equal_dagster.resources.compute`):

* ``embeddings``: the crawl's documents without a vector are staged as Parquet files (DuckDB streams them out of the
  store), Ray Data reads them, an actor pool of embedders (``workers`` actors, fewer when the crawl has fewer
  batches; each with ``num_cpus``/``num_gpus``) embeds them with ``map_batches`` and writes each batch's vectors as a
  Parquet shard beside them; only the shards' paths come back to the asset, which has DuckDB load them
  ``WRITE_ROWS`` at a time (each load committed, as locally: an interrupted run resumes where it stopped). With a
  DuckLake store, which admits many writers, each actor commits its batches' vectors into the lake itself, and
  nothing is loaded by the driver.
* ``clusters`` (k-means): the driver reads the training sample from the store (the rows the local path trains on)
  and trains the centroids; DuckDB stages every vector as Parquet; an actor pool assigns them (``map_batches``,
  ``ASSIGN_ROWS`` at a time) and writes each batch's labels as a Parquet shard, with the batch's per-arm sizes, sums
  and sums of squares beside it; the driver adds those up into the arms' Gaussians and has DuckDB load the labels.
  The same arms as the local path for the same seed on the same machine (a document almost equally near two centroids
  may land apart where the BLAS differs).
* a round's extraction calls (the warm-up's too): the requests the cache cannot answer go through Ray Data LLM
  (:mod:`equal_dagster.core.extraction.backends.ray_http`), or to the ``vllm`` backend's engine actors
  (:mod:`equal_dagster.core.extraction.backends.vllm_ray`); prompts, parsing, the cache and the ledger are the code
  of the local path.

What stays on the driver: the bandit's choice (rounds are sequential), the store's writes, the reward. The driver is
the Dagster run's process, or a Ray job it submitted (:mod:`equal_dagster.ray_job`). On a cluster, the staging
folder (``scratch_dir``) must be one every Ray node can read and write (a shared disk; object storage is not
provided). It holds the staged documents and vectors and the shards not loaded yet: the actors may run ahead of the
loading, so give it room for the crawl's text and its vectors (4 bytes a dimension a document).

Rules:

* Actors take fractional CPUs by default (``num_cpus`` 0.5): whole-CPU actor pools deadlock on a 2-core machine,
  where Ray Data also needs a CPU for reading.
* The run's process holds little whatever the crawl's size: DuckDB stages the documents and loads the vectors
  within ``STORE_MEMORY_BYTES`` (it spills past it); no text or vector passes through the process's Python.
* Ray started by this process (no address) is a local Ray with the machine's CPUs; it stops with the process.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from equal_dagster.core.embedding import EmbedReport
from equal_dagster.core.ray_setup import RaySettings, pool_size, quiet_ray_data
from equal_dagster.core.store import Store, connect_lake

WRITE_ROWS = 16_384  # vectors written per commit (about 25 MB at 384 dimensions)
STORE_MEMORY_BYTES = 192 * 2**20  # DuckDB's share of the driver while it stages and loads (it spills past it)
ASSIGN_ROWS = 65_536  # vectors per assignment batch (about 100 MB at 384 dimensions; its sums: 6 MB at 1,000 arms)
SPLIT_BELOW = 100_000  # staged documents below which the one staged file is split in memory (above: many files)


class TextEmbedder(Protocol):
    embedder_id: str

    def encode(self, texts: list[str]) -> np.ndarray: ...


def _staging(settings: RaySettings, kind: str) -> Path:
    """A new staging folder's path for one job of ``kind`` (created by the caller, deleted when the job ends), in
    ``scratch_dir`` (a folder every node reads and writes) or the system's temporary folder."""
    return Path(settings.scratch_dir or tempfile.gettempdir()) / f"equal-{kind}-{uuid.uuid4().hex[:12]}"


@contextmanager
def _rows_of(dataset: Any) -> Iterator[Iterator[dict[str, Any]]]:
    """The dataset's rows as they come; when the block ends, a failure included, its execution is stopped (the
    streaming generator closed) before the caller cleans up: no actor goes on writing into a staging folder that is
    being deleted."""
    rows = iter(dataset.iter_rows())
    try:
        yield rows
    finally:
        close = getattr(rows, "close", None)
        if close is not None:
            close()


class _EmbedWorker:
    """One actor of the pool: loads the embedder once, then embeds batch after batch. With a DuckLake store
    (``lake``: its location, and the vectors' embedder and crawl) each batch's vectors go into the lake in a commit of
    the actor's own; else to a Parquet shard of their own in ``shards`` (written under a temporary name, then renamed:
    a shard is whole or absent) that the driver loads. Only the shard's path (none for the lake) and the row count go
    back to the driver."""

    def __init__(self, load: Callable[[], TextEmbedder], shards: str, lake: tuple[Any, str, str] | None = None):
        self.embedder = load()
        self.shards = shards
        self.store = None
        if lake is not None:
            location, self.embedder_id, self.crawl_id = lake
            self.store = Store(connect_lake(location), path=location)  # open while the actor lives

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import pyarrow as pa
        import pyarrow.parquet as pq

        vectors = np.asarray(self.embedder.encode([str(t) for t in batch["text"]]), dtype=np.float32)
        doc_ids = pa.array([str(d) for d in batch["doc_id"]], pa.string())
        vector_column = pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), vectors.shape[1])
        table = pa.table({"doc_id": doc_ids, "vector": vector_column})
        if self.store is not None:
            self.store.insert_embedding_table(table, self.embedder_id, self.crawl_id)
            return {"shard": np.array([""]), "rows": np.array([len(vectors)])}
        path = os.path.join(self.shards, f"{uuid.uuid4().hex}.parquet")
        pq.write_table(table, path + ".tmp")
        os.replace(path + ".tmp", path)
        return {"shard": np.array([path]), "rows": np.array([len(vectors)])}


def embed_crawl_on_ray(
    store: Store,
    crawl_id: str,
    load: Callable[[], TextEmbedder],
    embedder_id: str,
    settings: RaySettings,
    *,
    file_mb: int = 64,
    progress: Callable[[int, int, float], None] | None = None,
    progress_every_s: float = 5.0,
) -> EmbedReport:
    """:func:`equal_dagster.core.embedding.embed_crawl`'s work on Ray (see the module's rules): the same documents,
    the same vectors, the same rows; ``load`` builds the embedder inside each actor (it must pickle)."""
    import ray.data

    quiet_ray_data()
    began = time.perf_counter()
    stale = store.delete_stale_embeddings(crawl_id)
    already = store.embedding_counts(crawl_id).get(embedder_id, 0)
    staging = _staging(settings, "embed")
    shards_dir = staging / "vectors"
    done, last = 0, began
    shards: list[str] = []
    rows = 0

    def write() -> None:  # the shards written so far are loaded into the store in one commit, then deleted
        nonlocal done, last, rows
        if shards:  # (the workers of a DuckLake store wrote their vectors themselves)
            store.insert_embeddings_from_parquet(shards, embedder_id, crawl_id)
        for shard in shards:
            os.unlink(shard)
        done += rows
        shards.clear()
        rows = 0
        tick = time.perf_counter()
        if progress and (tick - last >= progress_every_s or done == total):
            progress(done, total, done / (tick - began))
            last = tick

    try:
        with store.bounded_memory(STORE_MEMORY_BYTES):
            staging.mkdir(parents=True)
            total = store.stage_texts_without_embedding(crawl_id, embedder_id, staging / "documents", file_mb=file_mb)
            if total:
                shards_dir.mkdir()
                documents = ray.data.read_parquet(str(staging / "documents"))
                actors = pool_size(settings, math.ceil(total / settings.batch_size))
                if total <= SPLIT_BELOW:  # a small crawl is one file: split it so that every actor gets work
                    documents = documents.repartition(max(2 * actors, math.ceil(total / settings.batch_size)))
                lake = (store.location, embedder_id, crawl_id) if store.lake else None
                dataset = documents.map_batches(
                    _EmbedWorker, fn_constructor_args=(load, str(shards_dir), lake), batch_size=settings.batch_size,
                    batch_format="numpy", compute=ray.data.ActorPoolStrategy(size=actors),
                    num_cpus=settings.num_cpus, num_gpus=settings.num_gpus)
                with _rows_of(dataset) as written_shards:
                    for written in written_shards:
                        if written["shard"]:
                            shards.append(str(written["shard"]))
                        rows += int(written["rows"])
                        if rows >= WRITE_ROWS:
                            write()
                if rows:
                    write()
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return EmbedReport(crawl_id, embedder_id, done, already, stale, time.perf_counter() - began)


class _AssignWorker:
    """One actor of the assignment pool: each batch of vectors joins its nearest centroid (the clustering's
    :func:`~equal_dagster.core.clustering.nearest_centroid`); the batch's labels go to a Parquet shard (doc_id,
    cluster_id) and its per-cluster sizes, sums and sums of squares (:func:`~equal_dagster.core.clustering.cluster_sums`)
    to a ``.npz`` beside it, each written under a temporary name, then renamed. Only the shard's path goes back."""

    def __init__(self, centroids: np.ndarray, shards: str):
        self.centroids = centroids
        self.shards = shards

    def __call__(self, batch: Any) -> dict[str, np.ndarray]:
        import pyarrow as pa
        import pyarrow.parquet as pq

        from equal_dagster.core.clustering import cluster_sums, nearest_centroid

        column = batch.column("vector").combine_chunks()
        vectors = column.flatten().to_numpy(zero_copy_only=False).astype(np.float32).reshape(batch.num_rows, -1)
        labels = nearest_centroid(vectors, self.centroids)
        path = os.path.join(self.shards, uuid.uuid4().hex)
        counts, sums, squares = cluster_sums(vectors, labels, len(self.centroids))
        with open(path + ".npz.tmp", "wb") as out:
            np.savez(out, counts=counts, sums=sums, squares=squares)
        pq.write_table(pa.table({"doc_id": batch.column("doc_id"), "cluster_id": pa.array(labels, pa.int32())}),
                       path + ".parquet.tmp")
        os.replace(path + ".npz.tmp", path + ".npz")
        os.replace(path + ".parquet.tmp", path + ".parquet")
        return {"shard": np.array([path + ".parquet"]), "rows": np.array([batch.num_rows])}


@dataclass
class RayAssignment:
    """What the assignment pool sent back: the label shards, and the sizes and sums of every centroid's members."""

    shards: list[str]
    counts: np.ndarray
    sums: np.ndarray
    squares: np.ndarray


def assign_on_ray(store: Store, embedder_id: str, centroids: np.ndarray, staging: Path, settings: RaySettings, *,
                  outside_clustering: str | None = None, log: Callable[[str], None] | None = None) -> RayAssignment:
    """Every vector of ``embedder_id`` (those outside ``outside_clustering`` when given) to its nearest centroid,
    on Ray: DuckDB stages the vectors as Parquet in ``staging``, an actor pool assigns them ``ASSIGN_ROWS`` at a time
    with ``map_batches`` and writes label shards there; the driver adds up the batches' sums as they come."""
    import ray.data

    quiet_ray_data()
    k, dimension = centroids.shape
    counts, sums, squares = np.zeros(k, np.int64), np.zeros((k, dimension)), np.zeros((k, dimension))
    shards: list[str] = []
    (staging / "labels").mkdir(parents=True)
    with store.bounded_memory(STORE_MEMORY_BYTES):
        total = store.stage_vectors(embedder_id, staging / "vectors", outside_clustering=outside_clustering)
    if not total:
        return RayAssignment(shards, counts, sums, squares)
    vectors = ray.data.read_parquet(str(staging / "vectors"))
    actors = pool_size(settings, math.ceil(total / ASSIGN_ROWS))
    if total <= ASSIGN_ROWS * actors:  # few files: split them so that every actor gets work
        vectors = vectors.repartition(2 * actors)
    began = last = time.perf_counter()
    labelled = vectors.map_batches(
        _AssignWorker, fn_constructor_args=(centroids, str(staging / "labels")), batch_size=ASSIGN_ROWS,
        batch_format="pyarrow", compute=ray.data.ActorPoolStrategy(size=actors), num_cpus=settings.num_cpus)
    done = 0
    with _rows_of(labelled) as written_shards:
        for written in written_shards:
            shard = str(written["shard"])
            with np.load(shard.removesuffix(".parquet") + ".npz") as part:
                counts += part["counts"]
                sums += part["sums"]
                squares += part["squares"]
            shards.append(shard)
            done += int(written["rows"])
            if log and (time.perf_counter() - last >= 5.0 or done == total):
                log(f"{done:,} of {total:,} vectors assigned ({done / (time.perf_counter() - began):,.0f}/s)")
                last = time.perf_counter()
    return RayAssignment(shards, counts, sums, squares)


def cluster_on_ray(store: Store, embedder_id: str, params: Any, settings: RaySettings, *,
                   log: Callable[[str], None] | None = None) -> Any:
    """:func:`equal_dagster.core.clustering.build_clustering`'s k-means on Ray, for corpora whose vectors the
    driver should not hold: the driver reads the training sample (:func:`~equal_dagster.core.clustering.training_positions`,
    the same rows as locally) and trains the centroids; the assignment fans out (:func:`assign_on_ray`); the
    Gaussians come from the batches' sums; DuckDB loads the labels into the store. The same clusters as the local
    path for the same seed (see the module's rules)."""
    from equal_dagster.core import clustering as c

    if params.method != "kmeans":
        raise ValueError(f"{params.method} clusters every vector at once, in the run's process: the ray engine runs "
                         "k-means only (set the clusters asset's method to kmeans, or the compute engine to local)")
    began = time.perf_counter()
    with store.bounded_memory(STORE_MEMORY_BYTES):
        documents, dimension = store.embedding_shape(embedder_id)
    if not documents:
        raise ValueError(f"no document has a vector from embedder {embedder_id}: materialize embeddings first")
    params, notes = c.with_arms(store, params, documents)
    if log:
        log(c.describe(params, documents, dimension, embedder_id) + " (assigned on Ray)")
    k = min(params.n_clusters, documents)
    if k < params.n_clusters:
        notes.append(f"{params.n_clusters} clusters asked, {documents} documents: k = {k}")
    with store.bounded_memory(STORE_MEMORY_BYTES):
        sample = store.embedding_rows_at(embedder_id, c.training_positions(documents, k, params.seed))
    centroids = c.train_centroids(sample, k, params.seed) if k > 1 else np.zeros((1, dimension), np.float32)
    del sample
    trained = time.perf_counter()
    staging = _staging(settings, "cluster")
    try:
        result = assign_on_ray(store, embedder_id, centroids, staging, settings, log=log)
        assigned = time.perf_counter()
        numbers = c.renumbering(result.counts)
        found = numbers >= 0
        if (~found).any():
            notes.append(f"{int((~found).sum())} empty centroid(s) dropped")
        means, spreads = c.gaussians_from(result.counts[found], result.sums[found], result.squares[found])
        sizes = result.counts[found]
        clustering_id = c.new_clustering_id(params, embedder_id)
        renumbered = numbers.tolist()
        with store.bounded_memory(STORE_MEMORY_BYTES):
            sampled = store.cluster_samples(c.samples_per_cluster(len(sizes)), params.seed, files=result.shards,
                                            renumbered=renumbered)
        summaries = c.summary_rows(store, clustering_id, embedder_id, params, sizes, c.normalized(means), means,
                                   spreads, sampled)
        with store.bounded_memory(STORE_MEMORY_BYTES):
            c.write_clustering(store, clustering_id, summaries, False, lambda writer: writer.insert_cluster_labels(
                result.shards, c.utc_now(), "clustered", renumbered))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    done = time.perf_counter()
    return c.ClusteringReport(
        clustering_id, embedder_id, int(sizes.sum()), 0, len(sizes), {"clustered": int(sizes.sum())}, summaries, notes,
        {"train_s": round(trained - began, 3), "assign_s": round(assigned - trained, 3),
         "summaries_and_write_s": round(done - assigned, 3)})


def assign_new_on_ray(store: Store, clustering: dict, settings: RaySettings, *,
                      log: Callable[[str], None] | None = None) -> Any:
    """:func:`equal_dagster.core.clustering.assign_new_documents` on Ray: the documents embedded after the clustering
    join its nearest centroid (:func:`assign_on_ray`); nothing else moves."""
    from equal_dagster.core import clustering as c

    began = time.perf_counter()
    clustering_id, embedder_id = clustering["clustering_id"], clustering["embedder_id"]
    summaries = store.cluster_summaries(clustering_id).to_dicts()
    existing = int(sum(row["size"] for row in summaries))
    centroids = np.asarray([row["centroid"] for row in summaries], dtype=np.float32)
    staging = _staging(settings, "assign")
    try:
        result = assign_on_ray(store, embedder_id, centroids, staging, settings, outside_clustering=clustering_id,
                               log=log)
        added = int(result.counts.sum())
        if added:
            if log:
                log(f"{added:,} new documents joined the nearest of {len(summaries):,} clusters of {clustering_id}")
            summaries = c.grown_summaries(summaries, result.counts)
            with store.bounded_memory(STORE_MEMORY_BYTES):
                c.write_clustering(store, clustering_id, summaries, True, lambda writer: writer.insert_cluster_labels(
                    result.shards, c.utc_now(), "new_document"))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return c.ClusteringReport(clustering_id, embedder_id, existing + added, added, len(summaries),
                              {"new_document": added} if added else {}, summaries, [],
                              {"assign_s": round(time.perf_counter() - began, 3)})
