"""Clusters of documents as bandit arms (EQUAL, arXiv 2505.12250, section 3.3: the paper clusters the tuned
document embeddings with k-means into about 1,000 arms for 1.46M documents).

Rules:

* ``kmeans`` (the default): faiss's spherical k-means on the full (normalized) vectors, trained on at most 256
  vectors per centroid (a seeded sample of rows drawn here, :func:`training_positions`, so that the Ray engine's
  driver reads the same rows from the store and trains the same centroids), then every vector assigned to its
  nearest centroid (in the run's process, or by Ray actors: :func:`equal_dagster.core.compute.cluster_on_ray`). The number of arms is
  ``n_clusters`` when given, else :func:`arms_for`: one arm per ``WARMUP_DOCS_PER_ARM`` (5) documents of the
  warm-up, at least 2, at most ``MAX_ARMS`` (1,000, EQUAL's). The bandit's first pull of an arm is the warm-up's
  documents in it; an arm the warm-up missed must be explored in the rounds, one round slot each, so more arms
  than the warm-up can cover spend the round budget on exploration (measured in docs/benchmarks.md: at 2 warm-up
  documents per arm the bandit harvested a third less than at 5). Empty centroids are dropped.
* ``hdbscan``: vectors reduced with PCA to ``dimension`` (default 5) first (HDBSCAN on the raw 384-dimensional
  vectors ran for over 17 minutes at 100k documents on two cores without finishing); the ``hdbscan`` package with
  ``min_cluster_size`` (and ``min_samples``). Points it leaves as noise join the cluster whose centroid is nearest
  (cosine, in the full embedding space), flagged ``noise_joined``, so that every document is in exactly one arm.
  If HDBSCAN finds no cluster at all, every document goes to one cluster and the report says so.
* Centroids are the normalized means of each cluster's (normalized) vectors in the full space; each cluster also
  keeps the per-dimension standard deviation of its vectors (``spread``), for the bandit's neighbour sharing.
  Documents that arrive later (a new crawl) join the nearest centroid (``new_document``) without re-clustering, so
  existing assignments, the clusters' Gaussians and the bandit's statistics stay; a full re-cluster makes a new
  ``clustering_id``.
* Per cluster: size, top terms by class-based TF-IDF over a sample of its texts (at most 300 each, 60 past 200
  clusters; drawn by a seeded hash of the doc_id, :meth:`Store.cluster_samples`, the same draw on either engine), and
  the first lines of three sample documents.
* faiss's bundled OpenBLAS mis-detects some processors and runs about 4x slower; unless ``OPENBLAS_CORETYPE`` is
  set, it is set from the processor's flags before faiss is first imported (:func:`import_faiss`).
"""

from __future__ import annotations

import json
import math
import os
import platform
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from equal_dagster.core.store import table_frame
from equal_dagster.core.warmup import warmup_sample_size

METHODS = ("kmeans", "hdbscan")
WARMUP_DOCS_PER_ARM = 5
MAX_ARMS = 1000  # EQUAL's
MAX_POINTS_PER_CENTROID = 256
LOAD_MEMORY_BYTES = 512 * 2**20


def arms_for(warmup_documents: int) -> int:
    """The number of k-means arms when none is given: one per 5 warm-up documents, within [2, 1,000]."""
    return int(min(MAX_ARMS, max(2, round(warmup_documents / WARMUP_DOCS_PER_ARM))))


@dataclass
class ClusteringParams:
    method: str = "kmeans"
    dimension: int = 5  # hdbscan: PCA dimension
    min_cluster_size: int = 15  # hdbscan
    min_samples: int | None = None  # hdbscan
    n_clusters: int | None = None  # kmeans; None: arms_for(the warm-up's documents)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"unknown clustering method {self.method!r}: choose one of {', '.join(METHODS)}")
        if self.dimension < 2:
            raise ValueError("dimension must be at least 2")
        if self.n_clusters is not None and self.n_clusters < 1:
            raise ValueError("n_clusters must be at least 1 (or unset: from the warm-up)")


def import_faiss():
    """faiss, with OpenBLAS told the processor's kind when it would mis-detect it (see the module's rules)."""
    if "faiss" not in sys.modules and not os.environ.get("OPENBLAS_CORETYPE") and platform.machine() == "x86_64":
        try:
            flags = next((line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")), "")
        except OSError:
            flags = ""
        kind = "SkylakeX" if " avx512f" in flags else "Haswell" if " avx2" in flags else None
        if kind:
            os.environ["OPENBLAS_CORETYPE"] = kind
    import faiss

    return faiss


def training_positions(n: int, k: int, seed: int) -> np.ndarray:
    """The rows (ascending) k-means trains on: all of them up to ``MAX_POINTS_PER_CENTROID`` per centroid, else a
    seeded sample of that many. Drawn here, not by faiss, so that a driver that cannot hold every vector (the Ray
    engine) reads the same rows from the store and trains the same centroids."""
    wanted = k * MAX_POINTS_PER_CENTROID
    if n <= wanted:
        return np.arange(n, dtype=np.int64)
    return np.sort(np.random.default_rng(seed).choice(n, wanted, replace=False)).astype(np.int64)


def train_centroids(sample: np.ndarray, k: int, seed: int) -> np.ndarray:
    """faiss spherical k-means on the training rows (:func:`training_positions`): k normalized centroids."""
    faiss = import_faiss()
    x = np.ascontiguousarray(sample, dtype=np.float32)
    model = faiss.Kmeans(x.shape[1], k, niter=20, seed=seed + 1, spherical=True, verbose=False,
                         max_points_per_centroid=MAX_POINTS_PER_CENTROID)
    model.train(x)
    return np.asarray(model.centroids, dtype=np.float32)


def kmeans_labels(vectors: np.ndarray, k: int, seed: int) -> np.ndarray:
    """faiss spherical k-means: labels of every vector (centroids trained on the seeded sample)."""
    centroids = train_centroids(vectors[training_positions(len(vectors), k, seed)], k, seed)
    return nearest_centroid(vectors, centroids)


@dataclass
class ClusterAssignment:
    labels: np.ndarray  # int32, one per document, every one >= 0
    probabilities: np.ndarray  # float64; NaN where the method gives none
    how: list[str]  # clustered | noise_joined | new_document
    centroids: np.ndarray  # (clusters, dim) float32, normalized
    notes: list[str] = field(default_factory=list)
    means: np.ndarray | None = None  # (clusters, dim): mean of each cluster's vectors
    spreads: np.ndarray | None = None  # (clusters, dim): per-dimension standard deviation

    @property
    def n_clusters(self) -> int:
        return int(self.centroids.shape[0])


def reduce_dimensions(vectors: np.ndarray, dimension: int, seed: int) -> np.ndarray:
    from sklearn.decomposition import PCA

    dimension = min(dimension, vectors.shape[1], max(vectors.shape[0] - 1, 1))
    return PCA(n_components=dimension, random_state=seed, svd_solver="randomized").fit_transform(vectors)


def centroids_of(vectors: np.ndarray, labels: np.ndarray, n_clusters: int) -> np.ndarray:
    return normalized(gaussians_of(vectors, labels, n_clusters)[0])


def gaussians_of(vectors: np.ndarray, labels: np.ndarray, n_clusters: int) -> tuple[np.ndarray, np.ndarray]:
    """Each cluster's mean and per-dimension standard deviation."""
    return gaussians_from(*cluster_sums(vectors, labels, n_clusters))


def cluster_sums(vectors: np.ndarray, labels: np.ndarray, n_clusters: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per cluster: its size, and the sums of its vectors and of their squares (float64), as sparse one-hot
    products 100k rows at a time (memory stays at one chunk). Sums of parts add up to the sums of the whole: the
    Ray engine's batches send theirs."""
    from scipy import sparse

    counts = np.bincount(labels, minlength=n_clusters).astype(np.int64)
    sums = np.zeros((n_clusters, vectors.shape[1]), dtype=np.float64)
    squares = np.zeros_like(sums)
    for start in range(0, len(vectors), 100_000):
        part = vectors[start:start + 100_000].astype(np.float64)
        rows = labels[start:start + 100_000]
        one_hot = sparse.csr_matrix((np.ones(len(rows)), (rows, np.arange(len(rows)))), shape=(n_clusters, len(rows)))
        sums += one_hot @ part
        squares += one_hot @ (part * part)
    return counts, sums, squares


def gaussians_from(counts: np.ndarray, sums: np.ndarray, squares: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Means and per-dimension standard deviations from :func:`cluster_sums`."""
    n = np.maximum(counts, 1)[:, None]
    means = sums / n
    return means.astype(np.float32), np.sqrt(np.maximum(squares / n - means * means, 0)).astype(np.float32)


def renumbering(counts: np.ndarray) -> np.ndarray:
    """Cluster ids without the empty ones: ``renumbering(counts)[old]`` is the dense new id (-1: empty, dropped)."""
    numbers = np.full(len(counts), -1, dtype=np.int32)
    found = np.flatnonzero(counts)
    numbers[found] = np.arange(len(found), dtype=np.int32)
    return numbers


def normalized(rows: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return (rows / np.where(norms == 0, 1, norms)).astype(np.float32)


def nearest_centroid(vectors: np.ndarray, centroids: np.ndarray, chunk: int = 65536) -> np.ndarray:
    out = np.empty(len(vectors), dtype=np.int32)
    for start in range(0, len(vectors), chunk):
        out[start : start + chunk] = np.argmax(vectors[start : start + chunk] @ centroids.T, axis=1)
    return out


def cluster_vectors(vectors: np.ndarray, params: ClusteringParams) -> ClusterAssignment:
    """Cluster normalized vectors (see the module's rules)."""
    n = len(vectors)
    if n == 0:
        raise ValueError("no vectors to cluster: materialize embeddings first")
    notes: list[str] = []
    if params.method == "kmeans":
        if params.n_clusters is None:
            raise ValueError("k-means needs n_clusters (build_clustering derives it from the warm-up)")
        wanted = params.n_clusters
        k = min(wanted, n)
        if k < wanted:
            notes.append(f"{wanted} clusters asked, {n} documents: k = {k}")
        labels = kmeans_labels(vectors, k, params.seed) if k > 1 else np.zeros(n, dtype=np.int32)
        probabilities = np.full(n, np.nan)
        how = ["clustered"] * n
        empty = k - len(np.unique(labels))
        if empty:
            notes.append(f"{empty} empty centroid(s) dropped")
    else:
        import hdbscan

        reduced = reduce_dimensions(vectors, params.dimension, params.seed) if n > 2 else vectors
        if n < 2 * params.min_cluster_size:
            labels = np.full(n, -1, dtype=np.int32)
            probabilities = np.zeros(n)
        else:
            model = hdbscan.HDBSCAN(min_cluster_size=params.min_cluster_size, min_samples=params.min_samples,
                                    core_dist_n_jobs=2).fit(reduced)
            labels = model.labels_.astype(np.int32)
            probabilities = model.probabilities_.astype(np.float64)
        how = ["clustered" if label >= 0 else "noise_joined" for label in labels]
        if (labels < 0).all():
            notes.append(f"HDBSCAN found no cluster among {n} documents (min_cluster_size {params.min_cluster_size}): "
                         "all documents form one cluster")
            labels = np.zeros(n, dtype=np.int32)
            how = ["noise_joined"] * n
    # dense labels 0..k-1
    found = np.unique(labels[labels >= 0])
    remap = np.full(int(labels.max()) + 1 if len(found) else 1, -1, dtype=np.int32)
    remap[found] = np.arange(len(found), dtype=np.int32)
    labels = np.where(labels >= 0, remap[np.maximum(labels, 0)], -1).astype(np.int32)
    noise = labels < 0
    if noise.any():  # the centroids of the clustered points decide where noise goes
        centroids = centroids_of(vectors[~noise], labels[~noise], len(found))
        labels[noise] = nearest_centroid(vectors[noise], centroids)
        notes.append(f"{int(noise.sum())} noise documents joined their nearest cluster")
    means, spreads = gaussians_of(vectors, labels, len(found))
    if not noise.any():  # the centroid is the normalized mean: the same pass gives it
        centroids = normalized(means)
    return ClusterAssignment(labels, probabilities, how, centroids, notes, means, spreads)


def assign_new(vectors: np.ndarray, centroids: np.ndarray) -> ClusterAssignment:
    """Documents that came after the clustering: each joins its nearest centroid; centroids do not move."""
    labels = nearest_centroid(vectors, centroids) if len(vectors) else np.zeros(0, dtype=np.int32)
    return ClusterAssignment(labels, np.full(len(vectors), np.nan), ["new_document"] * len(vectors), centroids)


def top_terms(texts_by_cluster: dict[int, list[str]], n_terms: int = 8) -> dict[int, list[str]]:
    """Class-based TF-IDF (as BERTopic's c-TF-IDF): a term's frequency in the cluster, weighted by
    log(1 + average words per cluster / the term's frequency over all clusters)."""
    from sklearn.feature_extraction.text import CountVectorizer

    clusters = sorted(texts_by_cluster)
    documents = [" ".join(texts_by_cluster[c]) for c in clusters]
    try:
        vectorizer = CountVectorizer(stop_words="english", token_pattern=r"(?u)\b[a-zA-Z][a-zA-Z]+\b", max_features=50000)
        counts = vectorizer.fit_transform(documents).astype(np.float64)
    except ValueError:  # nothing but stop words
        return {c: [] for c in clusters}
    terms = vectorizer.get_feature_names_out()
    tf = counts.multiply(1 / np.maximum(counts.sum(axis=1), 1)).tocsr()
    frequency = np.asarray(counts.sum(axis=0)).ravel()
    average = counts.sum() / max(len(clusters), 1)
    idf = np.log(1 + average / np.maximum(frequency, 1))
    scores = tf.multiply(idf).tocsr()
    out = {}
    for row, cluster in enumerate(clusters):
        data = scores.getrow(row)
        order = np.argsort(-data.data)[:n_terms]
        out[cluster] = [str(terms[data.indices[i]]) for i in order]
    return out


def first_line(text: str, limit: int = 80) -> str:
    line = next((l.strip() for l in text.splitlines() if l.strip()), "")
    return line if len(line) <= limit else line[: limit - 1] + "…"


def adjusted_rand_index(truth: Sequence[str], labels: Sequence[int]) -> float:
    from sklearn.metrics import adjusted_rand_score

    return float(adjusted_rand_score(list(truth), list(labels)))


# -- with the store -------------------------------------------------------------------------------------
@dataclass
class ClusteringReport:
    clustering_id: str
    embedder_id: str
    documents: int
    new_documents: int
    n_clusters: int
    by_assignment: dict[str, int]
    summaries: list[dict]
    notes: list[str]
    seconds: dict[str, float]


def summary_rows(store, clustering_id: str, embedder_id: str, params: ClusteringParams, sizes: np.ndarray,
                 centroids: np.ndarray, means: np.ndarray, spreads: np.ndarray,
                 sampled: dict[int, list[str]]) -> list[dict]:
    """One row per cluster: size, centroid, Gaussian, top terms and first lines of the sampled documents
    (``sampled``: doc_ids per cluster, :meth:`Store.cluster_samples`)."""
    fetched = store.document_texts([doc_id for ids in sampled.values() for doc_id in ids])
    texts = dict(zip(fetched["doc_id"], fetched["text"]))
    texts_by_cluster = {c: [texts[doc_id] for doc_id in ids] for c, ids in sampled.items()}
    terms = top_terms(texts_by_cluster)
    rows = []
    for cluster in range(len(centroids)):
        sample = texts_by_cluster.get(cluster, [])
        rows.append({
            "clustering_id": clustering_id, "cluster_id": cluster, "embedder_id": embedder_id, "method": params.method,
            "size": int(sizes[cluster]), "centroid": centroids[cluster].tolist(),
            "mean": means[cluster].tolist(), "spread": spreads[cluster].tolist(),
            "top_terms": json.dumps(terms.get(cluster, [])),
            "sample_lines": json.dumps([first_line(t) for t in sample[:3]]),
            "params": json.dumps(params.__dict__),
        })
    return rows


def samples_per_cluster(n_clusters: int) -> int:
    """Documents read per cluster for its top terms: 300, or 60 past 200 clusters."""
    return 300 if n_clusters <= 200 else 60


def write_clustering(store, clustering_id: str, summaries: list[dict], carry_over: bool,
                     insert_labels: Callable[[Any], None]) -> None:
    """The clustering's partition in one write: the clusters ``insert_labels(writer)`` appends (after the current
    ones when ``carry_over``), and the summaries."""
    now = utc_now()
    with store.replace_partition("clustering_id", clustering_id, ["clusters", "cluster_summaries"]) as writer:
        if carry_over:
            writer.carry_over("clusters")
        insert_labels(writer)
        writer.insert("cluster_summaries", table_frame("cluster_summaries", {
            **{k: [row[k] for row in summaries] for k in summaries[0]}, "created_at": [now] * len(summaries),
        }))


def utc_now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def labels_inserter(clustering_id: str, doc_ids: Sequence[str], assignment: ClusterAssignment) -> Callable[[Any], None]:
    """Appends an in-memory assignment's clusters, 100k rows at a time."""
    def insert(writer) -> None:
        now = utc_now()
        step = 100_000
        for start in range(0, len(doc_ids), step):
            part = slice(start, start + step)
            probabilities = assignment.probabilities[part]
            writer.insert("clusters", table_frame("clusters", {
                "doc_id": list(doc_ids[part]),
                "clustering_id": [clustering_id] * len(probabilities),
                "cluster_id": assignment.labels[part].tolist(),
                "probability": [None if math.isnan(p) else float(p) for p in probabilities],
                "joined_as_noise": [h == "noise_joined" for h in assignment.how[part]],
                "assigned_at": [now] * len(probabilities),
                "assignment": assignment.how[part],
            }))
    return insert


def with_arms(store, params: ClusteringParams, documents: int) -> tuple[ClusteringParams, list[str]]:
    """``params`` with k-means's number of arms derived from the warm-up when none is given (see the module's
    rules), and the note that says so."""
    if params.method != "kmeans" or params.n_clusters is not None:
        return params, []
    warmup = store.spent_before(1)[0]
    params = replace(params, n_clusters=arms_for(warmup or warmup_sample_size(documents)))
    return params, [f"{params.n_clusters} arms: one per {WARMUP_DOCS_PER_ARM} of the warm-up's "
                    f"{warmup or 'expected ' + str(warmup_sample_size(documents))} documents"]


def describe(params: ClusteringParams, documents: int, dimension: int, embedder_id: str) -> str:
    how = (f"{params.n_clusters} k-means arms" if params.method == "kmeans"
           else f"hdbscan, reduced to {params.dimension} dimensions")
    return f"clustering {documents:,} documents ({dimension} dimensions, embedder {embedder_id}) into {how}"


def new_clustering_id(params: ClusteringParams, embedder_id: str) -> str:
    return f"{params.method}-{embedder_id}-{datetime.now(timezone.utc).strftime('%Y%m%dT%H%M%S%f')}"


def build_clustering(store, embedder_id: str, params: ClusteringParams, log=None) -> ClusteringReport:
    """Cluster every current document that has a vector from ``embedder_id``; a new clustering_id."""
    began = time.perf_counter()
    with store.bounded_memory(LOAD_MEMORY_BYTES):  # DuckDB sorts and streams the vectors within this, spilling past it
        doc_ids, vectors = store.embedding_matrix(embedder_id)
    if not doc_ids:
        raise ValueError(f"no document has a vector from embedder {embedder_id}: materialize embeddings first")
    loaded = time.perf_counter()
    params, derived = with_arms(store, params, len(doc_ids))
    if log:
        log(describe(params, len(doc_ids), vectors.shape[1], embedder_id))
    assignment = cluster_vectors(vectors, params)
    del vectors
    assignment.notes[:0] = derived
    clustered = time.perf_counter()
    clustering_id = new_clustering_id(params, embedder_id)
    sizes = np.bincount(assignment.labels, minlength=assignment.n_clusters)
    sampled = store.cluster_samples(samples_per_cluster(assignment.n_clusters), params.seed,
                                    labels=(doc_ids, assignment.labels))
    summaries = summary_rows(store, clustering_id, embedder_id, params, sizes, assignment.centroids, assignment.means,
                             assignment.spreads, sampled)
    write_clustering(store, clustering_id, summaries, False, labels_inserter(clustering_id, doc_ids, assignment))
    done = time.perf_counter()
    return ClusteringReport(
        clustering_id, embedder_id, len(doc_ids), 0, assignment.n_clusters, dict(Counter(assignment.how)), summaries,
        assignment.notes,
        {"load_s": round(loaded - began, 3), "cluster_s": round(clustered - loaded, 3), "summaries_and_write_s": round(done - clustered, 3)},
    )


def grown_summaries(summaries: list[dict], added: np.ndarray) -> list[dict]:
    """The clustering's summaries with each cluster's size grown by the documents that joined it."""
    for row in summaries:
        row["size"] = int(row["size"] + added[row["cluster_id"]])
        row.pop("created_at", None)  # JSON columns come back as their text, written back unchanged
    return summaries


def assign_new_documents(store, clustering: dict, log=None) -> ClusteringReport:
    """Documents embedded after ``clustering`` was made join their nearest centroid; nothing else moves."""

    began = time.perf_counter()
    clustering_id, embedder_id = clustering["clustering_id"], clustering["embedder_id"]
    summaries = store.cluster_summaries(clustering_id).to_dicts()
    new_ids = store.embedded_without_cluster(clustering_id, embedder_id)
    existing = int(sum(row["size"] for row in summaries))
    if not new_ids:
        return ClusteringReport(clustering_id, embedder_id, existing, 0, len(summaries), {}, summaries, [],
                                {"assign_s": round(time.perf_counter() - began, 3)})
    if log:
        log(f"{len(new_ids):,} new documents join the nearest of {len(summaries):,} clusters of {clustering_id}")
    centroids = np.asarray([row["centroid"] for row in summaries], dtype=np.float32)
    assignment = assign_new(store.embedding_vectors(new_ids, embedder_id), centroids)
    summaries = grown_summaries(summaries, np.bincount(assignment.labels, minlength=len(summaries)))
    write_clustering(store, clustering_id, summaries, True, labels_inserter(clustering_id, new_ids, assignment))
    return ClusteringReport(clustering_id, embedder_id, existing + len(new_ids), len(new_ids), len(summaries),
                            dict(Counter(assignment.how)), summaries, [], {"assign_s": round(time.perf_counter() - began, 3)})
