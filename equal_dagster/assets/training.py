"""Assets ``fine_tuned_model`` (LoRA or full SFT on the QA dataset) and ``eval_scores`` (lm-eval, base against
fine-tuned)."""

from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

import dagster as dg
from pydantic import Field

from equal_dagster.assets.dataset import qa_dataset
from equal_dagster.assets.metadata import check_result, markdown_table, png_markdown, store_snapshot
from equal_dagster.core.checks import loss_fell
from equal_dagster.core.evaluation import evaluate_model, has_chat_template, prepare_local_tasks
from equal_dagster.core.store import table_frame
from equal_dagster.core.training import PairSource, base_model_id, plan_fine_tune, record_fine_tune
from equal_dagster.resources.evaluator import EvaluatorResource
from equal_dagster.resources.store import StoreResource
from equal_dagster.resources.trainer import TrainerResource

class FineTuneConfig(dg.Config):
    pairs_from: PairSource = Field("dataset", description="dataset: every kept pair; warmup: the kept pairs of the "
                                   "warm-up (a random sample of documents: a baseline); rounds: those of the bandit rounds")
    max_pairs: Optional[int] = Field(None, description="train on the best-scored N pairs only")
    model_name: Optional[str] = Field(None, description="a name for the model (default: derived from base and data)")


@dg.asset(
    deps=[qa_dataset],
    group_name="train",
    kinds={"pytorch"},
    pool="duckdb",
    description=(
        "The base model fine-tuned on the kept QA pairs (LoRA with peft, or full SFT), loss on the answer tokens only, "
        "in the base model's chat template; saved under $EQUAL_HOME/models/<model_id> with a model card and a `models` row."
    ),
    check_specs=[dg.AssetCheckSpec("loss_fell", asset="fine_tuned_model",
                                   description="the training loss fell from the first logged step to the last")],
)
def fine_tuned_model(context: dg.AssetExecutionContext, config: FineTuneConfig, store: StoreResource,
                     trainer: TrainerResource) -> dg.MaterializeResult:
    params = trainer.training_params()
    with store.open_store(read_only=True) as db:
        try:
            tuned = plan_fine_tune(db, params, trainer.models_dir, pairs_from=config.pairs_from,
                                   max_pairs=config.max_pairs, name=config.model_name)
        except ValueError as exc:
            raise dg.Failure(description=str(exc)) from exc
    report = tuned.train(log=context.log.info)  # no store held meanwhile: training can take hours
    with store.open_store() as db:
        record_fine_tune(db, tuned)
        snapshot = store_snapshot(db)
    return dg.MaterializeResult(check_results=[check_result("loss_fell", loss_fell(report.first_loss, report.last_loss))],
                                metadata={
        **snapshot,
        "model_id": tuned.model_id,
        "path": str(tuned.path),
        "base_model": params.base_model,
        "method": params.method,
        "pairs_from": config.pairs_from,
        "examples": report.examples,
        "skipped_too_long": report.skipped_too_long,
        "steps": report.steps,
        "train_loss": report.train_loss,
        "first_logged_loss": report.first_loss,
        "last_logged_loss": report.last_loss,
        "trainable_parameters": report.trainable_parameters,
        "dataset_hash": tuned.data_hash,
        "loss_curve": dg.MetadataValue.md(loss_plot(report.loss_curve)),
        "seconds": report.seconds,
    })


def loss_plot(curve: list[dict[str, float]]) -> str:
    """The training loss per logged step, as an image the UI shows."""
    if not curve:
        return "no loss logged"
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(5, 2.6))
    axis.plot([p["step"] for p in curve], [p["loss"] for p in curve], marker=".")
    axis.set_xlabel("step")
    axis.set_ylabel("training loss")
    axis.grid(alpha=0.3)
    markdown = png_markdown(figure, "training loss")
    plt.close(figure)
    return markdown


def score_rows(results: dict[str, dict[tuple[str, str], float]], base_id: str) -> tuple[list[str], list[list[str]]]:
    """The scores table: one column per model, then each tuned model's delta against the base, and, with two tuned
    models (the demo's equal_ucb and random, in that order), the first's delta against the second."""
    tuned = [m for m in results if m != base_id]
    deltas = [(m, base_id) for m in tuned if base_id in results] + ([(tuned[0], tuned[1])] if len(tuned) == 2 else [])
    header = ["task", "metric", *results, *[f"{a} - {b}" for a, b in deltas]]
    rows = []
    for key in sorted({k for r in results.values() for k in r}):
        row = [*key, *[f"{results[m][key]:.4f}" if results[m].get(key) is not None else "" for m in results]]
        for a, b in deltas:
            x, y = results[a].get(key), results[b].get(key)
            row.append(f"{x - y:+.4f}" if x is not None and y is not None else "")
        rows.append(row)
    return header, rows


class EvalConfig(dg.Config):
    model_ids: list[str] = Field(default_factory=list, description="models to evaluate (default: the latest)")
    include_base: bool = Field(True, description="evaluate the base model too")


@dg.asset(
    deps=[fine_tuned_model],
    group_name="evaluate",
    kinds={"python"},
    pool="duckdb",
    description=(
        "lm-evaluation-harness on the base and the fine-tuned models: the packaged local tasks (gold-answer "
        "log-likelihood and multiple-choice accuracy on the evaluation data, offline) and any installed lm-eval task "
        "named in the evaluator resource; results in `eval_scores`, base against fine-tuned with deltas."
    ),
)
def eval_scores(context: dg.AssetExecutionContext, config: EvalConfig, store: StoreResource, trainer: TrainerResource,
                evaluator: EvaluatorResource) -> dg.MaterializeResult:
    with store.open_store(read_only=True) as db:
        models = db.models()
    chosen = models.filter(models["model_id"].is_in(config.model_ids)) if config.model_ids else models.tail(1)
    if config.model_ids and chosen.height != len(set(config.model_ids)):
        missing = sorted(set(config.model_ids) - set(chosen["model_id"].to_list()))
        raise dg.Failure(description=f"no such model: {', '.join(missing)}")
    base = trainer.base_model
    try:
        tasks = prepare_local_tasks(evaluator.tasks_dir, evaluator.eval_data, chat=has_chat_template(base),
                                    prefix=evaluator.task_prefix) + list(evaluator.extra_tasks)
    except FileNotFoundError as exc:
        raise dg.Failure(description=str(exc)) from exc
    runs = ([(base_model_id(base), base, None)] if config.include_base else []) + [
        (row["model_id"], row["base_model"], row["path"]) for row in chosen.iter_rows(named=True)]
    results: dict[str, dict[tuple[str, str], float]] = {}
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    snapshot: dict = {}
    for model_id, base_model, path in runs:
        is_adapter = path is not None and (Path(path) / "adapter_config.json").exists()
        context.log.info(f"evaluating {model_id} on {', '.join(tasks)}")
        scores = evaluate_model(base_model if is_adapter or path is None else path, tasks, tasks_dir=evaluator.tasks_dir,
                                adapter=path if is_adapter else None, batch_size=evaluator.batch_size,
                                device=evaluator.device, limit=evaluator.limit)
        results[model_id] = {(s.task, s.metric): s.value for s in scores}
        with store.open_store() as db:
            db.replace_eval_scores(model_id, table_frame("eval_scores", {
                "model_id": [model_id] * len(scores), "task": [s.task for s in scores],
                "metric": [s.metric for s in scores], "value": [s.value for s in scores],
                "stderr": [s.stderr for s in scores], "n": [s.n for s in scores], "evaluated_at": [now] * len(scores),
            }))
            snapshot = store_snapshot(db)
    header, rows = score_rows(results, base_model_id(base))
    return dg.MaterializeResult(metadata={
        "dagster/row_count": sum(len(r) for r in results.values()),
        **snapshot,
        "models": dg.MetadataValue.json(list(results)),
        "tasks": dg.MetadataValue.json(tasks),
        "scores": dg.MetadataValue.md(markdown_table(header, rows)),
    })
