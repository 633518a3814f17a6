"""Supervised fine-tuning on QA pairs: LoRA through peft, or full fine-tuning, with transformers' Trainer.

Rules:

* Each pair becomes one example: the prompt is the question in the base model's chat template (one user turn and
  the generation prompt); a model without a chat template gets the plain ``"Question: ...\\nAnswer:"`` template.
  The target is the answer followed by the end-of-sequence token.
* The loss is on the answer tokens only: prompt tokens carry the label -100. Prompt and answer are tokenized apart
  and joined, so the boundary is exact; an example longer than ``max_length`` loses the end of its answer (and is
  skipped, counted, if not one answer token would be left).
* LoRA (default): peft's ``LoraConfig`` with ``r``, ``alpha``, ``dropout`` and ``target_modules`` (default: every
  linear layer, peft's ``all-linear``); only the adapter trains. ``method="full"`` trains every weight.
* Saved under ``out_dir``: the adapter (or the full model), the tokenizer, ``training.json`` (configuration, dataset
  hash, loss per logging step, final train loss) and a model card (``README.md``); ``merge=True`` also writes the
  merged model to ``out_dir/merged``.
* Seeded: the same pairs, settings and seed give the same weights on the same machine.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import polars as pl

from equal_dagster.core.export import dataset_hash as export_hash
from equal_dagster.core.rounds import WARMUP_ROUND_ID
from equal_dagster.core.store import Store, table_frame

PLAIN_TEMPLATE = "Question: {question}\nAnswer:"
METHODS = ("lora", "full")


@dataclass(frozen=True)
class TrainingParams:
    base_model: str
    method: str = "lora"
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    target_modules: tuple[str, ...] | None = None  # None: every linear layer
    learning_rate: float = 2e-4
    epochs: float = 1.0
    batch_size: int = 8
    max_length: int = 512
    max_steps: int | None = None  # stop after this many optimizer steps (overrides epochs)
    seed: int = 0
    merge: bool = False
    logging_steps: int = 5

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"unknown training method {self.method!r}: choose one of {', '.join(METHODS)}")
        if self.max_length < 8:
            raise ValueError("max_length must be at least 8 tokens")

    def as_json(self) -> dict:
        out = asdict(self)
        out["target_modules"] = list(self.target_modules) if self.target_modules else None
        return out


@dataclass
class TrainingReport:
    path: str
    examples: int
    skipped_too_long: int
    steps: int
    loss_curve: list[dict[str, float]]
    train_loss: float
    first_loss: float | None
    last_loss: float | None
    trainable_parameters: int
    total_parameters: int
    dataset_hash: str
    seconds: float
    merged_path: str | None = None
    notes: list[str] = field(default_factory=list)


def dataset_hash(pairs: Sequence[tuple[str, str]]) -> str:
    digest = hashlib.sha256()
    for question, answer in pairs:
        digest.update(question.encode() + b"\x1f" + answer.encode() + b"\x1e")
    return digest.hexdigest()


def prompt_text(tokenizer: Any, question: str) -> str:
    """The question as the model is asked it: its chat template, else the plain template."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template([{"role": "user", "content": question}], tokenize=False,
                                             add_generation_prompt=True)
    return PLAIN_TEMPLATE.format(question=question)


def answer_text(tokenizer: Any, answer: str) -> str:
    return (answer if getattr(tokenizer, "chat_template", None) else " " + answer) + (tokenizer.eos_token or "")


def encode_example(tokenizer: Any, question: str, answer: str, max_length: int) -> dict[str, list[int]] | None:
    """input_ids, attention_mask and labels (-100 on the prompt); None when no answer token fits."""
    prompt_ids = tokenizer(prompt_text(tokenizer, question), add_special_tokens=False)["input_ids"]
    answer_ids = tokenizer(answer_text(tokenizer, answer), add_special_tokens=False)["input_ids"]
    if tokenizer.bos_token_id is not None and not getattr(tokenizer, "chat_template", None):
        prompt_ids = [tokenizer.bos_token_id] + prompt_ids
    input_ids = (prompt_ids + answer_ids)[:max_length]
    labels = ([-100] * len(prompt_ids) + answer_ids)[:max_length]
    if all(label == -100 for label in labels):
        return None
    return {"input_ids": input_ids, "attention_mask": [1] * len(input_ids), "labels": labels}


def _model_card(params: TrainingParams, report: TrainingReport) -> str:
    lines = [
        f"# Fine-tuned from {params.base_model}",
        "",
        "Trained by equal-dagster (`core/training.py`) on QA pairs harvested from web crawls.",
        "",
        f"- method: {params.method}" + (f" (LoRA r={params.lora_r}, alpha={params.lora_alpha}, dropout={params.lora_dropout}, "
                                         f"target modules {list(params.target_modules) if params.target_modules else 'all linear'})"
                                         if params.method == "lora" else ""),
        f"- dataset: {report.examples} examples, sha256 {report.dataset_hash}",
        f"- learning rate {params.learning_rate}, epochs {params.epochs}, batch size {params.batch_size}, "
        f"max length {params.max_length}, seed {params.seed}",
        f"- steps: {report.steps}; train loss {report.train_loss:.4f} (first logged {report.first_loss}, last {report.last_loss})",
        "- loss on the answer tokens only; prompts in the base model's chat template",
        "",
        "| step | loss |",
        "|---|---|",
    ] + [f"| {int(p['step'])} | {p['loss']:.4f} |" for p in report.loss_curve]
    return "\n".join(lines) + "\n"


def _examples(tokenizer, pairs: Sequence[tuple[str, str]], max_length: int) -> tuple[list[dict], int]:
    """The encoded examples, and how many pairs were too long for ``max_length``."""
    examples, skipped = [], 0
    for question, answer in pairs:
        encoded = encode_example(tokenizer, question, answer, max_length)
        if encoded is None:
            skipped += 1
        else:
            examples.append(encoded)
    if not examples:
        raise ValueError(f"no training example: {len(pairs)} pairs given, {skipped} too long for max_length {max_length}")
    return examples, skipped


def _model_to_train(params: TrainingParams):
    """The base model, with LoRA adapters on it when the method is ``lora``."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(params.base_model, torch_dtype=torch.float32)
    if params.method == "lora":
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(
            task_type="CAUSAL_LM", r=params.lora_r, lora_alpha=params.lora_alpha, lora_dropout=params.lora_dropout,
            target_modules=list(params.target_modules) if params.target_modules else "all-linear",
        ))
    return model


def _run_trainer(model, tokenizer, examples: list[dict], params: TrainingParams, out: Path,
                 say: Callable[[str], None]) -> tuple[Any, list[dict[str, float]]]:
    """transformers' Trainer over the examples; returns its result and the loss curve (also said step by step)."""
    import torch
    from transformers import DataCollatorForSeq2Seq, PrinterCallback, Trainer, TrainerCallback, TrainingArguments

    curve: list[dict[str, float]] = []

    class LossCurve(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                curve.append({"step": float(state.global_step), "loss": float(logs["loss"])})
                say(f"step {state.global_step}/{state.max_steps}: loss {float(logs['loss']):.4f}")

    arguments = TrainingArguments(
        output_dir=str(out / "checkpoints"), per_device_train_batch_size=params.batch_size,
        num_train_epochs=params.epochs, max_steps=params.max_steps if params.max_steps else -1,
        learning_rate=params.learning_rate, logging_steps=params.logging_steps, save_strategy="no", report_to=[],
        seed=params.seed, data_seed=params.seed, use_cpu=not torch.cuda.is_available(), disable_tqdm=True,
        lr_scheduler_type="linear", warmup_steps=0, dataloader_num_workers=0,
    )
    trainer = Trainer(model=model, args=arguments, train_dataset=examples,
                      data_collator=DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100),
                      callbacks=[LossCurve()])
    trainer.remove_callback(PrinterCallback)  # the loss goes to ``log`` (the run log), not to stdout
    return trainer.train(), curve


def train_model(pairs: Sequence[tuple[str, str]], params: TrainingParams, out_dir: str | Path,
                log: Callable[[str], None] | None = None, data_hash: str | None = None) -> TrainingReport:
    """Fine-tune ``params.base_model`` on (question, answer) pairs and save it under ``out_dir`` (see the rules).
    ``data_hash`` names the dataset in the model card and training.json (default: a hash of the pairs)."""
    from transformers import AutoTokenizer, set_seed

    say = log or (lambda message: None)
    began = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    set_seed(params.seed)
    tokenizer = AutoTokenizer.from_pretrained(params.base_model)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    examples, skipped = _examples(tokenizer, pairs, params.max_length)
    model = _model_to_train(params)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    say(f"training {params.method} on {len(examples):,} examples ({skipped} too long), {trainable:,} of {total:,} "
        "parameters trainable")
    result, curve = _run_trainer(model, tokenizer, examples, params, out, say)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    merged_path = None
    if params.merge and params.method == "lora":
        merged = model.merge_and_unload()
        merged.save_pretrained(out / "merged")
        tokenizer.save_pretrained(out / "merged")
        merged_path = str(out / "merged")
    report = TrainingReport(
        path=str(out), examples=len(examples), skipped_too_long=skipped, steps=int(result.global_step),
        loss_curve=curve, train_loss=float(result.training_loss), first_loss=curve[0]["loss"] if curve else None,
        last_loss=curve[-1]["loss"] if curve else None, trainable_parameters=trainable, total_parameters=total,
        dataset_hash=data_hash or dataset_hash(pairs), seconds=round(time.perf_counter() - began, 2), merged_path=merged_path,
    )
    if not math.isfinite(report.train_loss):
        report.notes.append("the train loss is not finite: lower the learning rate")
    (out / "training.json").write_text(json.dumps({"params": params.as_json(), "report": asdict(report)}, indent=1))
    (out / "README.md").write_text(_model_card(params, report))
    return report


PAIR_SOURCES = ("dataset", "warmup", "rounds")
PairSource = Literal["dataset", "warmup", "rounds"]


def select_training_pairs(kept: pl.DataFrame, pairs_from: str, max_pairs: int | None) -> pl.DataFrame:
    """The kept pairs (best score first) to train on: all of them (``dataset``), the warm-up's (a random sample of
    documents: the baseline), or the bandit rounds'; at most ``max_pairs``."""
    if pairs_from not in PAIR_SOURCES:
        raise ValueError(f"pairs_from {pairs_from!r}: choose one of {', '.join(PAIR_SOURCES)}")
    if pairs_from == "warmup":
        kept = kept.filter(kept["round_id"] == WARMUP_ROUND_ID)
    elif pairs_from == "rounds":
        kept = kept.filter(kept["round_id"] != WARMUP_ROUND_ID)
    return kept.head(max_pairs) if max_pairs is not None else kept


def model_id_for(params: TrainingParams, data_hash: str, name: str | None = None) -> str:
    """The model's id: the name given, else base, method, dataset and settings."""
    settings_hash = hashlib.sha256(json.dumps(params.as_json(), sort_keys=True).encode()).hexdigest()[:6]
    return name or f"{Path(params.base_model).name}-{params.method}-{data_hash[:10]}-{settings_hash}"


def base_model_id(base_model: str) -> str:
    """The id under which the untrained base model's scores are stored."""
    return f"base:{Path(base_model).name}"


@dataclass
class FineTune:
    """One fine-tune, planned from the store (:func:`plan_fine_tune`), trained with no store open (:meth:`train`:
    hours on a real model), then recorded (:func:`record_fine_tune`)."""

    params: TrainingParams
    pairs: pl.DataFrame
    pairs_from: str
    max_pairs: int | None
    model_id: str
    path: Path
    data_hash: str
    report: TrainingReport | None = None

    def train(self, log: Callable[[str], None] | None = None) -> TrainingReport:
        say = log or (lambda message: None)
        say(f"fine-tuning {self.params.base_model} ({self.params.method}) on {self.pairs.height:,} pairs "
            f"({self.pairs_from}) into {self.path}")
        self.report = train_model(list(zip(self.pairs["question"].to_list(), self.pairs["answer"].to_list())),
                                  self.params, self.path, log=say, data_hash=self.data_hash)  # the card names the dataset
        return self.report


def plan_fine_tune(store: Store, params: TrainingParams, models_dir: str | Path, *, pairs_from: str = "dataset",
                   max_pairs: int | None = None, name: str | None = None) -> FineTune:
    """The pairs to train on (:func:`select_training_pairs`), the model's id and folder."""
    pairs = select_training_pairs(store.kept_pairs(), pairs_from, max_pairs)
    if pairs.height == 0:
        raise ValueError(f"no kept QA pair to train on (pairs_from {pairs_from}): materialize qa_dataset first")
    data_hash = export_hash(pairs)
    model_id = model_id_for(params, data_hash, name)
    return FineTune(params, pairs, pairs_from, max_pairs, model_id, Path(models_dir) / model_id, data_hash)


def record_fine_tune(store: Store, tuned: FineTune) -> None:
    """The ``models`` row of a trained model and the pairs it was trained on (``model_training_pairs``)."""
    assert tuned.report is not None, "train the model first"
    store.save_model(table_frame("models", {
        "model_id": [tuned.model_id], "base_model": [tuned.params.base_model], "dataset_hash": [tuned.data_hash],
        "training_config": [json.dumps({**tuned.params.as_json(), "pairs_from": tuned.pairs_from,
                                        "max_pairs": tuned.max_pairs, "examples": tuned.report.examples})],
        "path": [str(tuned.path)], "train_loss": [tuned.report.train_loss],
        "created_at": [datetime.now(timezone.utc).replace(tzinfo=None)],
    }), tuned.pairs["qa_id"].to_list())


def load_trained(path: str | Path, base_model: str | None = None):
    """(model, tokenizer) of a folder ``train_model`` wrote: an adapter is loaded onto its base model."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    if (path / "adapter_config.json").exists():
        from peft import AutoPeftModelForCausalLM

        if base_model is None:
            return AutoPeftModelForCausalLM.from_pretrained(path), tokenizer
        from peft import PeftModel

        return PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_model), path), tokenizer
    return AutoModelForCausalLM.from_pretrained(path), tokenizer
