"""The crawl folder as a Dagster resource: where crawls land and how their rows are read."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
from pydantic import Field

from equal_dagster.core.corpus import CrawlFormat, is_inside
from equal_dagster.core.crawls import CRAWL_NAME


class CrawlFolder(dg.ConfigurableResource):
    """Each entry of ``path`` (a subfolder, or a JSONL / JSONL.gz / Parquet / WARC / WET / HTML file) is one crawl."""

    path: str = Field(description="The folder new crawls land in ($EQUAL_CRAWL_DIR, default $EQUAL_HOME/crawls).")
    text_field: str = Field(default="text", description="The field holding a document's text.")
    id_field: str | None = Field(default="id", description="The field holding a document's id; None to derive ids.")
    url_field: str | None = Field(default="url", description="The field holding a document's URL.")
    max_doc_bytes: int = Field(default=1_000_000, gt=0, description="Rows larger than this are quarantined as too_large.")
    languages: list[str] = Field(
        default=[], description="ISO 639-1 codes of the languages to keep (e.g. ['en']); other documents are "
        "quarantined as wrong_language. Empty: keep every language (each document's language is stored anyway).")
    ingest_memory_mb: int = Field(
        default=0, description="DuckDB's memory cap while a crawl is ingested, in MiB; 0: sized from the batch and "
        "max_doc_bytes (at least 64 MiB)."
    )
    settle_seconds: float = Field(
        default=10.0, description="A new crawl is picked up once nothing in it has changed for this long."
    )

    def root(self) -> Path:
        return Path(self.path).absolute()

    def crawl_format(self) -> CrawlFormat:
        return CrawlFormat(self.text_field, self.id_field, self.url_field, self.max_doc_bytes,
                           tuple(code.strip().lower() for code in self.languages if code.strip()))

    def ingest_memory_limit(self) -> int | None:
        """Bytes, or None for the size core.corpus.ingest_memory_limit derives."""
        return self.ingest_memory_mb * 2**20 if self.ingest_memory_mb > 0 else None

    def crawl_path(self, crawl_id: str) -> Path:
        """The crawl's path, refusing a name that could leave the crawl folder."""
        if not CRAWL_NAME.match(crawl_id):
            raise dg.Failure(f"crawl {crawl_id!r}: not a crawl name (letters, digits, '.', '_', '-', spaces)")
        path = self.root() / crawl_id
        if not path.exists():
            raise dg.Failure(f"crawl {crawl_id!r}: {path} does not exist (crawl folder {self.root()})")
        if not is_inside(path, self.root()):
            raise dg.Failure(f"crawl {crawl_id!r}: {path} resolves to {path.resolve()}, outside {self.root()}")
        return path
