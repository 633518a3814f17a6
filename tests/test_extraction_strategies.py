"""The LLMExtractor's strategies against the fake server: EQUAL with its refine pass, and REInstruct's
selection, reverse instruction, rewrite and post-filter."""

import pytest
from doubles import FakeOpenAIServer, InstantBackend

from equal_dagster.core.extraction import Document, ExtractionConfig, InMemoryResponseCache, LLMExtractor, build_extractor
from equal_dagster.core.extraction.reinstruct import ReinstructRules


def config(server, **overrides):
    values = dict(backend="openai", base_url=server.base_url, model="fake", max_retries=1, backoff_s=0.01, timeout_s=2)
    values.update(overrides)
    return ExtractionConfig(**values)


def test_equal_refine_pass_makes_a_second_call_and_keeps_pairs_when_it_fails():
    docs = [Document("a", "DOC=a MODE=good"), Document("b", "DOC=b MODE=none")]
    with FakeOpenAIServer() as server:
        run = build_extractor(config(server, refine=True), InMemoryResponseCache()).extract(docs)
    a, b = run.results
    assert a.status == "ok" and [c.prompt_version for c in a.calls] == ["equal-qa/v1", "equal-refine/v1"]
    assert a.prompt_version == "equal-qa/v1+equal-refine/v1"
    assert b.status == "no_qa" and len(b.calls) == 1  # nothing to refine
    assert server.requests == 3 and run.counters["refined"] == 1
    # the refine prompt carries the first pass's pairs as data
    assert "What is the answer to problem a?" in server.bodies[-1]["messages"][1]["content"]


def test_refine_failure_keeps_the_first_pairs():
    class RefineFails(InstantBackend):
        def generate(self, requests, sampling):
            out = super().generate(requests, sampling)
            for request, generation in zip(requests, out):
                if "<qa_pairs>" in request.messages[-1]["content"]:
                    generation.text = "not json"
            return out

    run = LLMExtractor(RefineFails(), InMemoryResponseCache(), refine=True).extract([Document("a", "DOC=a")])
    assert run.results[0].status == "ok" and len(run.results[0].qa_pairs) == 2
    assert "refine parse_error" in run.results[0].error and run.counters["refine_parse_error"] == 1


STEPS = "\n".join(
    f"{verb} the {thing} carefully, checking each part before moving on to the next step of the job at hand today."
    for verb, thing in [("Mix", "flour"), ("Rest", "dough"), ("Shape", "loaf"), ("Bake", "bread"), ("Cool", "loaf"),
                        ("Slice", "bread"), ("Store", "slices"), ("Serve", "toast")]
)


def test_reinstruct_selects_reverses_rewrites_and_post_filters():
    selected = Document("howto", "Bread at home\n" + STEPS + "\nDOC=howto MODE=good")
    short = Document("short", "DOC=short MODE=good tiny")
    rules = ReinstructRules(min_chars=500)
    with FakeOpenAIServer() as server:
        extractor = LLMExtractor(
            build_extractor(config(server), InMemoryResponseCache()).backend, InMemoryResponseCache(),
            strategy="reinstruct", reinstruct_rules=rules,
        )
        run = extractor.extract([selected, short])
    howto, tiny = run.results
    assert tiny.status == "no_qa" and "text selection: length" in tiny.error and not tiny.calls
    assert howto.status == "ok", howto.error
    assert [c.prompt_version for c in howto.calls] == ["reinstruct-reverse/v1", "reinstruct-rewrite/v1"]
    pair = howto.qa_pairs[0]
    assert pair.question == "Explain how to prepare topic howto step by step."
    assert pair.answer.startswith("To prepare topic howto")
    # the rewrite prompt holds the generated instruction and the text
    rewrite_prompt = server.bodies[-1]["messages"][1]["content"]
    assert "<instruction>\nExplain how to prepare topic howto" in rewrite_prompt and "Mix the flour" in rewrite_prompt
    assert server.requests == 2


def test_reinstruct_post_filter_drops_a_pair_that_points_at_the_text():
    class PointsAtText(InstantBackend):
        def generate(self, requests, sampling):
            out = super().generate(requests, sampling)
            for request, generation in zip(requests, out):
                if request.schema_name == "instruction":
                    generation.text = '{"instruction": "Summarize this article."}'
            return out

    doc = Document("howto", "Bread at home\n" + STEPS)
    run = LLMExtractor(PointsAtText(), InMemoryResponseCache(), strategy="reinstruct",
                       reinstruct_rules=ReinstructRules(min_chars=500)).extract([doc])
    assert run.results[0].status == "no_qa" and "post-filter: refers_to_text" in run.results[0].error
    assert run.counters["post_filter_dropped_refers_to_text"] == 1


def test_a_crash_mid_round_keeps_the_paid_calls_and_no_half_round(tmp_path):
    """Responses are cached batch by batch: after a crash, the re-run pays only for what was not answered, and
    the round's partition is either the old one or the new one."""
    from equal_dagster.core.extraction import StoreResponseCache
    from equal_dagster.core.store import Store
    from equal_dagster.core.warmup import run_warmup

    class CrashesOnSecondBatch(InstantBackend):
        batch_size = 2

        def __init__(self, crash):
            super().__init__()
            self.crash, self.batches = crash, 0

        def generate(self, requests, sampling):
            self.batches += 1
            if self.crash and self.batches == 2:
                raise KeyboardInterrupt("the machine went away")
            return super().generate(requests, sampling)

    from conftest import write_jsonl
    from equal_dagster.core.corpus import CrawlFormat, ingest_crawl

    crawl = write_jsonl(tmp_path / "crawls" / "c" / "x.jsonl", [{"id": f"d{i}", "text": f"DOC=d{i} text"} for i in range(6)])
    with Store.open(tmp_path / "s.duckdb") as store:
        ingest_crawl(store, "c", crawl.parent, tmp_path / "crawls", CrawlFormat())
        crashing = CrashesOnSecondBatch(crash=True)
        with pytest.raises(KeyboardInterrupt):
            run_warmup(store, LLMExtractor(crashing, StoreResponseCache(store)), fraction=1.0)
        assert store.llm_cache_size() == 2 and store.extractions().height == 0 and store.rounds().height == 0
        healthy = CrashesOnSecondBatch(crash=False)
        report = run_warmup(store, LLMExtractor(healthy, StoreResponseCache(store)), fraction=1.0)
        assert healthy.requests == 4  # the two answered before the crash are not paid again
        assert report.run.totals()["cache_hits"] == 2 and store.extractions().height == 6
