"""Where the work inside one asset fans out: ``local`` (the asset's own process, the default) or ``ray``.

Dagster runs steps in parallel, not the work inside one step; the two steps whose work is wide go to Ray when the
``compute`` resource says ``ray`` (launched through dagster-ray: :mod:`equal_dagster.resources.compute`):

* ``embeddings``: the crawl's documents without a vector are staged as Parquet files (DuckDB streams them out of the
  store), Ray Data reads them, an actor pool of embedders (``workers`` actors, each with ``num_cpus``/``num_gpus``)
  embeds them with ``map_batches``, and the vectors stream back to the asset, which writes them batch by batch
  (each batch committed, as locally: an interrupted run resumes where it stopped).
* a round's extraction calls (the warm-up's too): the requests the cache cannot answer go through Ray Data LLM
  (:mod:`equal_dagster.core.extraction.backends.ray_http`); prompts, parsing, the cache and the ledger are the code
  of the local path.

What stays on the Dagster process: the bandit's choice (rounds are sequential), the store's writes, the reward. On a
cluster, the staging folder (``scratch_dir``) must be one every Ray node can read (a shared disk; object storage is
not provided).

Rules:

* Actors take fractional CPUs by default (``num_cpus`` 0.5): whole-CPU actor pools deadlock on a 2-core machine,
  where Ray Data also needs a CPU for reading.
* The run's process holds little whatever the crawl's size: DuckDB stages the documents and writes the vectors
  within ``STORE_MEMORY_BYTES`` (it spills past it), and the vectors are written ``WRITE_ROWS`` at a time.
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
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from equal_dagster.core.embedding import EmbedReport
from equal_dagster.core.store import Store, table_frame

ENGINES = ("local", "ray")
WRITE_ROWS = 16_384  # vectors written per commit (about 25 MB at 384 dimensions)
STORE_MEMORY_BYTES = 512 * 2**20  # DuckDB's share of the driver while it stages and writes (it spills past it)
SPLIT_BELOW = 100_000  # staged documents below which the one staged file is split in memory (above: many files)
# What a Ray worker needs from the driver's environment: offline hubs, the BLAS fix, the console's quiet.
FORWARDED_ENV = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "OPENBLAS_CORETYPE", "TQDM_DISABLE", "PYTHONPATH")


class TextEmbedder(Protocol):
    embedder_id: str

    def encode(self, texts: list[str]) -> np.ndarray: ...


@dataclass(frozen=True)
class RaySettings:
    """How the work is spread over Ray (each default written here, once)."""

    address: str | None = None  # a running cluster ("auto", "ray://head:10001"); None: a local Ray in this process
    workers: int = 2  # actors per pool (on a GPU cluster: one per GPU)
    num_cpus: float = 0.5  # per actor: fractional, see the module's rules
    num_gpus: float = 0.0  # per actor
    batch_size: int = 512  # documents per embedding batch (map_batches)
    scratch_dir: str | None = None  # staging folder for documents (default: the system's temporary folder)

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ValueError(f"the Ray pool needs at least 1 worker, not {self.workers}")
        if self.num_cpus <= 0 and self.num_gpus <= 0:
            raise ValueError("each Ray worker needs some CPU or GPU (num_cpus or num_gpus above 0)")


def ray_init_options(settings: RaySettings) -> dict[str, Any]:
    """The arguments for ``ray.init`` (dagster-ray's ``ray_init_options``): quiet, no dashboard, and the driver's
    environment variables that workers need (a local Ray's workers run the driver's own Python)."""
    env = {name: os.environ[name] for name in FORWARDED_ENV if os.environ.get(name)}
    options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": True, "ignore_reinit_error": True,
                               "runtime_env": {"env_vars": env}}
    if settings.address is None:
        options["configure_logging"] = False
    return options


def quiet_ray_data() -> None:
    """No progress bars from Ray Data (the asset logs its own progress)."""
    import ray.data

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False


@contextmanager
def ray_session(settings: RaySettings) -> Iterator[None]:
    """Ray connected for the block: `equal run` and `equal rounds` hold one for all their runs, as do scripts and
    benchmarks; a run with no Ray yet (from the UI) connects through the ``compute`` resource, with dagster-ray. A
    Ray this block started is shut down at its end; one already running is left running."""
    import ray

    started = not ray.is_initialized()
    if started:
        ray.init(address=settings.address, **ray_init_options(settings))
    quiet_ray_data()
    try:
        yield
    finally:
        if started:
            ray.shutdown()


class _EmbedWorker:
    """One actor of the pool: loads the embedder once, then embeds batch after batch."""

    def __init__(self, load: Callable[[], TextEmbedder]):
        self.embedder = load()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        vectors = self.embedder.encode([str(t) for t in batch["text"]])
        return {"doc_id": batch["doc_id"], "vector": np.asarray(vectors, dtype=np.float32)}


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
    staging = Path(settings.scratch_dir or tempfile.gettempdir()) / f"equal-embed-{uuid.uuid4().hex[:12]}"
    done, last = 0, began
    ids: list[np.ndarray] = []
    vectors: list[np.ndarray] = []

    def write() -> None:  # the vectors come back a block at a time; they are written WRITE_ROWS at a time
        nonlocal done, last
        batch_ids, batch_vectors = np.concatenate(ids), np.concatenate(vectors)
        ids.clear()
        vectors.clear()
        n = len(batch_ids)
        now = datetime.now(timezone.utc).replace(tzinfo=None)
        store.insert_embeddings(table_frame("embeddings", {
            "doc_id": [str(d) for d in batch_ids], "embedder_id": [embedder_id] * n, "crawl_id": [crawl_id] * n,
            "vector": list(batch_vectors), "embedded_at": [now] * n,
        }))
        done += n
        tick = time.perf_counter()
        if progress and (tick - last >= progress_every_s or done == total):
            progress(done, total, done / (tick - began))
            last = tick

    try:
        with store.bounded_memory(STORE_MEMORY_BYTES):
            total = store.stage_texts_without_embedding(crawl_id, embedder_id, staging, file_mb=file_mb)
            if total:
                documents = ray.data.read_parquet(str(staging))
                if total <= SPLIT_BELOW:  # a small crawl is one file: split it so that every actor gets work
                    documents = documents.repartition(max(2 * settings.workers, math.ceil(total / settings.batch_size)))
                dataset = documents.map_batches(
                    _EmbedWorker, fn_constructor_args=(load,), batch_size=settings.batch_size, batch_format="numpy",
                    compute=ray.data.ActorPoolStrategy(size=settings.workers), num_cpus=settings.num_cpus,
                    num_gpus=settings.num_gpus)
                for block in dataset.iter_batches(batch_size=None, batch_format="numpy"):
                    ids.append(block["doc_id"])
                    vectors.append(block["vector"])
                    if sum(len(i) for i in ids) >= WRITE_ROWS:
                        write()
                if ids:
                    write()
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return EmbedReport(crawl_id, embedder_id, done, already, stale, time.perf_counter() - began)
