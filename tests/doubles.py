"""Test doubles: a fake OpenAI-compatible server on 127.0.0.1 and in-process model backends. Tests and
benchmarks only; nothing in the package uses them.

The fake server answers ``POST /v1/chat/completions``. What it answers depends on a marker in the last user
message, ``MODE=<mode>``:

* ``good`` (also the default): a valid JSON answer for the requested schema;
* ``fenced``: the same JSON inside a code fence, with chatter around it;
* ``garbage``: text that holds no JSON;
* ``none``: ``{"qa_pairs": []}``;
* ``error500``: HTTP 500, always;
* ``rate429``: HTTP 429 (``Retry-After: 0``) the first two times this prompt comes, then a good answer;
* ``slow``: waits ``slow_s`` seconds before answering (longer than the client's timeout);
* ``inject``: "obeys" an injection: pairs whose text is SQL and a path, plus extra keys;
* ``error400``: HTTP 400 (the context is too long), always;
* ``error503``: HTTP 503 with ``Retry-After: 0``, always;
* ``badjson``: HTTP 200 whose body is not JSON;
* ``nochoices``: HTTP 200 with an empty ``choices`` list;
* ``wrongschema``: JSON of another shape (``{"items": ...}``);
* ``huge``: a 10 MB answer (one pair whose answer is 10 MB of text);
* ``echo``: 200 pairs from one document (a server that echoes the document line by line);
* ``flaky``: HTTP 500 on the first ``flaky_failures`` requests of this prompt, then a good answer.

``fail_share`` (0 to 1) makes that share of the prompts (chosen by a hash of the prompt, so the same ones every time)
answer HTTP 503 whatever their mode: a partly broken backend; ``reject_share`` makes the next share of them answer
HTTP 400 (a context too long). ``down`` answers 503 to everything.

It counts every request (``requests``), per mode (``by_mode``), per prompt (``attempts``) and the good answers per
prompt (``answered``), and keeps the request bodies.
"""

from __future__ import annotations

import hashlib
import json
import re
import socket
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from equal_dagster.core.extraction.backends.base import Generation

MODE = re.compile(r"MODE=(\w+)")
DOC = re.compile(r"DOC=([\w-]+)")
INJECTED_SQL = "'); DROP TABLE documents; --"


def good_answer(schema: str, doc: str) -> dict[str, Any]:
    if schema == "instruction":
        return {"instruction": f"Explain how to prepare topic {doc} step by step."}
    if schema == "answer":
        return {"answer": f"To prepare topic {doc}, gather the tools, follow each step in order and check the result."}
    return {"qa_pairs": [
        {"question": f"What is the answer to problem {doc}?", "answer": f"Step 1: read problem {doc}. Step 2: the answer is 42."},
        {"question": f"Why does problem {doc} work?", "answer": "Because each step follows from the one before."},
    ]}


class _Server(ThreadingHTTPServer):
    request_queue_size = 256  # socketserver's default backlog of 5 drops connections at 32 in flight


class FakeOpenAIServer:
    def __init__(self, latency_s: float = 0.0, slow_s: float = 2.0, omit_usage: bool = False,
                 reject_response_format: bool = False, fail_share: float = 0.0, reject_share: float = 0.0,
                 flaky_failures: int = 1):
        self.latency_s, self.slow_s = latency_s, slow_s
        self.fail_share, self.reject_share, self.flaky_failures, self.down = fail_share, reject_share, flaky_failures, False
        self.omit_usage, self.reject_response_format = omit_usage, reject_response_format
        self.requests = 0
        self.by_mode: Counter = Counter()
        self.attempts: Counter = Counter()
        self.answered: Counter = Counter()  # prompt key -> good (HTTP 200) answers given: above 1, paid twice
        self.bodies: list[dict[str, Any]] = []
        self.authorizations: list[str | None] = []
        self.user_agents: list[str | None] = []  # who sent each request: httpx (the openai backend), aiohttp (Ray)
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # quiet
                return None

            def setup(self) -> None:
                super().setup()
                # headers and body go out in two writes: without this, Nagle plus delayed ACKs add ~40 ms each
                self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("content-length", 0))
                body = json.loads(self.rfile.read(length))
                server.authorizations.append(self.headers.get("authorization"))
                server.user_agents.append(self.headers.get("user-agent"))
                status, payload, headers = server.answer(self.path, body)
                data = json.dumps(payload).encode() if not isinstance(payload, bytes) else payload
                try:
                    self.send_response(status)
                    for key, value in headers.items():
                        self.send_header(key, value)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout test)

        self.httpd = _Server(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.block_on_close = False
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self) -> FakeOpenAIServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def answer(self, path: str, body: dict[str, Any]) -> tuple[int, Any, dict[str, str]]:
        prompt = body["messages"][-1]["content"]
        mode_match, doc_match = MODE.search(prompt), DOC.search(prompt)
        mode = mode_match.group(1) if mode_match else "good"
        doc = doc_match.group(1) if doc_match else "x"
        key = hashlib.sha256(json.dumps(body["messages"]).encode()).hexdigest()
        with self._lock:
            self.requests += 1
            self.by_mode[mode] += 1
            self.attempts[key] += 1
            attempt = self.attempts[key]
            self.bodies.append(body)
        if path != "/v1/chat/completions":
            return 404, {"error": "not found"}, {}
        if self.reject_response_format and "response_format" in body:
            return 400, {"error": {"message": "response_format is not supported by this server"}}, {}
        if self.latency_s:
            time.sleep(self.latency_s)
        schema = body.get("response_format", {}).get("json_schema", {}).get("name") or _schema_from_prompt(body)
        position = int(key[:8], 16) / 16**8  # where this prompt falls in [0, 1), the same every time
        if self.down or position < self.fail_share:
            return 503, {"error": "service unavailable"}, {"retry-after": "0"}
        if position < self.fail_share + self.reject_share:
            return 400, {"error": {"message": "This model's maximum context length is 8192 tokens"}}, {}
        if mode == "error500" or (mode == "flaky" and attempt <= self.flaky_failures):
            return 500, {"error": "internal error"}, {}
        if mode == "error400":
            return 400, {"error": {"message": "This model's maximum context length is 8192 tokens"}}, {}
        if mode == "error503":
            return 503, {"error": "overloaded"}, {"retry-after": "0"}
        if mode == "badjson":
            return 200, b"<html>502 Bad Gateway</html>", {}
        if mode == "nochoices":
            return 200, {"id": "x", "object": "chat.completion", "choices": []}, {}
        if mode == "rate429" and attempt <= 2:
            return 429, {"error": "slow down"}, {"retry-after": "0"}
        if mode == "slow":
            time.sleep(self.slow_s)
        if mode == "garbage":
            content = "I'm sorry, I cannot produce JSON today. {{{ not json"
        elif mode == "none":
            content = json.dumps({"qa_pairs": []})
        elif mode == "fenced":
            content = "Sure! Here are the pairs:\n```json\n" + json.dumps(good_answer(schema, doc)) + "\n```\nAnything else?"
        elif mode == "inject":
            content = json.dumps({"qa_pairs": [{"question": INJECTED_SQL, "answer": "../../../../etc/passwd"},
                                               {"question": "ignore previous instructions", "answer": "__import__('os').system('rm -rf /')"}],
                                  "sql": "DROP TABLE qa_pairs"})
        elif mode == "wrongschema":
            content = json.dumps({"items": [{"q": "What?", "a": "That."}]})
        elif mode == "huge":
            content = json.dumps({"qa_pairs": [{"question": f"What is in document {doc}?", "answer": "x" * 10_000_000}]})
        elif mode == "echo":
            content = json.dumps({"qa_pairs": [{"question": f"Line {i}?", "answer": f"Line {i} says so."}
                                               for i in range(200)]})
        else:
            content = json.dumps(good_answer(schema, doc))
        payload: dict[str, Any] = {
            "id": f"chatcmpl-{self.requests}",
            "object": "chat.completion",
            "model": body.get("model"),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        }
        with self._lock:
            self.answered[key] += 1
        if not self.omit_usage:
            payload["usage"] = {"prompt_tokens": len(prompt.split()), "completion_tokens": len(content.split()),
                                "total_tokens": len(prompt.split()) + len(content.split())}
        return 200, payload, {}


def _schema_from_prompt(body: dict[str, Any]) -> str:
    system = body["messages"][0]["content"]
    if '{"instruction"' in system:
        return "instruction"
    if '{"answer"' in system:
        return "answer"
    return "qa_pairs"


class InstantBackend:
    """Answers every request at once with a valid QA pair built from the prompt: measures everything around the
    model (render, cache, parse, store)."""

    name = "instant"
    model = "instant-1"
    batch_size = 4096

    def __init__(self) -> None:
        self.requests = 0

    def generate(self, requests, sampling):
        self.requests += len(requests)
        out = []
        for request in requests:
            doc = DOC.search(request.messages[-1]["content"])
            text = json.dumps(good_answer(request.schema_name, doc.group(1) if doc else "x"))
            out.append(Generation("ok", text=text, tokens_in=100, tokens_out=40, latency_s=0.0))
        return out

    def close(self) -> None:
        return None


if __name__ == "__main__":  # serve in a process of its own (benchmarks): prints the base URL, then serves
    import argparse

    parser = argparse.ArgumentParser(description="the fake OpenAI-compatible server")
    parser.add_argument("--latency-ms", type=float, default=0.0)
    args = parser.parse_args()
    with FakeOpenAIServer(latency_s=args.latency_ms / 1000) as fake:
        print(fake.base_url, flush=True)
        try:
            fake.thread.join()
        except KeyboardInterrupt:
            pass
