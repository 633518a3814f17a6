"""The transformers backend with a tiny model built from a config (nothing downloaded): a random model writes
garbage, which must become parse_error rows, not a crash."""

import pytest

from equal_dagster.core.extraction import Document, ExtractionConfig, InMemoryResponseCache, build_extractor
from equal_dagster.core.extraction.backends.base import BackendUnavailable, GenerationRequest, SamplingSettings
from equal_dagster.core.extraction.backends.transformers_local import TransformersBackend
from equal_dagster.demo.tiny_model import build_tiny_causal_lm

TEXTS = [
    "Problem 1. Ava has 3 apples and buys 5 more. How many apples does she have? Solution. 3 + 5 = 8.",
    "Q: What is the capital of France? A: Paris is the capital of France.",
    "Return a JSON object with question and answer fields for every pair in the document.",
] * 20


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return build_tiny_causal_lm(tmp_path_factory.mktemp("tiny-lm"), TEXTS, vocab_size=400)


def test_garbage_from_a_tiny_model_becomes_parse_error_rows(tiny_model):
    config = ExtractionConfig(backend="transformers", model=str(tiny_model), max_tokens=24, batch_size=2, device="cpu")
    docs = [Document(f"d{i}", text) for i, text in enumerate(TEXTS[:3])]
    run = build_extractor(config, InMemoryResponseCache()).extract(docs)
    assert [r.status for r in run.results] == ["parse_error"] * 3
    for result in run.results:
        assert result.backend == "transformers" and result.model == str(tiny_model)
        assert result.tokens_in > 50 and 0 < result.tokens_out <= 24
        assert result.calls[0].tokens_counted_by == "backend"
        assert result.error


def test_chat_template_is_used_when_the_tokenizer_has_one(tiny_model, tmp_path):
    backend = TransformersBackend(str(tiny_model), device="cpu")
    text = backend.prompt_text([{"role": "system", "content": "S"}, {"role": "user", "content": "U"}])
    assert text == "<|system|>\nS\n<|user|>\nU\n<|assistant|>\n"
    plain = TransformersBackend(str(build_tiny_causal_lm(tmp_path / "plain", TEXTS, vocab_size=300, chat_template=False)))
    assert plain.prompt_text([{"role": "user", "content": "U"}]) == "User: U\n\nAssistant:"


def test_generation_is_batched_and_deterministic(tiny_model):
    backend = TransformersBackend(str(tiny_model), device="cpu", batch_size=2)
    requests = [GenerationRequest([{"role": "user", "content": t}]) for t in TEXTS[:3]]
    first = backend.generate(requests, SamplingSettings(max_tokens=8))
    second = backend.generate(requests, SamplingSettings(max_tokens=8))
    assert [g.text for g in first] == [g.text for g in second]
    assert all(g.status == "ok" for g in first)


def test_a_missing_model_is_a_clear_error(tmp_path):
    backend = TransformersBackend(str(tmp_path / "no-such-model"), device="cpu")
    with pytest.raises(BackendUnavailable, match="cannot load model"):
        backend.generate([GenerationRequest([{"role": "user", "content": "x"}])], SamplingSettings())
