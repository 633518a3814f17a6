"""The ``openai`` backend: any server that speaks OpenAI's chat-completions API (``vllm serve``, llama.cpp's
server, Ollama, TGI, the OpenAI API itself).

Rules it keeps:

* At most ``max_in_flight`` requests are open at once (as many worker threads, sharing one httpx connection pool).
* Each request has a timeout; a timeout, a connection error, HTTP 429 and HTTP 5xx are retried up to
  ``max_retries`` times with exponential backoff and jitter, honouring a ``Retry-After`` header. What is left
  failing after the retries becomes a ``timeout`` or ``backend_error`` generation (transient: a later round may
  try the document again). Other HTTP errors (400 such as a context too long, 401, 404, ...) and a completion
  that is not JSON or has no choices are ``rejected`` at once (permanent: the same request fails the same way).
  Nothing raises out of :meth:`generate` for one request.
* :meth:`generate_stream` hands each answer over as it arrives, in the thread that received it, so that the
  extractor caches it before that thread sends another request.
* The JSON schema of the expected answer goes in ``response_format`` (``json_schema``), or ``json_object``, or
  nothing, as configured. A server that rejects the field with HTTP 400 gets the request again without it, and
  the backend stops sending it for the rest of the run (parsing copes with free text).
* Tokens come from the response's ``usage``; when a server leaves it out they are counted with the configured
  tokenizer, else estimated (the ledger records which).
"""

from __future__ import annotations

import concurrent.futures
import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from equal_dagster.core.extraction.backends.base import (
    Generation,
    GenerationRequest,
    SamplingSettings,
    TokenCounter,
    in_order,
)

RESPONSE_FORMATS = ("json_schema", "json_object", "none")


@dataclass
class OpenAICompatibleBackend:
    base_url: str
    model: str
    api_key: str | None = None
    max_in_flight: int = 8
    timeout_s: float = 120.0
    max_retries: int = 4
    backoff_s: float = 1.0
    backoff_max_s: float = 30.0
    response_format: str = "json_schema"
    tokenizer_path: str | None = None
    batch_size: int | None = 512
    name: str = "openai"
    requests_sent: int = field(default=0, init=False)
    _counter: TokenCounter = field(init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.base_url:
            raise ValueError("the openai backend needs a base URL (EQUAL_LLM_BASE_URL), e.g. http://127.0.0.1:8000/v1")
        if not self.model:
            raise ValueError("the openai backend needs a model name (EQUAL_LLM_MODEL)")
        if self.response_format not in RESPONSE_FORMATS:
            raise ValueError(f"response_format must be one of {', '.join(RESPONSE_FORMATS)}, not {self.response_format!r}")
        if self.max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        self.base_url = self.base_url.rstrip("/")
        self._counter = TokenCounter(self.tokenizer_path)

    # -- public ----------------------------------------------------------------------------------------
    def generate(self, requests: Sequence[GenerationRequest], sampling: SamplingSettings) -> list[Generation]:
        """One generation per request, in order. ``max_in_flight`` worker threads share one httpx connection
        pool. (httpx's asyncio pool spent most of its time scanning its own queue: 63 requests/s at 32 in flight
        against a 50 ms server, where threads reach several hundred.)"""
        return in_order(len(requests), self.generate_stream(requests, sampling))

    def generate_stream(self, requests: Sequence[GenerationRequest], sampling: SamplingSettings,
                        on_answer: Callable[[int, Generation], None] | None = None,
                        ) -> Iterator[list[tuple[int, Generation]]]:
        """The generations as they arrive: each item lists (request index, generation) of every request answered
        since the previous item. ``on_answer`` runs in the worker thread as soon as an answer arrives, before that
        thread sends another request (so a cache write there leaves at most ``max_in_flight`` answers unsaved at
        any moment). Requests not yet sent are cancelled if the consumer stops early."""
        if not requests:
            return
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        limits = httpx.Limits(max_connections=self.max_in_flight, max_keepalive_connections=self.max_in_flight)
        with httpx.Client(base_url=self.base_url, headers=headers, timeout=httpx.Timeout(self.timeout_s),
                          limits=limits) as client:
            pool = concurrent.futures.ThreadPoolExecutor(max_workers=self.max_in_flight, thread_name_prefix="equal-openai")
            try:
                def one(index: int, request: GenerationRequest) -> Generation:
                    generation = self._one(client, request, sampling)
                    if on_answer is not None:
                        on_answer(index, generation)
                    return generation

                index_of = {pool.submit(one, i, request): i for i, request in enumerate(requests)}
                pending = set(index_of)
                while pending:
                    done, pending = concurrent.futures.wait(pending, return_when=concurrent.futures.FIRST_COMPLETED)
                    yield [(index_of[future], future.result()) for future in done]
            finally:
                pool.shutdown(wait=True, cancel_futures=True)

    def close(self) -> None:
        return None

    # -- internals -------------------------------------------------------------------------------------
    def _body(self, request: GenerationRequest, sampling: SamplingSettings) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": request.messages,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "max_tokens": sampling.max_tokens,
        }
        if sampling.seed is not None:
            body["seed"] = sampling.seed
        if request.json_schema is not None and self.response_format == "json_schema":
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": request.schema_name, "schema": request.json_schema, "strict": True},
            }
        elif request.json_schema is not None and self.response_format == "json_object":
            body["response_format"] = {"type": "json_object"}
        return body

    def _delay(self, attempt: int, retry_after: str | None) -> float:
        if retry_after:
            try:
                return min(float(retry_after), self.backoff_max_s)
            except ValueError:
                pass
        base = min(self.backoff_s * 2 ** (attempt - 1), self.backoff_max_s)
        return base * (0.5 + random.random() / 2)

    def _one(self, client: httpx.Client, request: GenerationRequest, sampling: SamplingSettings) -> Generation:
        start = time.perf_counter()
        retries = 0
        while True:
            body = self._body(request, sampling)
            retry_after = None
            try:
                with self._lock:
                    self.requests_sent += 1
                response = client.post("/chat/completions", json=body)
            except httpx.TimeoutException as exc:
                status, error = "timeout", f"no response within {self.timeout_s:g} s ({type(exc).__name__})"
            except httpx.HTTPError as exc:
                status, error = "backend_error", f"{type(exc).__name__}: {exc}"
            else:
                if response.status_code == 200:
                    return self._success(response, request, start, retries)
                detail = response.text[:300]
                if response.status_code == 400 and "response_format" in body and _mentions_format(detail):
                    self.response_format = "none"  # this server does not take it; parsing copes with free text
                    continue
                status, error = "backend_error", f"HTTP {response.status_code}: {detail}"
                if response.status_code != 429 and response.status_code < 500:
                    return Generation("rejected", error=error, latency_s=time.perf_counter() - start, retries=retries)
                retry_after = response.headers.get("retry-after")
            if retries >= self.max_retries:
                return Generation(status, error=error, latency_s=time.perf_counter() - start, retries=retries)
            retries += 1
            time.sleep(self._delay(retries, retry_after))

    def _success(self, response: httpx.Response, request: GenerationRequest, start: float, retries: int) -> Generation:
        try:
            payload = response.json()
        except ValueError:
            payload = None
        return self.answer(payload, response.text, request, time.perf_counter() - start, retries)

    def answer(self, payload: Any, raw: str, request: GenerationRequest, latency: float, retries: int) -> Generation:
        """The generation a completion (``payload``, parsed from ``raw``) carries: its text, and its tokens from
        ``usage`` or counted. Not a completion: ``rejected``. Also used by the Ray path (:mod:`.ray_http`)."""
        try:
            text = payload["choices"][0]["message"].get("content") or ""
        except (KeyError, IndexError, TypeError, AttributeError) as exc:
            return Generation(
                "rejected", error=f"malformed completion ({type(exc).__name__}): {raw[:200]}",
                latency_s=latency, retries=retries,
            )
        usage = payload.get("usage") or {}
        tokens_in, tokens_out = usage.get("prompt_tokens"), usage.get("completion_tokens")
        if isinstance(tokens_in, int) and isinstance(tokens_out, int):
            return Generation("ok", text=text, tokens_in=tokens_in, tokens_out=tokens_out, latency_s=latency, retries=retries)
        return Generation(
            "ok", text=text, tokens_in=self._counter.count_messages(request.messages), tokens_out=self._counter.count(text),
            latency_s=latency, retries=retries, tokens_counted_by=self._counter.method,
        )


def _mentions_format(detail: str) -> bool:
    detail = detail.lower()
    return "response_format" in detail or "json_schema" in detail
