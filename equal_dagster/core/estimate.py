"""What a budget will cost before any LLM call is made (`equal estimate`).

Rules:

* **Documents**: the budget's document limit over the corpus (the warm-up's documents included, as the rounds count
  them); with a token budget alone, as many documents as its tokens buy at the estimated tokens per document.
* **Calls per document**: ``equal``: 1, and 1 more with ``refine`` (an upper bound: refine runs only for documents that
  yielded pairs); ``reinstruct``: 2 (reverse, then rewrite; an upper bound: the selection rules skip some).
* **Retries**: the mean retries per document of the extractions already made by this backend and model, when the
  ledger has some (else none expected); and the most they could be, every call retried ``max_retries`` times. The
  cost counts the answered calls: a request refused with HTTP 429 or 5xx is usually not billed, one that timed out
  or lost its connection may have been.
* **Input tokens per call**: the prompt rendered for a seeded sample of :data:`SAMPLE_DOCUMENTS` documents, counted
  with the configured tokenizer, else estimated (:class:`~.extraction.backends.base.TokenCounter`). A second call
  (refine, rewrite) is counted as the first one's input plus its output.
* **Output tokens per call**: the mean of the calls already paid to this backend and model, when the ledger has some;
  else ``max_tokens``, an upper bound.
* **Cost**: input and output tokens at their prices per million tokens.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from equal_dagster.core.bandit import Budget
from equal_dagster.core.extraction.backends.base import TokenCounter
from equal_dagster.core.extraction.config import ExtractionConfig
from equal_dagster.core.extraction.prompts import load_prompt
from equal_dagster.core.store import Store

SAMPLE_DOCUMENTS = 500


@dataclass(frozen=True)
class Estimate:
    corpus_documents: int
    documents: int
    calls_per_document: int
    calls: int
    input_tokens_per_call: float
    output_tokens_per_call: float
    output_measured: bool  # False: max_tokens, an upper bound
    input_tokens: int
    output_tokens: int
    tokens_counted_by: str
    sampled_documents: int
    cost: float | None
    retries: int = 0  # expected: the ledger's mean retries per document times the documents (0: none measured yet)
    retries_measured: bool = False
    calls_at_most: int = 0  # every call retried max_retries times

    def as_json(self) -> dict:
        return asdict(self)


def estimate_cost(store: Store, config: ExtractionConfig, budget: Budget, *, price_in: float | None = None,
                  price_out: float | None = None, seed: int = 0) -> Estimate:
    """The documents, calls, tokens and cost ``budget`` will spend with extraction ``config`` (see the module's
    rules); ``price_in`` / ``price_out`` per million tokens (None: no cost)."""
    corpus = store.document_count()
    if config.backend == "rules":
        documents = budget.document_limit(corpus) or corpus
        return Estimate(corpus, min(documents, corpus), 0, 0, 0.0, 0.0, True, 0, 0, "none", 0,
                        None if price_in is None and price_out is None else 0.0)
    sample = store.random_documents(SAMPLE_DOCUMENTS, seed)["text"].to_list()
    first = load_prompt("equal-qa" if config.strategy == "equal" else "reinstruct-reverse", prompt_dir=config.prompt_dir)
    counter = TokenCounter(config.tokenizer)
    input_per_call = (sum(counter.count_messages(first.render(document=text)) for text in sample) / len(sample)
                      if sample else 0.0)
    measured = store.mean_output_tokens(config.backend, config.model)
    output_per_call = measured if measured is not None else float(config.max_tokens)
    calls_per_document = 2 if config.refine or config.strategy == "reinstruct" else 1
    # the second call reads the first one's input again and its output
    input_per_document = input_per_call * calls_per_document + output_per_call * (calls_per_document - 1)
    output_per_document = output_per_call * calls_per_document
    documents = budget.document_limit(corpus)
    if documents is None and budget.tokens is not None:
        documents = int(budget.tokens // max(input_per_document + output_per_document, 1.0))
    documents = min(corpus if documents is None else documents, corpus)
    input_tokens = round(input_per_document * documents)
    output_tokens = round(output_per_document * documents)
    cost = None
    if price_in is not None or price_out is not None:
        cost = (input_tokens * (price_in or 0.0) + output_tokens * (price_out or 0.0)) / 1e6
    retries_per_document = store.mean_retries(config.backend, config.model)
    calls = documents * calls_per_document
    return Estimate(corpus, documents, calls_per_document, calls, round(input_per_call, 1),
                    round(output_per_call, 1), measured is not None, input_tokens, output_tokens, counter.method,
                    len(sample), cost, round((retries_per_document or 0.0) * documents), retries_per_document is not None,
                    calls * (1 + config.max_retries))


def format_estimate(estimate: Estimate, config: ExtractionConfig, budget: Budget) -> str:
    """The estimate as the few lines `equal estimate` prints."""
    e = estimate
    lines = [f"budget: {budget.describe()}: {e.documents:,} of {e.corpus_documents:,} documents, the warm-up's included",
             f"extraction: backend {config.backend}" + (f", model {config.model}" if config.model else "")
             + f", strategy {config.strategy}" + (", refine" if config.refine else "")]
    if config.backend == "rules":
        return "\n".join(lines + ["the rules backend makes no LLM call: no tokens, no cost"])
    output_note = ("the mean of the calls already paid" if e.output_measured
                   else "max_tokens, an upper bound: no call paid to this model yet")
    lines += [
        f"calls: {e.calls:,} ({e.calls_per_document} per document)",
        f"retries: {f'about {e.retries:,} (the mean of the extractions made so far)' if e.retries_measured else 'none measured yet'}"
        f"; at most {e.calls_at_most - e.calls:,} (every call retried {config.max_retries} times; refused requests are usually not billed)",
        f"input tokens: {e.input_tokens:,} ({e.input_tokens_per_call:,.0f} per call: the prompt on {e.sampled_documents} "
        f"sampled documents, counted by {e.tokens_counted_by})",
        f"output tokens: {'' if e.output_measured else 'at most '}{e.output_tokens:,} "
        f"({e.output_tokens_per_call:,.0f} per call: {output_note})",
    ]
    if e.cost is not None:
        lines.append(f"cost: {'' if e.output_measured else 'at most '}{e.cost:,.2f} at the prices given per million tokens")
    return "\n".join(lines)
