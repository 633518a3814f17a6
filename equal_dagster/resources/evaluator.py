"""Evaluation settings as a Dagster resource: the local evaluation data, lm-eval tasks, and how to run them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import dagster as dg
from pydantic import Field


class EvaluatorResource(dg.ConfigurableResource):
    """``eval_data`` (JSONL of question, answer, choices, gold) feeds the packaged local tasks and decontamination;
    ``extra_tasks`` names lm-eval tasks installed for the user (gsm8k, minerva_math, humaneval, mbpp, ...)."""

    eval_data: str = Field(description="JSONL evaluation file: question, answer, and choices / gold for accuracy")
    tasks_dir: str = Field(description="where the local task YAMLs are rendered ($EQUAL_HOME/eval_tasks)")
    task_prefix: str = Field("equal_local", description="name prefix of the local tasks (<prefix>_nll, <prefix>_mc)")
    extra_tasks: list[str] = Field(default_factory=list, description="further lm-eval task names")
    batch_size: int = 8
    device: str = "cpu"
    limit: Optional[int] = Field(None, description="evaluate on the first N items of each task only")

    def evaluation_texts(self) -> list[str]:
        """What decontamination guards: every question and answer of the evaluation data, and the prompt and target
        of every document of the extra lm-eval tasks."""
        texts: list[str] = []
        if self.extra_tasks:
            from equal_dagster.core.evaluation import task_texts

            texts += task_texts(list(self.extra_tasks))
        path = Path(self.eval_data)
        if not path.is_file():
            return texts
        for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as exc:
                raise ValueError(f"evaluation data {path}, line {line_no}: not JSON ({exc})") from exc
            texts += [str(row[k]) for k in ("question", "answer") if isinstance(row, dict) and row.get(k)]
        return texts
