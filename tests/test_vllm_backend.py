"""The vllm backend: request building and output reading without vLLM; the subprocess plumbing against a fake
``vllm`` package (tests/fake_vllm); and a real run where vLLM and a GPU exist, skipped elsewhere."""

import importlib.util
import json
import os
from pathlib import Path

import pytest

from equal_dagster.core.extraction import Document, ExtractionConfig, InMemoryResponseCache, build_extractor
from equal_dagster.core.extraction.backends.base import BackendUnavailable, GenerationRequest, SamplingSettings
from equal_dagster.core.extraction.backends import vllm_offline
from equal_dagster.core.extraction.backends.vllm_offline import VLLMBackend, build_vllm_job, read_vllm_outputs
from equal_dagster.core.extraction.backends.vllm_worker import sampling_params_kwargs
from equal_dagster.core.extraction.parsing import SCHEMAS

FAKE_VLLM = Path(__file__).parent / "fake_vllm"
REAL_VLLM = importlib.util.find_spec("vllm") is not None and "fake_vllm" not in str(importlib.util.find_spec("vllm").origin)


@pytest.fixture(autouse=True)
def no_engine_left():
    yield
    vllm_offline.stop_engines()  # each test's engine ran with that test's environment


def requests(n=2):
    return [GenerationRequest([{"role": "system", "content": "S"}, {"role": "user", "content": f"doc {i}"}],
                              SCHEMAS["qa_pairs"], "qa_pairs") for i in range(n)]


def test_job_carries_engine_settings_sampling_and_schemas():
    backend = VLLMBackend("org/model-7b", tensor_parallel_size=2, max_model_len=8192, gpu_memory_utilization=0.8)
    job = build_vllm_job(requests(), SamplingSettings(temperature=0.2, max_tokens=256, seed=7), backend.engine_settings())
    assert job["engine"] == {"model": "org/model-7b", "tensor_parallel_size": 2, "gpu_memory_utilization": 0.8,
                             "dtype": "auto", "max_model_len": 8192}
    assert job["sampling"] == {"temperature": 0.2, "top_p": 1.0, "max_tokens": 256, "seed": 7}
    assert [r["messages"][1]["content"] for r in job["requests"]] == ["doc 0", "doc 1"]
    assert job["requests"][0]["json_schema"] == SCHEMAS["qa_pairs"]
    json.dumps(job)  # travels as a file

    class Structured:
        def __init__(self, json):
            self.json = json

    kwargs = sampling_params_kwargs(job, job["requests"][0], Structured)
    assert kwargs["max_tokens"] == 256 and kwargs["structured_outputs"].json == SCHEMAS["qa_pairs"]
    assert "structured_outputs" not in sampling_params_kwargs(job, {"messages": [], "json_schema": None}, Structured)


def test_outputs_are_read_in_request_order_and_gaps_become_backend_errors(tmp_path):
    out = tmp_path / "outputs.jsonl"
    out.write_text(
        json.dumps({"index": 2, "text": "c", "tokens_in": 3, "tokens_out": 1}) + "\n"
        + json.dumps({"index": 0, "text": "a", "tokens_in": 5, "tokens_out": 2}) + "\n"
        + "not json\n"
    )
    generations = read_vllm_outputs(out, 3, elapsed_s=3.0)
    assert [g.status for g in generations] == ["ok", "backend_error", "ok"]
    assert generations[0].text == "a" and generations[0].tokens_in == 5 and generations[0].latency_s == 1.0
    assert "no output for request 1" in generations[1].error and "1 undecodable" in generations[1].error
    assert [g.status for g in read_vllm_outputs(tmp_path / "missing.jsonl", 2)] == ["backend_error"] * 2


@pytest.mark.skipif(REAL_VLLM, reason="vLLM is installed here")
def test_missing_vllm_is_a_clear_error():
    with pytest.raises(BackendUnavailable, match=r"pip install 'equal-dagster\[vllm\]'"):
        VLLMBackend("some/model").generate(requests(1), SamplingSettings())
    with pytest.raises(ValueError, match="needs a model"):
        VLLMBackend("")


@pytest.mark.skipif(REAL_VLLM, reason="vLLM is installed here: the fake would shadow it")
def test_a_round_runs_in_one_worker_process_with_structured_outputs(tmp_path, monkeypatch):
    record = tmp_path / "record.json"
    monkeypatch.setenv("FAKE_VLLM_RECORD", str(record))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(FAKE_VLLM), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.syspath_prepend(str(FAKE_VLLM))
    config = ExtractionConfig(backend="vllm", model="org/model-7b", max_model_len=4096, gpu_memory_utilization=0.5)
    docs = [Document("a", "first"), Document("b", "MODE=garbage"), Document("c", "third")]
    run = build_extractor(config, InMemoryResponseCache()).extract(docs)
    assert [r.status for r in run.results] == ["ok", "parse_error", "ok"]
    assert run.results[0].qa_pairs[0].question == "Question 0?"
    assert run.results[2].tokens_in == 12 and run.results[2].tokens_out == 5
    seen = json.loads(record.read_text())
    assert seen["n_conversations"] == 3  # the whole round in one chat call
    assert seen["engine"]["max_model_len"] == 4096 and seen["engine"]["gpu_memory_utilization"] == 0.5
    assert seen["structured_json"] == [SCHEMAS["qa_pairs"]] * 3
    assert seen["sampling"][0]["max_tokens"] == 1024 and seen["use_tqdm"] is False


@pytest.mark.skipif(REAL_VLLM, reason="vLLM is installed here: the fake would shadow it")
def test_one_engine_serves_ten_rounds_and_stops_when_the_run_ends(tmp_path, monkeypatch):
    starts = tmp_path / "starts"
    monkeypatch.setenv("FAKE_VLLM_RECORD", str(tmp_path / "record.json"))
    monkeypatch.setenv("FAKE_VLLM_STARTS", str(starts))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(FAKE_VLLM), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.syspath_prepend(str(FAKE_VLLM))
    config = ExtractionConfig(backend="vllm", model="org/model-7b", max_retries=0)
    for round_no in range(10):  # each round builds its extractor anew, as each bandit_rounds materialization does
        docs = [Document(f"r{round_no}-{i}", f"round {round_no}, document {i}") for i in range(3)]
        run = build_extractor(config, InMemoryResponseCache()).extract(docs)
        assert [r.status for r in run.results] == ["ok"] * 3
    # the model loaded once for ten rounds (and what the engine printed on stdout was not taken for answers)
    assert len(starts.read_text().splitlines()) == 1
    (engine,) = vllm_offline._ENGINES.values()
    assert engine.alive()
    vllm_offline.stop_engines()  # the run ends: the engine process exits, its GPU memory with it
    assert not engine.alive() and engine.proc.returncode == 0 and not vllm_offline._ENGINES

    # an engine that dies mid-batch fails that batch's requests; the next round starts a new one
    run = build_extractor(config, InMemoryResponseCache()).extract([Document("x", "MODE=crash")])
    assert run.results[0].status == "backend_error" and "vLLM worker exited with 3" in run.results[0].error
    run = build_extractor(config, InMemoryResponseCache()).extract([Document("y", "a page after the crash")])
    assert run.results[0].status == "ok" and len(starts.read_text().splitlines()) == 3


def _gpu() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


@pytest.mark.skipif(not REAL_VLLM, reason="vLLM is not installed (it comes with the [vllm] extra, on GPU hosts)")
@pytest.mark.skipif(not _gpu(), reason="no CUDA GPU here")
def test_real_vllm_extracts_with_structured_output():
    model = os.environ.get("EQUAL_TEST_VLLM_MODEL", "Qwen/Qwen2.5-0.5B-Instruct")
    config = ExtractionConfig(backend="vllm", model=model, max_model_len=4096, gpu_memory_utilization=0.5, max_tokens=512)
    text = "Problem: Ava has 3 apples and buys 5 more. How many apples does she have?\nSolution: 3 + 5 = 8. The answer is 8."
    run = build_extractor(config, InMemoryResponseCache()).extract([Document("a", text), Document("b", "Buy shoes now!")])
    assert run.results[0].status == "ok", run.results[0].error
    assert any("8" in p.answer for p in run.results[0].qa_pairs)
    assert all(r.status in ("ok", "no_qa") for r in run.results)  # structured output: always parseable
