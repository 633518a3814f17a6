"""``extract(documents) -> results``: the one interface every extraction backend sits behind.

:class:`LLMExtractor` drives a model backend (vllm, openai, transformers) through a strategy:

* ``equal`` (EQUAL, arXiv 2505.12250, section 3.1): one call per document with the ``equal-qa`` prompt, which
  asks for self-contained QA pairs with full worked answers, or none. With ``refine``, a second call per
  document that yielded pairs fixes their format and fills missing steps (``equal-refine``, as EQUAL and
  MAmmoTH2 do); a refine call that fails leaves the first pairs in place.
* ``reinstruct`` (REInstruct, arXiv 2408.10663): the text-selection rules pick documents
  (:mod:`.reinstruct`); a ``reinstruct-reverse`` call writes the instruction each selected text answers; a
  ``reinstruct-rewrite`` call answers that instruction from the text; the post-filter drops bad pairs.

For every call: render the versioned prompt, compute the cache key, answer from the cache when it can, send
only the misses to the backend, save each answer to the cache as it arrives (a backend with ``generate_stream``;
else after each batch), parse. Two caps keep one runaway answer from owning the run: an answer is cut to
:data:`RESPONSE_CHARS_PER_TOKEN` characters per token of ``max_tokens`` before it is cached or parsed (a server that
ignores ``max_tokens``; counter ``responses_truncated``), and at most ``max_pairs_per_document`` pairs are kept per
document (:data:`~.results.MAX_PAIRS_PER_DOCUMENT`; counter ``dropped_per_document_cap``).
Before any call, a web page that carries its own Q&A (schema.org markup, or headings and terms that ask a question,
:mod:`.html_qa`) is harvested by the rules instead (``harvest_pages``; counter ``harvested_without_llm``): its
pairs cost nothing, and the ledger shows the ``rules`` backend for it.
:class:`RuleExtractor` is the ``rules`` backend: no model, no calls (:mod:`.rules`).

Counters (kept, dropped and why) are returned with the results in :class:`ExtractionRun`.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from equal_dagster.core.extraction.backends.base import Generation, GenerationRequest, ModelBackend, SamplingSettings
from equal_dagster.core.extraction.cache import CachedResponse, ResponseCache, cache_key
from equal_dagster.core.extraction.parsing import SCHEMAS, ParsedResponse, parse_response
from equal_dagster.core.extraction.prompts import Prompt, load_prompt
from equal_dagster.core.extraction.reinstruct import ReinstructRules, post_filter, select_text
from equal_dagster.core.extraction.results import (
    FAILURES,
    MAX_PAIRS_PER_DOCUMENT,
    STATUSES,
    CallRecord,
    Document,
    ExtractionResult,
    QAPair,
    cap_pairs,
    why_no_pairs,
)
from equal_dagster.core.extraction.rules import PAGE_RULES, RULES_VERSION, harvest

STRATEGIES = ("equal", "reinstruct")
RESPONSE_CHARS_PER_TOKEN = 16  # a token is rarely more than 16 characters: longer answers ignored max_tokens
Log = Callable[[str], None]


@dataclass
class ExtractionRun:
    """The results of one ``extract`` call, one per document in input order, with the run's counters."""

    results: list[ExtractionResult]
    counters: Counter = field(default_factory=Counter)
    elapsed_s: float = 0.0

    def totals(self) -> dict[str, Any]:
        calls = [c for r in self.results for c in r.calls]
        paid = [c for c in calls if not c.cache_hit]
        by_status = Counter(r.status for r in self.results)
        return {
            "documents": len(self.results),
            "qa_pairs": sum(len(r.qa_pairs) for r in self.results),
            "status": {s: by_status.get(s, 0) for s in STATUSES},
            "failures": {s: by_status.get(s, 0) for s in FAILURES},
            "calls": len(calls),
            "backend_calls": len(paid),
            "cache_hits": len(calls) - len(paid),
            "retries": sum(c.retries for c in calls),
            "tokens_in": sum(c.tokens_in for c in paid),
            "tokens_out": sum(c.tokens_out for c in paid),
            "tokens_in_cached": sum(c.tokens_in for c in calls if c.cache_hit),
            "tokens_out_cached": sum(c.tokens_out for c in calls if c.cache_hit),
            "backend_seconds": round(sum(c.latency_s for c in paid), 3),
            "elapsed_s": round(self.elapsed_s, 3),
            "documents_per_second": round(len(self.results) / self.elapsed_s, 1) if self.elapsed_s > 0 else None,
            "counters": dict(sorted(self.counters.items())),
            "why_no_pairs": why_no_pairs(dict(by_status), {r.backend for r in self.results}),
        }


class _ProgressLog:
    def __init__(self, log: Log | None, what: str, total: int, every_s: float = 5.0):
        self.log, self.what, self.total, self.every_s = log, what, total, every_s
        self.start = self.last = time.perf_counter()

    def update(self, done: int, force: bool = False) -> None:
        now = time.perf_counter()
        if self.log is None or (not force and now - self.last < self.every_s):
            return
        self.last = now
        rate = done / (now - self.start) if now > self.start else 0.0
        self.log(f"{self.what}: {done:,}/{self.total:,} ({rate:,.1f}/s)")


class LLMExtractor:
    """Extraction through a model backend, with prompts, cache, parsing and a strategy (see the module doc)."""

    def __init__(
        self,
        backend: ModelBackend,
        cache: ResponseCache,
        *,
        strategy: str = "equal",
        refine: bool = False,
        sampling: SamplingSettings = SamplingSettings(),
        prompt_dir: str | None = None,
        reinstruct_rules: ReinstructRules = ReinstructRules(),
        max_pairs_per_document: int | None = MAX_PAIRS_PER_DOCUMENT,
        harvest_pages: bool = True,
        log: Log | None = None,
    ):
        if strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {strategy!r}: choose one of {', '.join(STRATEGIES)}")
        self.harvest_pages = harvest_pages
        self.backend, self.cache, self.strategy, self.refine = backend, cache, strategy, refine
        self.sampling, self.reinstruct_rules, self.log = sampling, reinstruct_rules, log
        self.max_pairs_per_document = max_pairs_per_document
        self.max_response_chars = RESPONSE_CHARS_PER_TOKEN * sampling.max_tokens
        if strategy == "equal":
            self.prompts = [load_prompt("equal-qa", prompt_dir=prompt_dir)]
            if refine:
                self.prompts.append(load_prompt("equal-refine", prompt_dir=prompt_dir))
        else:
            self.prompts = [load_prompt("reinstruct-reverse", prompt_dir=prompt_dir),
                            load_prompt("reinstruct-rewrite", prompt_dir=prompt_dir)]

    @property
    def prompt_version(self) -> str:
        return "+".join(p.version_id for p in self.prompts)

    # -- calls -----------------------------------------------------------------------------------------
    def _call(self, prompt: Prompt, inputs: Sequence[dict[str, str]], counters: Counter) -> list[tuple[CallRecord, ParsedResponse]]:
        """One call per input (rendered with ``prompt``): from the cache when it has it, else from the backend."""
        sampling = self.sampling.as_json()
        messages = [prompt.render(**values) for values in inputs]
        keys = [cache_key(self.backend.name, self.backend.model, prompt.version_id, m, sampling) for m in messages]
        first_index: dict[str, int] = {}
        for index, key in enumerate(keys):
            first_index.setdefault(key, index)
        cached = self.cache.get_many(list(first_index)) if first_index else {}
        missing = [key for key in first_index if key not in cached]
        requests = {k: GenerationRequest(messages[first_index[k]], SCHEMAS[prompt.output], prompt.output) for k in missing}
        generations = self._generate(prompt, requests, counters)
        out: list[tuple[CallRecord, ParsedResponse]] = []
        for index, key in enumerate(keys):
            if key in cached or first_index[key] != index:
                hit = cached.get(key)
                generation = generations.get(key)
                if hit is not None:
                    text, tokens_in, tokens_out, status, error = hit.response, hit.tokens_in, hit.tokens_out, "ok", None
                else:  # the same prompt twice in one batch: the second reuses the first's answer
                    text, tokens_in, tokens_out = generation.text, generation.tokens_in, generation.tokens_out
                    status, error = generation.status, generation.error
                record = CallRecord(prompt.version_id, key, True, status, 0, tokens_in or 0, tokens_out or 0, 0.0, error, "cache")
            else:
                g = generations[key]
                text, status = g.text, g.status
                record = CallRecord(prompt.version_id, key, False, g.status, g.retries, g.tokens_in or 0,
                                    g.tokens_out or 0, g.latency_s, g.error, g.tokens_counted_by)
                if g.tokens_counted_by != "backend":
                    counters[f"tokens_counted_by_{g.tokens_counted_by}"] += 1
            if status == "ok":
                parsed = parse_response(text, prompt.output)
                counters["malformed_pairs_dropped"] += parsed.dropped_items
            else:
                parsed = ParsedResponse(status, error=record.error)
            out.append((record, parsed))
        return out

    def _generate(self, prompt: Prompt, requests: dict[str, GenerationRequest], counters: Counter) -> dict[str, Generation]:
        """The backend's answers to ``requests`` (cache key -> request), each cached as soon as it arrives (see the
        module doc), over-long answers cut first."""
        generations: dict[str, Generation] = {}
        progress = _ProgressLog(self.log, f"{prompt.version_id} calls", len(requests))
        keys = list(requests)
        batch_size = self.backend.batch_size or max(len(keys), 1)
        stream = getattr(self.backend, "generate_stream", None)
        # Answers arrive in the backend's worker threads, and each thread returns (to send its next request) only
        # once its answer is in the cache. A group commit: whoever holds the write lock writes every answer waiting
        # at that moment in one insert, so under load many answers share one commit.
        waiting: list[CachedResponse] = []
        queue_lock, write_lock = threading.Lock(), threading.Lock()

        def save(key: str, generation: Generation) -> None:
            with queue_lock:
                self._cut(generation, counters)
                if generation.status != "ok":
                    return
                waiting.append(CachedResponse(key, self.backend.name, self.backend.model, prompt.version_id,
                                              generation.text or "", generation.tokens_in, generation.tokens_out,
                                              generation.latency_s))
            with write_lock:  # a writer before us may have written ours already: it committed before releasing
                with queue_lock:
                    batch = waiting[:]
                    waiting.clear()
                if batch:
                    self.cache.put_many(batch)

        for start in range(0, len(keys), batch_size):
            batch = keys[start : start + batch_size]
            wanted = [requests[k] for k in batch]
            if stream is not None:
                for arrived in stream(wanted, self.sampling, on_answer=lambda i, g, batch=batch: save(batch[i], g)):
                    generations.update((batch[i], g) for i, g in arrived)
                    progress.update(len(generations), force=len(generations) == len(keys))
                continue
            answers = self.backend.generate(wanted, self.sampling)
            for generation in answers:
                self._cut(generation, counters)
            self.cache.put_many(
                CachedResponse(k, self.backend.name, self.backend.model, prompt.version_id, g.text or "",
                               g.tokens_in, g.tokens_out, g.latency_s)
                for k, g in zip(batch, answers, strict=True) if g.status == "ok")
            generations.update(zip(batch, answers, strict=True))
            progress.update(len(generations), force=len(generations) == len(keys))
        return generations

    def _cut(self, generation: Generation, counters: Counter) -> Generation:
        if generation.text is not None and len(generation.text) > self.max_response_chars:
            counters["responses_truncated"] += 1
            generation.text = generation.text[: self.max_response_chars]
        return generation

    def _capped(self, pairs: list[QAPair], result: ExtractionResult, counters: Counter) -> list[QAPair]:
        kept, dropped = cap_pairs(pairs, self.max_pairs_per_document)
        if dropped:
            counters["dropped_per_document_cap"] += dropped
            result.error = f"per_document_cap: kept the first {len(kept)} of {len(pairs)} QA pairs"
        return kept

    # -- strategies --------------------------------------------------------------------------------------
    def extract(self, documents: Sequence[Document]) -> ExtractionRun:
        start = time.perf_counter()
        counters: Counter = Counter()
        harvested = self._harvest_pages(documents, counters)
        todo = [i for i, d in enumerate(documents) if i not in harvested]
        results = [
            ExtractionResult(documents[i].doc_id, "no_qa", backend=self.backend.name, model=self.backend.model,
                             strategy=self.strategy, prompt_version=self.prompt_version)
            for i in todo
        ]
        if self.strategy == "equal":
            self._extract_equal([documents[i] for i in todo], results, counters)
        else:
            self._extract_reinstruct([documents[i] for i in todo], results, counters)
        by_position = dict(zip(todo, results)) | harvested
        results = [by_position[i] for i in range(len(documents))]
        for result in results:
            result.cache_key = result.calls[0].cache_key if result.calls else None
            counters[f"status_{result.status}"] += 1
        return ExtractionRun(results, counters, time.perf_counter() - start)

    def _harvest_pages(self, documents: Sequence[Document], counters: Counter) -> dict[int, ExtractionResult]:
        """The zero-cost first pass: a web page that carries its own Q&A (marked up, or as headings or terms
        that ask) is harvested by the rules and sent to no model. Its result costs nothing in the ledger."""
        harvested: dict[int, ExtractionResult] = {}
        if not self.harvest_pages:
            return harvested
        for i, document in enumerate(documents):
            if document.html is None:
                continue
            pairs, rule = harvest(document.text, document.html)
            if rule not in PAGE_RULES:
                continue  # only the page's markup is trusted to stand in for the model
            result = ExtractionResult(document.doc_id, "ok", backend="rules", strategy=self.strategy,
                                      prompt_version=RULES_VERSION, tokens_counted_by="none")
            result.qa_pairs = self._capped(pairs, result, counters)
            counters["harvested_without_llm"] += 1
            harvested[i] = result
        return harvested

    def _extract_equal(self, documents: Sequence[Document], results: list[ExtractionResult], counters: Counter) -> None:
        qa_prompt = self.prompts[0]
        for result, (record, parsed) in zip(results, self._call(qa_prompt, [{"document": d.text} for d in documents], counters)):
            result.calls.append(record)
            result.status, result.error = parsed.status, parsed.error or ("; ".join(parsed.notes) or None)
            result.qa_pairs = self._capped(list(parsed.value or []), result, counters) if parsed.status == "ok" else []
        if not self.refine:
            return
        todo = [i for i, r in enumerate(results) if r.status == "ok"]
        inputs = [
            {"document": documents[i].text,
             "qa_pairs": json.dumps({"qa_pairs": [{"question": p.question, "answer": p.answer} for p in results[i].qa_pairs]},
                                    ensure_ascii=False, indent=1)}
            for i in todo
        ]
        for i, (record, parsed) in zip(todo, self._call(self.prompts[1], inputs, counters)):
            result = results[i]
            result.calls.append(record)
            if parsed.status == "ok":
                result.qa_pairs = self._capped(list(parsed.value), result, counters)
                counters["refined"] += 1
            elif parsed.status == "no_qa":
                result.status, result.qa_pairs = "no_qa", []
                result.error = "the refine pass dropped every pair as unsupported by the document"
                counters["refine_dropped_all"] += 1
            else:  # keep the first pass's pairs; say why the refinement is missing
                result.error = f"refine {parsed.status}: {parsed.error}"
                counters[f"refine_{parsed.status}"] += 1

    def _extract_reinstruct(self, documents: Sequence[Document], results: list[ExtractionResult], counters: Counter) -> None:
        reverse, rewrite = self.prompts
        selected = []
        for i, document in enumerate(documents):
            reason = select_text(document.text, self.reinstruct_rules)
            if reason is None:
                selected.append(i)
                counters["selection_kept"] += 1
            else:
                results[i].error = f"not selected by REInstruct's text selection: {reason}"
                counters[f"selection_dropped_{reason}"] += 1
        instructions: dict[int, str] = {}
        for i, (record, parsed) in zip(selected, self._call(reverse, [{"document": documents[i].text} for i in selected], counters)):
            results[i].calls.append(record)
            if parsed.status == "ok":
                instructions[i] = parsed.value
            else:
                results[i].status, results[i].error = parsed.status, parsed.error
        todo = list(instructions)
        inputs = [{"instruction": instructions[i], "document": documents[i].text} for i in todo]
        for i, (record, parsed) in zip(todo, self._call(rewrite, inputs, counters)):
            result = results[i]
            result.calls.append(record)
            if parsed.status != "ok":
                result.status, result.error = parsed.status, parsed.error
                continue
            reason = post_filter(instructions[i], parsed.value, self.reinstruct_rules)
            if reason is not None:
                result.status, result.error = "no_qa", f"dropped by REInstruct's post-filter: {reason}"
                counters[f"post_filter_dropped_{reason}"] += 1
                continue
            result.status, result.qa_pairs = "ok", [QAPair(instructions[i], parsed.value)]


class RuleExtractor:
    """The ``rules`` backend (:mod:`.rules`); with the ``reinstruct`` strategy, REInstruct's text selection and
    post-filter apply around it."""

    name = "rules"
    model = None

    def __init__(self, *, strategy: str = "equal", reinstruct_rules: ReinstructRules = ReinstructRules(),
                 max_pairs_per_document: int | None = MAX_PAIRS_PER_DOCUMENT, log: Log | None = None):
        if strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {strategy!r}: choose one of {', '.join(STRATEGIES)}")
        self.strategy, self.reinstruct_rules, self.log = strategy, reinstruct_rules, log
        self.max_pairs_per_document = max_pairs_per_document
        self.prompt_version = RULES_VERSION

    def extract(self, documents: Sequence[Document]) -> ExtractionRun:
        start = time.perf_counter()
        counters: Counter = Counter()
        progress = _ProgressLog(self.log, "rules extraction", len(documents))
        results = []
        for n, document in enumerate(documents, 1):
            result = ExtractionResult(document.doc_id, "no_qa", backend="rules", strategy=self.strategy,
                                      prompt_version=RULES_VERSION, tokens_counted_by="none")
            reason = select_text(document.text, self.reinstruct_rules) if self.strategy == "reinstruct" else None
            if reason is not None:
                result.error = f"not selected by REInstruct's text selection: {reason}"
                counters[f"selection_dropped_{reason}"] += 1
            else:
                pairs, rule = harvest(document.text, document.html)
                if rule:
                    counters[f"rule_{rule}"] += 1
                if self.strategy == "reinstruct":
                    kept = []
                    for pair in pairs:
                        why = post_filter(pair.question, pair.answer, self.reinstruct_rules)
                        counters[f"post_filter_dropped_{why}" if why else "post_filter_kept"] += 1
                        if why is None:
                            kept.append(pair)
                    pairs = kept
                result.qa_pairs, dropped = cap_pairs(pairs, self.max_pairs_per_document)
                if dropped:
                    counters["dropped_per_document_cap"] += dropped
                    result.error = f"per_document_cap: kept the first {len(result.qa_pairs)} of {len(pairs)} QA pairs"
                result.status = "ok" if pairs else "no_qa"
            counters[f"status_{result.status}"] += 1
            results.append(result)
            progress.update(n, force=n == len(documents))
        return ExtractionRun(results, counters, time.perf_counter() - start)
