"""Runs one vLLM job in its own process: ``python -m equal_dagster.core.extraction.backends.vllm_worker JOB OUT``.

Reads the job written by :func:`.vllm_offline.build_vllm_job`, builds ``vllm.LLM`` once, sends every
conversation through ``LLM.chat`` in one call with per-request ``SamplingParams`` (JSON-schema structured output
through ``StructuredOutputsParams``), and writes one JSON line per request: index, text, tokens in and out,
finish reason. The process then exits, and the GPU memory with it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def sampling_params_kwargs(job: dict[str, Any], request: dict[str, Any], structured_outputs_params: Any) -> dict[str, Any]:
    kwargs = dict(job["sampling"])
    if request.get("json_schema") is not None:
        kwargs["structured_outputs"] = structured_outputs_params(json=request["json_schema"])
    return kwargs


def run_job(job: dict[str, Any]) -> list[dict[str, Any]]:
    from vllm import LLM, SamplingParams
    from vllm.sampling_params import StructuredOutputsParams

    llm = LLM(**job["engine"])
    params = [SamplingParams(**sampling_params_kwargs(job, r, StructuredOutputsParams)) for r in job["requests"]]
    outputs = llm.chat([r["messages"] for r in job["requests"]], sampling_params=params, use_tqdm=False)
    rows = []
    for index, output in enumerate(outputs):
        completion = output.outputs[0]
        rows.append({
            "index": index,
            "text": completion.text,
            "tokens_in": len(output.prompt_token_ids or []),
            "tokens_out": len(completion.token_ids or []),
            "finish_reason": completion.finish_reason,
        })
    return rows


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m equal_dagster.core.extraction.backends.vllm_worker JOB.json OUT.jsonl", file=sys.stderr)
        return 2
    job = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    rows = run_job(job)
    with Path(argv[1]).open("w", encoding="utf-8") as out:
        for row in rows:
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
