"""The ``vllm`` backend: offline batch generation with vLLM's ``LLM.chat``, in an engine process kept across rounds.

Rules: a whole round goes to vLLM as one batch (vLLM schedules it far better than we could); each request carries
its JSON schema as structured output (vLLM >= 0.12: ``SamplingParams(structured_outputs=
StructuredOutputsParams(json=schema))``); the engine runs in a child process (:mod:`.vllm_worker`), started on the
first batch and kept for the batches after it (a run of 146 rounds loads the model once, not 146 times), one engine
at a time; it stops, and all its GPU memory is released, when the run's process ends (or :func:`stop_engines`), or
when a batch runs past its time limit; model, tensor parallel size, maximum model length, GPU memory share and
dtype are settings. vLLM comes with the ``[vllm]`` extra and is imported only in the child; when it is missing the
backend says so before starting anything. The job and its outputs travel as JSON files, so the request building
and the output reading are tested without vLLM.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from equal_dagster.core.extraction.backends.base import BackendUnavailable, Generation, GenerationRequest, SamplingSettings

VLLM_MISSING = (
    "the vllm backend needs vLLM, which is not installed here: on a GPU host run "
    "`pip install 'equal-dagster[vllm]'`, or choose the openai backend against a `vllm serve` server"
)


@dataclass
class VLLMBackend:
    model: str
    tensor_parallel_size: int = 1
    max_model_len: int | None = None
    gpu_memory_utilization: float = 0.9
    dtype: str = "auto"
    timeout_s: float | None = None  # for the whole batch; None: no limit
    python: str = sys.executable
    batch_size: int | None = None  # the whole round in one batch
    name: str = "vllm"

    def __post_init__(self) -> None:
        if not self.model:
            raise ValueError("the vllm backend needs a model (EQUAL_LLM_MODEL): a hub id or a local folder")
        if not 0 < self.gpu_memory_utilization <= 1:
            raise ValueError("gpu_memory_utilization must be in (0, 1]")

    def engine_settings(self) -> dict[str, Any]:
        settings: dict[str, Any] = {
            "model": self.model,
            "tensor_parallel_size": self.tensor_parallel_size,
            "gpu_memory_utilization": self.gpu_memory_utilization,
            "dtype": self.dtype,
        }
        if self.max_model_len:
            settings["max_model_len"] = self.max_model_len
        return settings

    def generate(self, requests: Sequence[GenerationRequest], sampling: SamplingSettings) -> list[Generation]:
        if not requests:
            return []
        if importlib.util.find_spec("vllm") is None:
            raise BackendUnavailable(VLLM_MISSING)
        job = build_vllm_job(requests, sampling, self.engine_settings())
        with tempfile.TemporaryDirectory(prefix="equal-vllm-") as tmp:
            job_path, out_path = Path(tmp) / "job.json", Path(tmp) / "outputs.jsonl"
            job_path.write_text(json.dumps(job), encoding="utf-8")
            began = time.perf_counter()
            problem = engine_for(self.python, job["engine"]).run(job_path, out_path, len(requests), self.timeout_s)
            latency = (time.perf_counter() - began) / len(requests)
            if problem == TIMED_OUT:
                return [Generation("timeout", error=f"the vLLM batch ran past {self.timeout_s:g} s", latency_s=latency)
                        for _ in requests]
            if problem is not None:
                if "No module named 'vllm'" in problem:
                    raise BackendUnavailable(VLLM_MISSING)
                return [Generation("backend_error", error=problem, latency_s=latency) for _ in requests]
            return read_vllm_outputs(out_path, len(requests), latency * len(requests))

    def close(self) -> None:
        """Nothing: the engine stays for the next round (:func:`stop_engines` stops it)."""
        return None


TIMED_OUT = "timeout"


class EngineProcess:
    """One vLLM engine in its own process (:mod:`.vllm_worker` ``--serve``): jobs go in one line each on its stdin,
    each answered by one line on its stdout; closing its stdin ends it."""

    def __init__(self, python: str):
        self.log = tempfile.TemporaryFile(mode="w+", encoding="utf-8")  # its stderr: the tail goes into an error
        # its own process group: vLLM starts engine-core and tensor-parallel processes that hold GPU memory too, and
        # stopping the engine must stop them all
        self.proc = subprocess.Popen(
            [python, "-m", "equal_dagster.core.extraction.backends.vllm_worker", "--serve"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, text=True, bufsize=1,
            start_new_session=True)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def run(self, job_path: Path, out_path: Path, expected: int, timeout_s: float | None) -> str | None:
        """Run one job of ``expected`` requests: None when its outputs are written, :data:`TIMED_OUT` (the engine is
        then stopped: a batch past its limit may never end), or why the engine failed (it is then stopped)."""
        try:
            self.proc.stdin.write(json.dumps({"job": str(job_path), "out": str(out_path)}) + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, ValueError):
            return self._failure()
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout_s)  # the pipe carries one line per job
        if not ready:
            self.stop(kill=True)
            return TIMED_OUT
        line = self.proc.stdout.readline()
        if not line:
            return self._failure()
        try:
            answered = json.loads(line).get("outputs")
        except (ValueError, AttributeError):
            answered = None
        if answered != expected:  # not the answer the protocol gives: the engine cannot be trusted with more jobs
            failure = f"vLLM worker answered {line.strip()[:200]!r}, not {{'outputs': {expected}}}"
            self.stop(kill=True)
            return failure
        return None

    def _failure(self) -> str:
        try:
            code = self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:  # its stdin or stdout broke, yet it runs on
            self._signal(signal.SIGKILL)
            code = self.proc.wait()
        self._signal(signal.SIGKILL)  # what it started (an engine core) goes with it
        self.log.seek(0)
        return f"vLLM worker exited with {code}: {self.log.read()[-1500:]}"

    def _signal(self, signum: int) -> None:
        try:
            os.killpg(self.proc.pid, signum)
        except (ProcessLookupError, PermissionError):
            pass

    def stop(self, kill: bool = False) -> None:
        """Stop the engine and every process it started (their GPU memory freed): closing its stdin ends it
        cleanly; ``kill`` (or a clean stop that takes over 60 s): SIGTERM, then SIGKILL, to its process group."""
        if self.alive() and not kill:
            with contextlib.suppress(BrokenPipeError, ValueError):
                self.proc.stdin.close()
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                kill = True
        if kill:
            self._signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        self._signal(signal.SIGKILL)
        self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            with contextlib.suppress(OSError, ValueError):
                stream.close()
        self.log.close()


_ENGINES: dict[str, EngineProcess] = {}  # (python, engine settings) -> its process: one at a time


def engine_for(python: str, engine: dict[str, Any]) -> EngineProcess:
    """The running engine for these settings, started when there is none (or it died); another engine is stopped
    first (two would share one GPU's memory)."""
    key = json.dumps([python, engine], sort_keys=True)
    current = _ENGINES.get(key)
    if current is not None and current.alive():
        return current
    stop_engines()
    _ENGINES[key] = EngineProcess(python)
    return _ENGINES[key]


def stop_engines() -> None:
    """Stop every engine this process started (their GPU memory freed): at the end of a run, and at exit."""
    while _ENGINES:
        _ENGINES.popitem()[1].stop()


atexit.register(stop_engines)


def build_vllm_job(requests: Sequence[GenerationRequest], sampling: SamplingSettings, engine: dict[str, Any]) -> dict[str, Any]:
    """The JSON job the worker runs: engine arguments for ``vllm.LLM``, ``SamplingParams`` keyword arguments,
    and the conversations with their structured-output schemas."""
    params: dict[str, Any] = {"temperature": sampling.temperature, "top_p": sampling.top_p, "max_tokens": sampling.max_tokens}
    if sampling.seed is not None:
        params["seed"] = sampling.seed
    return {
        "engine": dict(engine),
        "sampling": params,
        "requests": [{"messages": list(r.messages), "json_schema": r.json_schema} for r in requests],
    }


def read_vllm_outputs(path: Path, expected: int, elapsed_s: float = 0.0) -> list[Generation]:
    """Generations from the worker's JSONL output, in request order; a request with no output line (or a line
    that does not decode) becomes a ``backend_error``."""
    rows: list[Any] = []
    bad_lines = 0
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                rows.append(json.loads(line))
            except ValueError:
                bad_lines += 1
    return vllm_generations(rows, expected, elapsed_s, bad_lines)


def vllm_generations(rows: Sequence[Any], expected: int, elapsed_s: float = 0.0, bad_lines: int = 0) -> list[Generation]:
    """Generations from the worker's output rows (``vllm_worker.run_job``), in request order; a request with no
    row (or a row that does not decode) becomes a ``backend_error``."""
    by_index: dict[int, dict[str, Any]] = {}
    for row in rows:
        try:
            by_index[int(row["index"])] = row
        except (KeyError, TypeError, ValueError):
            bad_lines += 1
    latency = elapsed_s / expected if expected else 0.0
    out = []
    for index in range(expected):
        row = by_index.get(index)
        if row is None or not isinstance(row.get("text"), str):
            note = f" ({bad_lines} undecodable output lines)" if bad_lines else ""
            out.append(Generation("backend_error", error=f"vLLM returned no output for request {index}{note}", latency_s=latency))
            continue
        out.append(Generation("ok", text=row["text"], tokens_in=row.get("tokens_in"), tokens_out=row.get("tokens_out"),
                              latency_s=latency))
    return out
