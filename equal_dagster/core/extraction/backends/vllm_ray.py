"""The ``vllm`` backend's engines as Ray actors (the ``compute`` engine ``ray``): on a GPU cluster, ``workers`` actors
each hold one ``vllm.LLM`` (``num_gpus`` each), built on the first round and kept for the rounds after it while the
run's Ray connection lasts (`equal rounds` holds one for all its rounds; a run from the UI, one for its step), and
freed with it: a Ray connection that ends takes its actors, and their GPU memory, with it.

Rules:

* A round's requests are split into one contiguous share per engine; each engine runs its share as one vLLM batch with
  the local engine's code (:func:`.vllm_worker.run_job`: the same job, sampling parameters and JSON-schema structured
  output, :func:`.vllm_offline.build_vllm_job`), and the outputs come back in request order. Prompts, parsing, the
  cache and the ledger are the extractor's, as with every backend.
* An engine that fails (its actor died, vLLM raised) fails its share's requests as ``backend_error``; the other
  shares' answers stand (and are cached). A dead engine is replaced at the next round.
* A batch past ``timeout_s`` fails its share as ``timeout`` and its engine is killed (a batch past its limit may never
  end); the next round starts a new one.
* On GPU workers each engine reserves ``tensor_parallel_size`` whole GPUs (``EQUAL_RAY_NUM_GPUS`` above 0 says the
  workers have GPUs; its fraction is the embedders'), so that two engines never share one GPU's memory.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from equal_dagster.core.ray_setup import RaySettings
from equal_dagster.core.extraction.backends.base import BackendUnavailable, Generation, GenerationRequest, SamplingSettings
from equal_dagster.core.extraction.backends.vllm_offline import VLLM_MISSING, VLLMBackend, build_vllm_job, vllm_generations


class _Engine:
    """One Ray actor holding one vLLM engine (vLLM is imported in the actor only)."""

    def __init__(self, engine: dict[str, Any]):
        from vllm import LLM

        self.llm = LLM(**engine)

    def run(self, job: dict[str, Any]) -> list[dict[str, Any]]:
        from equal_dagster.core.extraction.backends.vllm_worker import run_job

        return run_job(job, self.llm)


_POOLS: dict[str, list[Any]] = {}  # (Ray job, engine settings) -> its actors


def _engines(engine: dict[str, Any], ray_settings: RaySettings) -> list[Any]:
    """The engine actors for these settings on the connected Ray: ``workers`` of them, the missing ones started. On
    GPU workers (``num_gpus`` above 0) each engine reserves whole GPUs, as many as its tensor parallel size, whatever
    fraction the embedders take; on CPU workers (no GPU asked: the tests' fake vLLM) none."""
    import ray

    gpus = engine.get("tensor_parallel_size", 1) if ray_settings.num_gpus > 0 else 0
    job = ray.get_runtime_context().get_job_id()
    for key in [k for k in _POOLS if not k.startswith(job + " ")]:  # actors of a Ray connection that ended
        del _POOLS[key]
    key = f"{job} {json.dumps(engine, sort_keys=True)}"
    pool = _POOLS.setdefault(key, [])
    actor = ray.remote(num_cpus=ray_settings.num_cpus, num_gpus=gpus)(_Engine)
    while len(pool) < ray_settings.workers:
        pool.append(actor.remote(engine))
    return pool


def stop_ray_engines() -> None:
    """Kill every engine actor this process started (their GPU memory freed); Ray does as much when the connection
    ends."""
    import ray

    while _POOLS:
        for actor in _POOLS.popitem()[1]:
            ray.kill(actor)


@dataclass
class RayVLLMBackend:
    """A :class:`~.vllm_offline.VLLMBackend`'s batches on engine actors (see the module's rules)."""

    local: VLLMBackend
    ray: RaySettings
    name: str = "vllm"  # the same backend, as far as the cache and the ledger go

    @property
    def model(self) -> str:
        return self.local.model

    @property
    def batch_size(self) -> int | None:
        return self.local.batch_size

    def generate(self, requests: Sequence[GenerationRequest], sampling: SamplingSettings) -> list[Generation]:
        import ray

        if not requests:
            return []
        engine = self.local.engine_settings()
        job = build_vllm_job(requests, sampling, engine)
        pool = _engines(engine, self.ray)
        per_engine = -(-len(requests) // len(pool))  # contiguous shares, the last one shorter
        shares = [(start, min(start + per_engine, len(requests))) for start in range(0, len(requests), per_engine)]
        began = time.perf_counter()
        runs = [pool[n].run.remote({**job, "requests": job["requests"][a:b]}) for n, (a, b) in enumerate(shares)]
        done, _ = ray.wait(runs, num_returns=len(runs), timeout=self.local.timeout_s)
        elapsed = time.perf_counter() - began
        out: list[Generation] = []
        try:
            self._collect(pool, shares, runs, done, elapsed, len(requests), out)
        finally:
            pool[:] = [actor for actor in pool if actor is not None]  # replaced at the next round
        return out

    def _collect(self, pool: list[Any], shares: list[tuple[int, int]], runs: list[Any], done: list[Any],
                 elapsed: float, total: int, out: list[Generation]) -> None:
        """Each share's generations in order; an engine that failed or ran past the limit is killed (its slot in the
        pool left None)."""
        import ray
        from ray.exceptions import RayError

        for n, ((a, b), run) in enumerate(zip(shares, runs)):
            if run not in done:
                ray.kill(pool[n])
                pool[n] = None
                out += [Generation("timeout", error=f"the vLLM batch ran past {self.local.timeout_s:g} s",
                                   latency_s=elapsed / total) for _ in range(a, b)]
                continue
            try:
                rows = ray.get(run)
            except RayError as exc:  # the actor died, or vLLM raised in it
                ray.kill(pool[n])
                pool[n] = None
                if "No module named 'vllm'" in str(exc):
                    raise BackendUnavailable(VLLM_MISSING + " (on the Ray workers)") from exc
                error = f"vLLM engine on Ray failed: {str(exc).strip().splitlines()[0][:300]}"
                out += [Generation("backend_error", error=error, latency_s=elapsed / total) for _ in range(a, b)]
                continue
            out += vllm_generations(rows, b - a, elapsed * (b - a) / total)

    def close(self) -> None:
        """Nothing: the engines stay for the next round (the Ray connection's end frees them)."""
        return None
