"""The document embedder as a Dagster resource: the base model, and the tuned one once `embedder` made it."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Optional

import dagster as dg
from pydantic import Field

from equal_dagster.core.embedding import DEFAULT_MODEL, Embedder, embedder_loader

CURRENT = "current.json"


class EmbedderResource(dg.ConfigurableResource):
    """``model`` is the base embedder (a folder, ``all-MiniLM-L6-v2`` from the package, or a hub id when online).
    The ``embedder`` asset writes the embedder to use from then on into ``<embedders_dir>/current.json``."""

    model: str = Field(DEFAULT_MODEL, description="base embedder: folder, packaged all-MiniLM-L6-v2, or hub id")
    embedders_dir: str = Field(description="where tuned embedders are saved ($EQUAL_HOME/embedders)")
    device: str = Field("cpu", description="cpu | cuda | auto")
    batch_size: int = Field(64, description="texts per forward pass")
    max_seq_length: Optional[int] = Field(None, description="cut texts at this many tokens (default: the model's)")

    def load_base(self) -> Embedder:
        return Embedder(self.model, device=self.device, batch_size=self.batch_size, max_seq_length=self.max_seq_length)

    def current_location(self) -> tuple[str, str]:
        """(model location, why): the tuned embedder the `embedder` asset chose, else the base model."""
        current = Path(self.embedders_dir) / CURRENT
        if current.exists():
            chosen = json.loads(current.read_text())
            return chosen["location"], chosen.get("reason", "chosen by the embedder asset")
        return self.model, "no embedder materialized yet: the base model"

    def load_current(self) -> Embedder:
        location, _ = self.current_location()
        return Embedder(location, device=self.device, batch_size=self.batch_size, max_seq_length=self.max_seq_length)

    def current_loader(self) -> Callable[[], Embedder]:
        """What builds the current embedder in another process (a Ray worker): it pickles, the model does not."""
        return embedder_loader(self.current_spec())

    def current_spec(self) -> dict:
        """The current embedder's location and settings as plain values (what a Ray job builds it from)."""
        location, _ = self.current_location()
        return {"location": location, "device": self.device, "batch_size": self.batch_size,
                "max_seq_length": self.max_seq_length}

    def set_current(self, location: str, embedder_id: str, reason: str) -> None:
        folder = Path(self.embedders_dir)
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / (CURRENT + ".tmp")
        tmp.write_text(json.dumps({"location": location, "embedder_id": embedder_id, "reason": reason}, indent=1))
        tmp.replace(folder / CURRENT)
