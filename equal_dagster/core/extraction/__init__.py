"""QA extraction: one interface (``extract(documents) -> results``), four backends, versioned prompts, an LLM
response cache and a ledger. See :mod:`.extractor` for the flow and :mod:`.config` for choosing a backend."""

from equal_dagster.core.extraction.cache import InMemoryResponseCache, StoreResponseCache, cache_key
from equal_dagster.core.extraction.config import BACKENDS, ExtractionConfig, build_backend, build_extractor
from equal_dagster.core.extraction.extractor import STRATEGIES, ExtractionRun, LLMExtractor, RuleExtractor
from equal_dagster.core.extraction.results import STATUSES, Document, ExtractionResult, QAPair

__all__ = [
    "BACKENDS", "STATUSES", "STRATEGIES", "Document", "ExtractionConfig", "ExtractionResult", "ExtractionRun",
    "InMemoryResponseCache", "LLMExtractor", "QAPair", "RuleExtractor", "StoreResponseCache", "build_backend",
    "build_extractor", "cache_key",
]
