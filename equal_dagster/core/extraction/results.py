"""What an extraction produces: one :class:`ExtractionResult` per document, holding its QA pairs and the ledger
entry that says how they were made (backend, model, prompt version, tokens, latency, cache, retries)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Status = Literal["ok", "no_qa", "parse_error", "backend_error", "timeout", "rejected", "gave_up"]
STATUSES: tuple[str, ...] = ("ok", "no_qa", "parse_error", "backend_error", "timeout", "rejected", "gave_up")
# Failures, by what a later round may do about them:
# * transient (``backend_error``: HTTP 429 or 5xx or a lost connection, after the backend's own retries; ``timeout``):
#   the document may be drawn again, up to a limit (:data:`equal_dagster.core.rounds.MAX_ATTEMPTS`), then ``gave_up``;
# * permanent (``rejected``: an HTTP 4xx such as a context too long, a completion that is not JSON or has no choices;
#   ``parse_error``: an answer that holds no valid JSON): the same request would fail the same way, so the document is
#   not drawn again.
TRANSIENT_FAILURES: tuple[str, ...] = ("backend_error", "timeout")
FAILURES: tuple[str, ...] = ("parse_error", "backend_error", "timeout", "rejected", "gave_up")
# At most this many QA pairs are kept from one document (the first ones): a runaway answer (a server that echoes the
# document, a page of thousands of lines) cannot own the dataset. Drop reason ``per_document_cap``.
MAX_PAIRS_PER_DOCUMENT = 50


def why_no_pairs(by_status: dict[str, int], backends: set[str]) -> str | None:
    """The likely cause, in one sentence, when ``by_status`` (documents per status) holds no ``ok`` document; None
    when pairs were found. ``backends``: the backends the documents went to."""
    documents = sum(by_status.values())
    if by_status.get("ok", 0):
        return None
    if documents == 0:
        return "no documents were drawn: the budget is spent or every candidate was extracted already"
    failed = {s: n for s, n in by_status.items() if s in FAILURES and n}
    if sum(failed.values()) * 2 >= documents:
        counts = ", ".join(f"{n} {s}" for s, n in sorted(failed.items()))
        return (f"{sum(failed.values())} of the {documents} documents failed ({counts}): see the extractions' errors "
                "(`equal lineage`, or the extractions table) and check the LLM backend")
    if backends <= {"rules"}:
        return (f"rules found no question/answer structure in the {documents} documents drawn: these documents carry "
                "no Q&A of their own; configure an LLM backend (EQUAL_LLM_BACKEND) to write pairs from their text")
    return (f"the model found no QA pairs in the {documents} documents drawn ({by_status.get('no_qa', 0)} no_qa): the "
            "documents may not hold what the reference set asks for; check the prompt and the model on a few of them")


@dataclass(frozen=True)
class Document:
    """A document to extract from: the store's doc_id and its text; for a web page, also its raw HTML (the
    ``rules`` backend reads the Q&A the page marks up)."""

    doc_id: str
    text: str
    html: str | None = None


@dataclass(frozen=True)
class QAPair:
    question: str
    answer: str


def cap_pairs(pairs: list[QAPair], limit: int | None) -> tuple[list[QAPair], int]:
    """The first ``limit`` pairs (None: all) and how many were dropped (reason ``per_document_cap``)."""
    if limit is None or len(pairs) <= limit:
        return pairs, 0
    return pairs[:limit], len(pairs) - limit


@dataclass(frozen=True)
class CallRecord:
    """One call to a model made for a document (or found in the cache instead)."""

    prompt_version: str
    cache_key: str
    cache_hit: bool
    status: str
    retries: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    latency_s: float = 0.0
    error: str | None = None
    tokens_counted_by: str = "backend"  # backend | tokenizer | estimate | cache (the paid call's figures)

    def as_json(self) -> dict:
        return {
            "prompt_version": self.prompt_version,
            "cache_key": self.cache_key,
            "cache_hit": self.cache_hit,
            "status": self.status,
            "retries": self.retries,
            "tokens_in": self.tokens_in,
            "tokens_out": self.tokens_out,
            "latency_s": round(self.latency_s, 6),
            "error": self.error,
            "tokens_counted_by": self.tokens_counted_by,
        }


@dataclass
class ExtractionResult:
    """The outcome for one document. ``status`` is one of :data:`STATUSES`; ``no_qa`` is a valid outcome (the
    document holds no QA pair, or a selection rule left it out: ``error`` then says which)."""

    doc_id: str
    status: Status
    qa_pairs: list[QAPair] = field(default_factory=list)
    error: str | None = None
    backend: str = ""
    model: str | None = None
    strategy: str = ""
    prompt_version: str | None = None
    cache_key: str | None = None
    calls: list[CallRecord] = field(default_factory=list)
    tokens_counted_by: str | None = None

    @property
    def tokens_in(self) -> int:
        return sum(c.tokens_in for c in self.calls)

    @property
    def tokens_out(self) -> int:
        return sum(c.tokens_out for c in self.calls)

    @property
    def latency_s(self) -> float:
        return sum(c.latency_s for c in self.calls)

    @property
    def retries(self) -> int:
        return sum(c.retries for c in self.calls)

    @property
    def cache_hit(self) -> bool:
        """True when every call this document needed was answered from the cache (no backend call made)."""
        return bool(self.calls) and all(c.cache_hit for c in self.calls)

    @property
    def backend_calls(self) -> int:
        return sum(1 for c in self.calls if not c.cache_hit)
