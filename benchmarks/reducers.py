"""PCA or UMAP before HDBSCAN (issue 4: "PCA, or UMAP where it proves better on our data"): cluster agreement with
the demo's generated kinds and time, for both reducers, on the base all-MiniLM-L6-v2 vectors of the demo corpus;
then UMAP's own time on 100k jittered copies of those vectors (the size of the clustering goal: 100k in 120 s).

UMAP is not a dependency of the project; this needs ``pip install umap-learn`` in the venv. UMAP runs seeded
(reproducible, hence single-threaded), with cosine distance and min_dist 0, as its docs advise for clustering.

    .venv/bin/python benchmarks/reducers.py [--umap-size 100000]
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

SETTINGS = [  # (reducer, UMAP n_neighbors, HDBSCAN min_cluster_size)
    ("pca", None, 15), ("pca", None, 50), ("pca", None, 100),
    ("umap", 15, 15), ("umap", 50, 15), ("umap", 50, 50), ("umap", 50, 100),
]


def umap_reducer(n_neighbors: int):
    from umap import UMAP

    def reduce(vectors: np.ndarray, dimension: int, seed: int) -> np.ndarray:
        return UMAP(n_components=dimension, n_neighbors=n_neighbors, min_dist=0.0, metric="cosine",
                         random_state=seed).fit_transform(vectors)

    return reduce


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--umap-size", type=int, default=100_000)
    args = parser.parse_args()
    try:
        from umap import UMAP  # noqa: F401
    except ImportError:
        sys.exit("benchmarks/reducers.py needs umap-learn: .venv/bin/pip install umap-learn")

    from embedder_recall import warm_up_demo

    import equal_dagster.core.clustering as clustering
    from equal_dagster.core.embedding import Embedder
    from equal_dagster.core.store import Store
    from equal_dagster.demo.corpus import kinds_by_doc_id

    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        with Store.open(warm_up_demo(home), read_only=True) as store:
            documents = store.documents()
        kind_of = kinds_by_doc_id(home / "crawls")
    kinds = [kind_of[d] for d in documents["doc_id"]]
    vectors = Embedder().encode(documents["text"].to_list())
    pca = clustering.reduce_dimensions
    print(f"{len(kinds):,} demo documents, {len(set(kinds))} generated kinds; 5 dimensions")
    print("| reducer | UMAP n_neighbors | min_cluster_size | clusters | adjusted Rand index | seconds |")
    print("|---|---:|---:|---:|---:|---:|")
    for reducer, n_neighbors, min_cluster_size in SETTINGS:
        clustering.reduce_dimensions = pca if reducer == "pca" else umap_reducer(n_neighbors)
        began = time.perf_counter()
        result = clustering.cluster_vectors(vectors, clustering.ClusteringParams(min_cluster_size=min_cluster_size))
        seconds = time.perf_counter() - began
        ari = clustering.adjusted_rand_index(kinds, result.labels)
        print(f"| {reducer} | {n_neighbors or '-'} | {min_cluster_size} | {result.n_clusters} | {ari:.3f} | "
              f"{seconds:.1f} |", flush=True)
    clustering.reduce_dimensions = pca

    rng = np.random.default_rng(0)
    copies = vectors[np.arange(args.umap_size) % len(vectors)]
    copies = copies + rng.normal(scale=0.02, size=copies.shape).astype(np.float32)
    copies /= np.linalg.norm(copies, axis=1, keepdims=True)
    for name, reduce in (("pca", pca), ("umap, n_neighbors 50", umap_reducer(50))):
        began = time.perf_counter()
        reduce(copies, 5, 0)
        print(f"{name}: {args.umap_size:,} vectors reduced to 5 dimensions in {time.perf_counter() - began:.1f} s "
              f"(process peak RSS so far {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024:,} MiB)",
              flush=True)


if __name__ == "__main__":
    main()
