"""The vLLM engine's own process: ``python -m equal_dagster.core.extraction.backends.vllm_worker --serve``.

It builds ``vllm.LLM`` once, on the first job, and keeps it for every job after: each line on stdin names a job
file (written by :func:`.vllm_offline.build_vllm_job`) and an output file; it sends every conversation of the job
through ``LLM.chat`` in one call with per-request ``SamplingParams`` (JSON-schema structured output through
``StructuredOutputsParams``), writes one JSON line per request (index, text, tokens in and out, finish reason) and
answers one line on stdout. When stdin closes (the run ends) the process exits, and the GPU memory with it.
``python -m ...vllm_worker JOB OUT`` runs one job and exits.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any


def sampling_params_kwargs(job: dict[str, Any], request: dict[str, Any], structured_outputs_params: Any) -> dict[str, Any]:
    kwargs = dict(job["sampling"])
    if request.get("json_schema") is not None:
        kwargs["structured_outputs"] = structured_outputs_params(json=request["json_schema"])
    return kwargs


def run_job(job: dict[str, Any], llm: Any = None) -> list[dict[str, Any]]:
    """The job's outputs, on ``llm`` (None: an engine built from the job's settings)."""
    from vllm import LLM, SamplingParams
    from vllm.sampling_params import StructuredOutputsParams

    llm = llm or LLM(**job["engine"])
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


def write_outputs(rows: list[dict[str, Any]], path: str) -> None:
    with Path(path).open("w", encoding="utf-8") as out:
        for row in rows:
            out.write(json.dumps(row, ensure_ascii=False) + "\n")


def serve(requests: Any, answers: Any) -> int:
    """Jobs from ``requests`` (one JSON line each: ``{"job": path, "out": path}``) on one engine, built on the
    first; one JSON line on ``answers`` per job. Returns at the end of ``requests``."""
    from vllm import LLM

    llm, engine = None, None
    for line in requests:
        paths = json.loads(line)
        job = json.loads(Path(paths["job"]).read_text(encoding="utf-8"))
        if llm is None:
            llm, engine = LLM(**job["engine"]), job["engine"]
        elif job["engine"] != engine:  # the backend keys its engines by their settings: never happens
            raise SystemExit(f"this engine runs {engine}, not {job['engine']}")
        rows = run_job(job, llm)
        write_outputs(rows, paths["out"])
        answers.write(json.dumps({"outputs": len(rows)}) + "\n")
        answers.flush()
    return 0


def main(argv: list[str]) -> int:
    if argv == ["--serve"]:
        # the answers get a descriptor of their own; fd 1 becomes stderr, for this process and every process vLLM
        # starts (its engine core, NCCL, compilers), so that nothing they print can pass for an answer
        answers = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
        os.dup2(2, 1)
        sys.stdout = sys.stderr
        return serve(sys.stdin, answers)
    if len(argv) != 2:
        print("usage: python -m equal_dagster.core.extraction.backends.vllm_worker (--serve | JOB.json OUT.jsonl)",
              file=sys.stderr)
        return 2
    job = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    write_outputs(run_job(job), argv[1])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
