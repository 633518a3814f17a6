"""Where the work inside one asset fans out: ``local`` (the asset's own process, the default) or ``ray``.

Dagster runs steps in parallel, not the work inside one step; the two steps whose work is wide go to Ray when the
``compute`` resource says ``ray`` (launched through dagster-ray: :mod:`equal_dagster.resources.compute`):

* ``embeddings``: the crawl's documents without a vector are staged as Parquet files (DuckDB streams them out of the
  store), Ray Data reads them, an actor pool of embedders (``workers`` actors, each with ``num_cpus``/``num_gpus``)
  embeds them with ``map_batches`` and writes each batch's vectors as a Parquet shard beside them; only the shards'
  paths come back to the asset, which has DuckDB load them ``WRITE_ROWS`` at a time (each load committed, as
  locally: an interrupted run resumes where it stopped).
* a round's extraction calls (the warm-up's too): the requests the cache cannot answer go through Ray Data LLM
  (:mod:`equal_dagster.core.extraction.backends.ray_http`); prompts, parsing, the cache and the ledger are the code
  of the local path.

What stays on the Dagster process: the bandit's choice (rounds are sequential), the store's writes, the reward. On a
cluster, the staging folder (``scratch_dir``) must be one every Ray node can read and write (a shared disk; object
storage is not provided). It holds the staged documents and the vector shards not loaded yet: the actors may run
ahead of the loading, so give it room for the crawl's text and its vectors (4 bytes a dimension a document).

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
from equal_dagster.core.store import Store

ENGINES = ("local", "ray")
WRITE_ROWS = 16_384  # vectors written per commit (about 25 MB at 384 dimensions)
STORE_MEMORY_BYTES = 192 * 2**20  # DuckDB's share of the driver while it stages and loads (it spills past it)
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
    """One actor of the pool: loads the embedder once, then embeds batch after batch. Each batch's vectors go to a
    Parquet shard of their own in ``shards`` (written under a temporary name, then renamed: a shard is whole or
    absent), and only the shard's path and row count go back to the driver."""

    def __init__(self, load: Callable[[], TextEmbedder], shards: str):
        self.embedder = load()
        self.shards = shards

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import pyarrow as pa
        import pyarrow.parquet as pq

        vectors = np.asarray(self.embedder.encode([str(t) for t in batch["text"]]), dtype=np.float32)
        table = pa.table({"doc_id": pa.array([str(d) for d in batch["doc_id"]], pa.string()),
                          "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), vectors.shape[1])})
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
    staging = Path(settings.scratch_dir or tempfile.gettempdir()) / f"equal-embed-{uuid.uuid4().hex[:12]}"
    shards_dir = staging / "vectors"
    done, last = 0, began
    shards: list[str] = []
    rows = 0

    def write() -> None:  # the shards written so far are loaded into the store in one commit, then deleted
        nonlocal done, last, rows
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
                if total <= SPLIT_BELOW:  # a small crawl is one file: split it so that every actor gets work
                    documents = documents.repartition(max(2 * settings.workers, math.ceil(total / settings.batch_size)))
                dataset = documents.map_batches(
                    _EmbedWorker, fn_constructor_args=(load, str(shards_dir)), batch_size=settings.batch_size,
                    batch_format="numpy", compute=ray.data.ActorPoolStrategy(size=settings.workers),
                    num_cpus=settings.num_cpus, num_gpus=settings.num_gpus)
                for written in dataset.iter_rows():
                    shards.append(str(written["shard"]))
                    rows += int(written["rows"])
                    if rows >= WRITE_ROWS:
                        write()
                if shards:
                    write()
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return EmbedReport(crawl_id, embedder_id, done, already, stale, time.perf_counter() - began)
