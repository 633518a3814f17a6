"""The ``vllm`` backend: offline batch generation with vLLM's ``LLM.chat``, in a subprocess.

Rules: a whole round goes to vLLM as one batch (vLLM schedules it far better than we could); each request carries
its JSON schema as structured output (vLLM >= 0.12: ``SamplingParams(structured_outputs=
StructuredOutputsParams(json=schema))``); the engine runs in a child process (:mod:`.vllm_worker`) so that all GPU
memory is released when the batch ends; model, tensor parallel size, maximum model length, GPU memory share and
dtype are settings. vLLM comes with the ``[vllm]`` extra and is imported only in the child; when it is missing the
backend says so before starting anything. The job and its outputs travel as JSON files, so the request building
and the output reading are tested without vLLM.
"""

from __future__ import annotations

import importlib.util
import json
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
            try:
                proc = subprocess.run(
                    [self.python, "-m", "equal_dagster.core.extraction.backends.vllm_worker", str(job_path), str(out_path)],
                    capture_output=True, text=True, timeout=self.timeout_s, check=False,
                )
            except subprocess.TimeoutExpired:
                latency = (time.perf_counter() - began) / len(requests)
                return [Generation("timeout", error=f"the vLLM batch ran past {self.timeout_s:g} s", latency_s=latency)
                        for _ in requests]
            elapsed = time.perf_counter() - began
            if proc.returncode != 0:
                tail = (proc.stderr or proc.stdout or "")[-1500:]
                if "No module named 'vllm'" in tail:
                    raise BackendUnavailable(VLLM_MISSING)
                return [Generation("backend_error", error=f"vLLM worker exited with {proc.returncode}: {tail}",
                                   latency_s=elapsed / len(requests)) for _ in requests]
            return read_vllm_outputs(out_path, len(requests), elapsed)

    def close(self) -> None:
        return None


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
    by_index: dict[int, dict[str, Any]] = {}
    bad_lines = 0
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
                by_index[int(row["index"])] = row
            except (ValueError, KeyError, TypeError):
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
