"""The ``openai`` backend's calls fanned out over Ray: Ray Data LLM's HTTP processor (``HttpRequestProcessorConfig``,
``build_processor``) sends the requests from a pool of Ray actors to an OpenAI-compatible server (``vllm serve``,
TGI, llama.cpp, a hosted API), and the answers stream back to the asset as they arrive.

Rules it keeps (the same as :class:`~.openai_compatible.OpenAICompatibleBackend`, whose code builds each request
body and reads each answer, so prompts, parsing, the cache and the ledger do not change with the engine):

* The extractor sends only what its cache cannot answer, and caches each answer as it reaches the asset: a crash or a
  killed Ray worker repays at most the requests in flight (Ray retries a lost worker's batch; answers already back
  are never sent again).
* Requests in flight: ``workers`` actors (fewer when the round has fewer batches), each running up to
  :data:`BATCHES_PER_WORKER` batches of :data:`CALLS_PER_BATCH` at once (Ray Data's default for asynchronous batch
  functions; ``EQUAL_LLM_MAX_IN_FLIGHT`` does not apply), each batch's requests sent one after another. Each round
  builds a new actor pool (Ray Data does not keep actors between datasets): docs/benchmarks.md measures what that
  costs.
* HTTP 429, 408, 502, 503, 504 and connection errors are retried by Ray Data LLM (``max_retries``, exponential
  backoff from ``backoff_s``). An answer that is an error (``{"error": ...}``: a 500, a 400, a server that refuses
  ``response_format``), and every request left unanswered when the Ray job fails (a request out of Ray's retries fails
  its whole dataset), is sent again by the local ``openai`` backend from the run's process: its retries, timeouts,
  statuses and ``response_format`` fallback decide them, as they would without Ray. Nothing raises out of
  :meth:`generate_stream` for one request; an error in the caller's ``on_answer`` (the cache) propagates.
* Ray Data LLM reports no per-request latency: the ledger's latency runs from the request's preparation on a worker
  to its answer there (time queued behind its batch's earlier requests included).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from equal_dagster.core.ray_setup import RaySettings, pool_size, quiet_ray_data
from equal_dagster.core.extraction.backends.base import Generation, GenerationRequest, SamplingSettings, in_order
from equal_dagster.core.extraction.backends.openai_compatible import OpenAICompatibleBackend

CALLS_PER_BATCH = 8  # requests per Ray Data LLM batch
BATCHES_PER_WORKER = 4  # Ray Data's default for an asynchronous batch function: a killed worker repays at most these


def _payload(row: dict[str, Any]) -> dict[str, Any]:
    return {"index": row["index"], "payload": json.loads(row["body"]), "sent": time.time()}


def _answer(row: dict[str, Any]) -> dict[str, Any]:
    return {"index": row["index"], "response": json.dumps(row["http_response"]), "sent": row["sent"],
            "answered": time.time()}


@dataclass
class RayHttpBackend:
    """An :class:`OpenAICompatibleBackend`'s requests sent through Ray Data LLM (see the module's rules)."""

    http: OpenAICompatibleBackend
    ray: RaySettings
    name: str = "openai"  # the same backend, as far as the cache and the ledger go

    @property
    def model(self) -> str:
        return self.http.model

    @property
    def batch_size(self) -> int | None:
        return self.http.batch_size

    def generate(self, requests: Sequence[GenerationRequest], sampling: SamplingSettings) -> list[Generation]:
        return in_order(len(requests), self.generate_stream(requests, sampling))

    def generate_stream(self, requests: Sequence[GenerationRequest], sampling: SamplingSettings,
                        on_answer: Callable[[int, Generation], None] | None = None,
                        ) -> Iterator[list[tuple[int, Generation]]]:
        if not requests:
            return
        import ray.data
        from ray.data.llm import HttpRequestProcessorConfig, build_processor

        quiet_ray_data()
        headers = {"Authorization": f"Bearer {self.http.api_key}"} if self.http.api_key else None
        blocks = max(1, -(-len(requests) // CALLS_PER_BATCH))
        config = HttpRequestProcessorConfig(
            url=f"{self.http.base_url}/chat/completions", headers=headers, max_retries=self.http.max_retries,
            base_retry_wait_time_in_s=self.http.backoff_s, batch_size=CALLS_PER_BATCH,
            concurrency=pool_size(self.ray, blocks),
            http_request_stage={"num_cpus": self.ray.num_cpus})  # fractional, as every pool (core.compute's rules)
        processor = build_processor(config, preprocess=_payload, postprocess=_answer,
                                    preprocess_map_kwargs={"num_cpus": self.ray.num_cpus / 4},
                                    postprocess_map_kwargs={"num_cpus": self.ray.num_cpus / 4})
        rows = [{"index": i, "body": json.dumps(self.http._body(r, sampling))} for i, r in enumerate(requests)]
        batches = iter(processor(ray.data.from_items(rows, override_num_blocks=blocks)).iter_batches(
            batch_size=None, batch_format="pandas"))
        answered: set[int] = set()
        again: list[int] = []  # an error answer, or no answer: sent again by the local backend, with its rules
        while True:
            try:
                batch = next(batches)
            except StopIteration:
                break
            except Exception:  # noqa: BLE001 - the Ray job failed (a request out of Ray's retries fails its dataset)
                break
            arrived = []
            for index, response, sent, at in zip(batch["index"], batch["response"], batch["sent"], batch["answered"],
                                                 strict=True):
                index = int(index)
                if index in answered:
                    continue  # a retried batch's answer that came back already
                answered.add(index)
                payload = json.loads(response)
                if isinstance(payload, dict) and "error" in payload and "choices" not in payload:
                    again.append(index)
                    continue
                generation = self.http.answer(payload, response, requests[index], at - sent, retries=0)
                arrived.append((index, generation))
                if on_answer is not None:
                    on_answer(index, generation)
            yield arrived
        again += [i for i in range(len(requests)) if i not in answered]
        if again:  # the openai backend's own retries, classification and response_format fallback decide these
            for arrived in self.http.generate_stream([requests[i] for i in again], sampling,
                                                     on_answer=None if on_answer is None else
                                                     (lambda j, generation: on_answer(again[j], generation))):
                yield [(again[j], generation) for j, generation in arrived]

    def close(self) -> None:
        return None
