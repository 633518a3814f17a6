"""`equal estimate`: documents, calls, tokens and cost of a budget before any LLM call."""

import json

from conftest import write_jsonl
from equal_dagster.cli import main
from equal_dagster.core.bandit import Budget
from equal_dagster.core.corpus import CrawlFormat, ingest_crawl
from equal_dagster.core.estimate import estimate_cost
from equal_dagster.core.extraction import ExtractionConfig
from equal_dagster.core.extraction.backends.base import TokenCounter
from equal_dagster.core.extraction.cache import CachedResponse, StoreResponseCache
from equal_dagster.core.extraction.prompts import load_prompt
from equal_dagster.core.store import Store


def corpus(paths, n=40):
    write_jsonl(paths.crawl_dir / "c" / "part.jsonl",
                [{"id": f"d{i}", "text": f"Problem {i}. A train travels {i * 7} km in {i + 1} hours. " * (1 + i % 3)}
                 for i in range(n)])
    with Store.open(paths.store) as store:
        ingest_crawl(store, "c", paths.crawl_dir / "c", paths.crawl_dir, CrawlFormat())


def test_the_estimate_counts_the_prompt_on_the_documents_and_bounds_the_output(paths):
    corpus(paths)
    config = ExtractionConfig(backend="openai", base_url="http://127.0.0.1:1/v1", model="m", max_tokens=256)
    with Store.open(paths.store) as store:
        texts = store.documents()["text"].to_list()
        estimate = estimate_cost(store, config, Budget.parse("25%"), price_in=1.0, price_out=4.0)
        prompt, counter = load_prompt("equal-qa"), TokenCounter()
        per_call = sum(counter.count_messages(prompt.render(document=t)) for t in texts) / len(texts)
        assert estimate.documents == 10 and estimate.calls == 10 and estimate.sampled_documents == 40
        assert abs(estimate.input_tokens_per_call - per_call) < 0.1 and estimate.input_tokens == round(per_call * 10)
        assert not estimate.output_measured and estimate.output_tokens == 2560  # max_tokens: an upper bound
        assert abs(estimate.cost - (estimate.input_tokens * 1.0 + 2560 * 4.0) / 1e6) < 1e-9
        assert estimate.retries == 0 and not estimate.retries_measured and estimate.calls_at_most == 10 * (1 + 4)

        # once calls were paid, their mean output; refine doubles the calls and rereads the first answer
        StoreResponseCache(store).put_many([CachedResponse("k1", "openai", "m", "equal-qa/v1", "x", 100, 30, 1.0),
                                            CachedResponse("k2", "openai", "m", "equal-qa/v1", "y", 100, 50, 1.0)])
        refined = estimate_cost(store, ExtractionConfig(**{**config.__dict__, "refine": True}), Budget.parse("10"))
        assert refined.output_measured and refined.output_tokens_per_call == 40.0
        assert refined.calls == 20 and refined.output_tokens == 800 and refined.cost is None
        assert refined.input_tokens == round((2 * refined.input_tokens_per_call + 40) * 10)
        # once documents were extracted, their mean retries (cache hits aside)
        from equal_dagster.core.extraction.extractor import ExtractionRun
        from equal_dagster.core.extraction.results import CallRecord, ExtractionResult
        from equal_dagster.core.rounds import write_extraction_round

        def extracted(doc_id, retries, cache_hit=False):
            return ExtractionResult(doc_id, "no_qa", backend="openai", model="m", strategy="equal",
                                    calls=[CallRecord("equal-qa/v1", f"k-{doc_id}", cache_hit, "no_qa", retries)])

        write_extraction_round(store, "round-0", 0, "warmup", ExtractionRun(
            [extracted("d1", 3), extracted("d2", 1), extracted("d3", 0, cache_hit=True)]), seed=0, dagster_run_id=None)
        retried = estimate_cost(store, config, Budget.parse("10"))
        assert retried.retries_measured and retried.retries == 20  # 2 per document, 10 documents
        # a token budget alone buys as many documents as its tokens pay for
        by_tokens = estimate_cost(store, config, Budget(tokens=10_000))
        assert by_tokens.documents == int(10_000 // (by_tokens.input_tokens_per_call + 40))


def test_equal_estimate_prints_the_figures_and_rules_cost_nothing(paths, capsys, monkeypatch):
    corpus(paths)
    monkeypatch.setenv("EQUAL_LLM_BACKEND", "rules")
    assert main(["--home", str(paths.home), "estimate"]) == 0
    assert "no LLM call" in capsys.readouterr().out
    monkeypatch.setenv("EQUAL_LLM_BACKEND", "openai")
    monkeypatch.setenv("EQUAL_LLM_MODEL", "m")
    monkeypatch.setenv("EQUAL_LLM_BASE_URL", "http://127.0.0.1:1/v1")
    assert main(["--home", str(paths.home), "estimate", "--budget", "50%", "--price-per-mtok", "2", "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures["documents"] == 20 and figures["calls"] == 20 and figures["cost"] > 0
    assert main(["--home", str(paths.home), "estimate", "--budget", "50%", "--price-per-mtok", "2"]) == 0
    out = capsys.readouterr().out
    assert "20 of 40 documents" in out and "at most" in out and "cost:" in out
    assert "retries: none measured yet; at most 80 (every call retried 4 times" in out
    assert main(["--home", str(paths.home), "estimate", "--budget", "ten"]) == 2
    assert capsys.readouterr().err.startswith("equal estimate: ")
