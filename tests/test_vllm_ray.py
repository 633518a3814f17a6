"""The vllm backend's engines as Ray actors (compute engine `ray`), against the fake ``vllm`` package
(tests/fake_vllm) in Ray local mode: each engine loads the model once for ten rounds, a round's requests are split
among the engines and come back in order, and an engine that dies fails only its share and is replaced."""

import os
from pathlib import Path

import pytest
from test_vllm_backend import FAKE_VLLM, REAL_VLLM

from equal_dagster.core.ray_setup import RaySettings, ray_session
from equal_dagster.core.extraction import Document, ExtractionConfig, InMemoryResponseCache, build_extractor
from equal_dagster.core.extraction.backends import vllm_ray

RAY = RaySettings()  # the defaults: 2 engines of half a CPU each (on a GPU cluster: EQUAL_RAY_NUM_GPUS=1)

pytestmark = pytest.mark.skipif(REAL_VLLM, reason="vLLM is installed here: the fake would shadow it")


@pytest.fixture(scope="module")
def fake_vllm_on_ray(tmp_path_factory):
    """A local Ray whose workers import the fake vLLM and record each engine start (the environment is set before
    Ray starts: its workers inherit it)."""
    import ray

    assert not ray.is_initialized()
    folder = tmp_path_factory.mktemp("fake-vllm-ray")
    env = {"FAKE_VLLM_RECORD": str(folder / "record.json"), "FAKE_VLLM_STARTS": str(folder / "starts"),
           "PYTHONPATH": os.pathsep.join([str(FAKE_VLLM), os.environ.get("PYTHONPATH", "")])}
    before = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    try:
        with ray_session(RAY):
            yield folder / "starts"
            vllm_ray.stop_ray_engines()
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _starts(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_engines_on_ray_load_the_model_once_for_ten_rounds_and_answer_in_order(fake_vllm_on_ray):
    config = ExtractionConfig(backend="vllm", model="org/model-7b", max_retries=0)
    for round_no in range(10):  # each round builds its extractor anew, as each bandit_rounds materialization does
        docs = [Document(f"r{round_no}-{i}", f"round {round_no}, document {i}" + (" MODE=garbage" if i == 3 else ""))
                for i in range(5)]
        run = build_extractor(config, InMemoryResponseCache(), ray=RAY).extract(docs)
        # 5 requests on 2 engines: shares of 3 and 2; the fake names each answer by its place in its engine's batch
        assert [r.status for r in run.results] == ["ok", "ok", "ok", "parse_error", "ok"], [r.error for r in run.results]
        assert [run.results[i].qa_pairs[0].question for i in (0, 1, 2, 4)] == [
            "Question 0?", "Question 1?", "Question 2?", "Question 1?"]
    assert _starts(fake_vllm_on_ray) == RAY.workers  # one model load per engine, not per round

    # an engine that dies mid-batch fails its share only; the next round replaces it (one more model load)
    docs = [Document("a", "first share"), Document("b", "MODE=crash in the second share")]
    run = build_extractor(config, InMemoryResponseCache(), ray=RAY).extract(docs)
    assert run.results[0].status == "ok"
    assert run.results[1].status == "backend_error" and "vLLM engine on Ray failed" in run.results[1].error
    run = build_extractor(config, InMemoryResponseCache(), ray=RAY).extract([Document("c", "x"), Document("d", "y")])
    assert [r.status for r in run.results] == ["ok", "ok"]
    assert _starts(fake_vllm_on_ray) == RAY.workers + 1

    # one engine (EQUAL_RAY_WORKERS=1), another model: 1 engine start for 10 rounds
    one, other = RaySettings(workers=1), ExtractionConfig(backend="vllm", model="org/model-1b", max_retries=0)
    for round_no in range(10):
        docs = [Document(f"one-{round_no}-{i}", f"round {round_no}, document {i}") for i in range(3)]
        run = build_extractor(other, InMemoryResponseCache(), ray=one).extract(docs)
        assert [r.status for r in run.results] == ["ok"] * 3, [r.error for r in run.results]
    assert _starts(fake_vllm_on_ray) == RAY.workers + 2
