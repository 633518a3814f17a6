"""The LLM response cache: a call already paid for is never paid again.

The key is the SHA-256 of the canonical JSON of everything that decides a response: backend, model, prompt
version, the rendered messages and the sampling parameters. A response is cached as soon as the backend returns
it (parseable or not: a garbage answer re-parsed gives the same ``parse_error``, and paying for it again would
not change it). Failed calls (``backend_error``, ``timeout``) are not cached, so a later run retries them.
The store keeps the cache in its ``llm_cache`` table (:class:`StoreResponseCache`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from equal_dagster.core.store import table_frame


def cache_key(
    backend: str, model: str | None, prompt_version: str, messages: Sequence[dict[str, str]], sampling: dict[str, Any]
) -> str:
    payload = {
        "backend": backend,
        "model": model,
        "prompt_version": prompt_version,
        "messages": list(messages),
        "sampling": sampling,
    }
    canonical = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class CachedResponse:
    cache_key: str
    backend: str
    model: str | None
    prompt_version: str
    response: str
    tokens_in: int | None
    tokens_out: int | None
    latency_s: float | None = None


class ResponseCache(Protocol):
    def get_many(self, keys: Sequence[str]) -> dict[str, CachedResponse]: ...

    def put_many(self, responses: Iterable[CachedResponse]) -> None: ...


class StoreResponseCache:
    """The cache in the store's ``llm_cache`` table (the store holds the SQL and speaks DataFrames)."""

    def __init__(self, store: Any):
        self.store = store

    def get_many(self, keys: Sequence[str]) -> dict[str, CachedResponse]:
        if not keys:
            return {}
        return {row["cache_key"]: CachedResponse(**row) for row in self.store.cached_responses(keys).iter_rows(named=True)}

    def put_many(self, responses: Iterable[CachedResponse]) -> None:
        rows = list(responses)
        if rows:
            self.store.save_responses(table_frame("llm_cache", {f: [getattr(r, f) for r in rows] for f in _FIELDS}))


_FIELDS = tuple(CachedResponse.__dataclass_fields__)


class InMemoryResponseCache:
    """A dict; for notebooks and one-off runs that keep no store."""

    def __init__(self) -> None:
        self.entries: dict[str, CachedResponse] = {}

    def get_many(self, keys: Sequence[str]) -> dict[str, CachedResponse]:
        return {k: self.entries[k] for k in keys if k in self.entries}

    def put_many(self, responses: Iterable[CachedResponse]) -> None:
        for response in responses:
            self.entries.setdefault(response.cache_key, response)
