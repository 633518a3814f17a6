"""What every model backend implements: turn a batch of chat requests into raw generations.

A backend knows nothing about documents, prompts, caching or parsing; :class:`~..extractor.LLMExtractor`
does those, identically for every backend. A backend never raises for one request: a failed request comes
back as a :class:`Generation` with status ``backend_error`` or ``timeout`` and the error text.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol


class BackendUnavailable(RuntimeError):
    """A backend that cannot run here (a missing optional package, no GPU, a bad model path), said clearly."""


@dataclass(frozen=True)
class SamplingSettings:
    """Sampling parameters; they are part of every cache key."""

    temperature: float = 0.0
    top_p: float = 1.0
    max_tokens: int = 1024
    seed: int | None = 0

    def as_json(self) -> dict[str, Any]:
        return {"temperature": self.temperature, "top_p": self.top_p, "max_tokens": self.max_tokens, "seed": self.seed}


@dataclass(frozen=True)
class GenerationRequest:
    messages: list[dict[str, str]]
    json_schema: dict[str, Any] | None = None
    schema_name: str = "response"


@dataclass
class Generation:
    """A backend's answer to one request. ``text`` is None unless status is ``ok``."""

    status: str  # ok | backend_error | timeout (transient) | rejected (permanent): see results.TRANSIENT_FAILURES
    text: str | None = None
    error: str | None = None
    tokens_in: int | None = None
    tokens_out: int | None = None
    latency_s: float = 0.0
    retries: int = 0
    tokens_counted_by: str = "backend"  # backend (usage the server reported) | tokenizer | estimate


class ModelBackend(Protocol):
    name: str
    model: str | None
    # How many requests the extractor hands over at once (None: the whole round in one batch). The extractor
    # saves responses to the cache after every batch; a backend that also has ``generate_stream`` (an iterator of
    # lists of (request index, Generation) as they arrive) gets each answer cached as it arrives, so a crash repays
    # at most the requests in flight.
    batch_size: int | None

    def generate(self, requests: Sequence[GenerationRequest], sampling: SamplingSettings) -> list[Generation]: ...

    def close(self) -> None: ...


def in_order(n: int, stream: Iterable[list[tuple[int, Generation]]]) -> list[Generation]:
    """The ``n`` generations a ``generate_stream`` hands over as they arrive, in the requests' order."""
    out: list[Generation | None] = [None] * n
    for arrived in stream:
        for index, generation in arrived:
            out[index] = generation
    return out  # type: ignore[return-value]


@dataclass
class TokenCounter:
    """Counts tokens when a backend does not report them: with a Hugging Face tokenizer when one is given and
    loads offline, else an estimate (words and punctuation marks, which tracks BPE counts within ~30%)."""

    tokenizer_path: str | None = None
    _tokenizer: Any = field(default=None, init=False, repr=False)
    _tried: bool = field(default=False, init=False, repr=False)

    @property
    def method(self) -> str:
        return "tokenizer" if self._load() is not None else "estimate"

    def _load(self) -> Any:
        if not self._tried:
            self._tried = True
            if self.tokenizer_path:
                try:
                    from transformers import AutoTokenizer

                    self._tokenizer = AutoTokenizer.from_pretrained(self.tokenizer_path, local_files_only=True)
                except Exception:  # noqa: BLE001 - an unloadable tokenizer falls back to the estimate
                    self._tokenizer = None
        return self._tokenizer

    def count(self, text: str) -> int:
        tokenizer = self._load()
        if tokenizer is not None:
            return len(tokenizer.encode(text, add_special_tokens=False))
        return len(_ESTIMATE.findall(text))

    def count_messages(self, messages: Sequence[dict[str, str]]) -> int:
        return sum(self.count(m["content"]) + 4 for m in messages)


_ESTIMATE = re.compile(r"\w+|[^\w\s]")
