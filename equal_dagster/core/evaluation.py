"""Evaluation with lm-evaluation-harness (`lm_eval.simple_evaluate`) on tasks that run offline.

Rules:

* Local tasks come from the templates in ``equal_dagster/eval_tasks`` (gold-answer negative log-likelihood, and
  multiple-choice accuracy), rendered by :func:`prepare_local_tasks` into a folder with the absolute path of their
  JSONL data file (``dataset_path: json``): nothing is downloaded. Rows: ``question``, ``answer`` and, for the
  multiple-choice task, ``choices`` and ``gold`` (the index of the right choice).
* The prompt is the one the model was fine-tuned with (``core/training.py``): with a chat template, the question
  is the user turn (lm-eval's ``apply_chat_template``) and the answer follows the generation prompt directly; without
  one, ``"Question: ...\\nAnswer:"`` and the answer after a space.
* Any task lm-eval knows (gsm8k, minerva_math, humaneval, mbpp, ...) can be named beside the local ones; those need
  their datasets in the local Hugging Face cache when offline.
* An adapter folder is evaluated on its base model (lm-eval's ``peft=`` model argument).
* Results come back as rows (task, metric, value, stderr, n), NaN stderr as None.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

CHAT_TEXT = '"{{question}}"'
PLAIN_TEXT = '"Question: {{question}}\\nAnswer:"'


@dataclass(frozen=True)
class EvalScore:
    task: str
    metric: str
    value: float
    stderr: float | None
    n: int | None


def prepare_local_tasks(tasks_dir: str | Path, data_file: str | Path, *, chat: bool, prefix: str = "equal_local") -> list[str]:
    """Render the packaged task templates for ``data_file`` into ``tasks_dir``; returns the task names."""
    tasks_dir, data_file = Path(tasks_dir), Path(data_file).absolute()
    if not data_file.is_file():
        raise FileNotFoundError(f"evaluation data {data_file} does not exist")
    tasks_dir.mkdir(parents=True, exist_ok=True)
    package = resources.files("equal_dagster.eval_tasks")
    (tasks_dir / "utils.py").write_text(package.joinpath("utils.py").read_text())
    names = []
    for template, suffix in (("equal_gold_nll.yaml.template", "nll"), ("equal_multiple_choice.yaml.template", "mc")):
        name = f"{prefix}_{suffix}"
        text = package.joinpath(template).read_text().format(
            task_name=name, data_file=json.dumps(str(data_file)), doc_to_text=CHAT_TEXT if chat else PLAIN_TEXT,
            target_delimiter='""' if chat else '" "',
        )
        (tasks_dir / f"{name}.yaml").write_text(text)
        names.append(name)
    return names


def has_chat_template(model_path: str | Path) -> bool:
    from transformers import AutoTokenizer

    return bool(getattr(AutoTokenizer.from_pretrained(str(model_path)), "chat_template", None))


def evaluate_model(
    model_path: str | Path,
    tasks: list[str],
    *,
    tasks_dir: str | Path | None = None,
    adapter: str | Path | None = None,
    batch_size: int = 8,
    device: str = "cpu",
    limit: int | None = None,
    chat: bool | None = None,
) -> list[EvalScore]:
    """Run ``tasks`` on the model (with ``adapter`` on top when given); the local tasks live in ``tasks_dir``."""
    import lm_eval
    from lm_eval.tasks import TaskManager

    model_args = f"pretrained={model_path},dtype=float32"
    if adapter is not None:
        model_args += f",peft={adapter}"
    if chat is None:
        chat = has_chat_template(adapter or model_path)
    manager = TaskManager(include_path=str(tasks_dir)) if tasks_dir else TaskManager()
    output = lm_eval.simple_evaluate(
        model="hf", model_args=model_args, tasks=tasks, task_manager=manager, device=device, batch_size=batch_size,
        limit=limit, apply_chat_template=chat, log_samples=False, bootstrap_iters=200,
    )
    return scores_from_results(output)


def scores_from_results(output: dict[str, Any]) -> list[EvalScore]:
    """lm-eval's ``results`` as rows: one per (task, metric), the stderr beside its metric."""
    scores = []
    for task, metrics in output["results"].items():
        n = (output.get("n-samples") or {}).get(task, {}).get("effective")
        for key, value in metrics.items():
            if "," not in key or "_stderr," in key or not isinstance(value, (int, float)):
                continue
            metric, _filter = key.split(",", 1)
            stderr = metrics.get(f"{metric}_stderr,{_filter}")
            stderr = float(stderr) if isinstance(stderr, (int, float)) and math.isfinite(stderr) else None
            scores.append(EvalScore(task, metric, float(value), stderr, n))
    return scores


def task_texts(task_names: list[str], tasks_dir: str | Path | None = None) -> list[str]:
    """The prompt and target text of every evaluation document of these lm-eval tasks (test split, else validation):
    what decontamination must guard. Offline, a task's dataset must be in the local Hugging Face cache."""
    from lm_eval.tasks import TaskManager, get_task_dict

    manager = TaskManager(include_path=str(tasks_dir)) if tasks_dir else TaskManager()

    def leaves(tasks: dict) -> list:
        found = []
        for value in tasks.values():
            found += leaves(value) if isinstance(value, dict) else [value]
        return found

    texts: list[str] = []
    for task in leaves(get_task_dict(task_names, manager)):
        docs = task.test_docs() if task.has_test_docs() else task.validation_docs() if task.has_validation_docs() else []
        for doc in docs or []:
            for text in (task.doc_to_text(doc), task.doc_to_target(doc)):
                if isinstance(text, str) and text.strip():
                    texts.append(text)
    return texts
