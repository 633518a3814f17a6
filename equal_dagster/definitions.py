"""The one Definitions of equal-dagster: assets, resources, jobs and sensors."""

from __future__ import annotations

import os

import dagster as dg
import pydantic

from equal_dagster.assets.clusters import clusters
from equal_dagster.assets.corpus import corpus
from equal_dagster.assets.dataset import qa_dataset
from equal_dagster.assets.embedder import embedder
from equal_dagster.assets.embeddings import embeddings
from equal_dagster.assets.extraction import warmup_extractions
from equal_dagster.assets.rounds import bandit_rounds
from equal_dagster.assets.training import eval_scores, fine_tuned_model
from equal_dagster.automation import (
    bandit_round_job,
    clusters_job,
    dataset_job,
    dead_run_sensor,
    embed_crawl_job,
    embedder_job,
    evaluate_job,
    fine_tune_job,
    ingest_crawl_job,
    new_crawl_sensor,
    next_round_sensor,
    reextraction_schedule,
    store_maintenance,
    store_maintenance_schedule,
    warmup_job,
)
from equal_dagster.checks import ASSET_CHECKS
from equal_dagster.core.settings import EqualPaths
from equal_dagster.core.store import STORE_ENV, LakeLocation
from equal_dagster.errors import UsageError
from equal_dagster.loggers import LOGGERS
from equal_dagster.resources.bandit import BanditResource
from equal_dagster.resources.compute import ComputeResource
from equal_dagster.resources.crawls import CrawlFolder
from equal_dagster.resources.embedder import EmbedderResource
from equal_dagster.resources.evaluator import EvaluatorResource
from equal_dagster.resources.llm import ExtractionResource
from equal_dagster.resources.store import StoreResource
from equal_dagster.resources.trainer import TrainerResource

# The environment, one table: variable -> (resource, field). Only the variables that are set (not blank) are passed;
# every other field keeps the default its resource declares (taken from the core dataclass where the algorithm
# defines it). docs/configuration.md documents each variable (a test holds the two equal).
ENVIRONMENT: dict[str, tuple[str, str]] = {
    # crawl folder (ingestion)
    "EQUAL_TEXT_FIELD": ("crawl_folder", "text_field"),
    "EQUAL_ID_FIELD": ("crawl_folder", "id_field"),
    "EQUAL_URL_FIELD": ("crawl_folder", "url_field"),
    "EQUAL_MAX_DOC_BYTES": ("crawl_folder", "max_doc_bytes"),
    "EQUAL_LANGUAGES": ("crawl_folder", "languages"),
    "EQUAL_INGEST_MEMORY_MB": ("crawl_folder", "ingest_memory_mb"),
    "EQUAL_CRAWL_SETTLE_SECONDS": ("crawl_folder", "settle_seconds"),
    # LLM extraction
    "EQUAL_LLM_BACKEND": ("llm", "backend"),
    "EQUAL_LLM_MODEL": ("llm", "model"),
    "EQUAL_LLM_STRATEGY": ("llm", "strategy"),
    "EQUAL_LLM_REFINE": ("llm", "refine"),
    "EQUAL_PROMPT_DIR": ("llm", "prompt_dir"),
    "EQUAL_LLM_MAX_PAIRS_PER_DOCUMENT": ("llm", "max_pairs_per_document"),
    "EQUAL_LLM_HARVEST_PAGES": ("llm", "harvest_pages"),
    "EQUAL_LLM_TEMPERATURE": ("llm", "temperature"),
    "EQUAL_LLM_MAX_TOKENS": ("llm", "max_tokens"),
    "EQUAL_LLM_BASE_URL": ("llm", "base_url"),
    "EQUAL_LLM_MAX_IN_FLIGHT": ("llm", "max_in_flight"),
    "EQUAL_LLM_TIMEOUT_S": ("llm", "timeout_s"),
    "EQUAL_LLM_MAX_RETRIES": ("llm", "max_retries"),
    "EQUAL_LLM_RESPONSE_FORMAT": ("llm", "response_format"),
    "EQUAL_LLM_TOKENIZER": ("llm", "tokenizer"),
    "EQUAL_LLM_DEVICE": ("llm", "device"),
    "EQUAL_VLLM_TENSOR_PARALLEL_SIZE": ("llm", "tensor_parallel_size"),
    "EQUAL_VLLM_MAX_MODEL_LEN": ("llm", "max_model_len"),
    "EQUAL_VLLM_GPU_MEMORY_UTILIZATION": ("llm", "gpu_memory_utilization"),
    # bandit rounds
    "EQUAL_BANDIT_POLICY": ("bandit", "policy"),
    "EQUAL_BANDIT_ARMS_PER_ROUND": ("bandit", "arms_per_round"),
    "EQUAL_BANDIT_DOCS_PER_ARM": ("bandit", "docs_per_arm"),
    "EQUAL_BANDIT_ALPHA": ("bandit", "alpha"),
    "EQUAL_BANDIT_ALPHA_DECAY": ("bandit", "alpha_decay"),
    "EQUAL_BANDIT_SHARE_THRESHOLD": ("bandit", "share_threshold"),
    "EQUAL_BANDIT_EPSILON": ("bandit", "epsilon"),
    "EQUAL_BANDIT_WARM_START": ("bandit", "warm_start"),
    "EQUAL_BANDIT_SEED": ("bandit", "seed"),
    "EQUAL_BUDGET": ("bandit", "budget"),
    "EQUAL_BUDGET_TOKENS": ("bandit", "budget_tokens"),
    "EQUAL_REFERENCE": ("bandit", "reference"),
    "EQUAL_OT_COST": ("bandit", "ot_cost"),
    "EQUAL_MAX_FAILURE_SHARE": ("bandit", "max_failure_share"),
    # fine-tuning
    "EQUAL_BASE_MODEL": ("trainer", "base_model"),
    "EQUAL_TRAIN_METHOD": ("trainer", "method"),
    "EQUAL_TRAIN_LORA_R": ("trainer", "lora_r"),
    "EQUAL_TRAIN_LORA_ALPHA": ("trainer", "lora_alpha"),
    "EQUAL_TRAIN_LEARNING_RATE": ("trainer", "learning_rate"),
    "EQUAL_TRAIN_EPOCHS": ("trainer", "epochs"),
    "EQUAL_TRAIN_BATCH_SIZE": ("trainer", "batch_size"),
    "EQUAL_TRAIN_MAX_LENGTH": ("trainer", "max_length"),
    "EQUAL_TRAIN_MAX_STEPS": ("trainer", "max_steps"),
    "EQUAL_TRAIN_SEED": ("trainer", "seed"),
    # evaluation
    "EQUAL_EVAL_DATA": ("evaluator", "eval_data"),
    "EQUAL_EVAL_TASKS": ("evaluator", "extra_tasks"),
    "EQUAL_EVAL_BATCH_SIZE": ("evaluator", "batch_size"),
    "EQUAL_EVAL_DEVICE": ("evaluator", "device"),
    # compute: where embeddings and a round's calls fan out
    "EQUAL_COMPUTE": ("compute", "engine"),
    "EQUAL_RAY_ADDRESS": ("compute", "address"),
    "EQUAL_RAY_WORKERS": ("compute", "workers"),
    "EQUAL_RAY_NUM_CPUS": ("compute", "num_cpus"),
    "EQUAL_RAY_NUM_GPUS": ("compute", "num_gpus"),
    "EQUAL_RAY_BATCH_SIZE": ("compute", "batch_size"),
    "EQUAL_RAY_SCRATCH": ("compute", "scratch_dir"),
    "EQUAL_RAY_JOB_ADDRESS": ("compute", "job_address"),
    "EQUAL_RAY_JOB_PYTHON": ("compute", "job_python"),
    # embeddings
    "EQUAL_EMBEDDER_MODEL": ("embedding_model", "model"),
    "EQUAL_EMBEDDER_DEVICE": ("embedding_model", "device"),
    "EQUAL_EMBEDDER_BATCH_SIZE": ("embedding_model", "batch_size"),
}
SECRETS = {"EQUAL_LLM_API_KEY": ("llm", "api_key")}  # passed as dg.EnvVar: the value never enters the configuration
# Values that are not one scalar: a comma-separated list; "none" (or an empty string) for "no such field".
_PARSE = {"extra_tasks": lambda v: [t.strip() for t in v.split(",") if t.strip()],
          "languages": lambda v: [t.strip() for t in v.split(",") if t.strip()],
          "id_field": lambda v: None if v.strip().lower() in ("", "none") else v,
          "url_field": lambda v: None if v.strip().lower() in ("", "none") else v,
          "address": lambda v: None if v.strip().lower() in ("", "none") else v.strip(),
          "scratch_dir": lambda v: None if v.strip().lower() in ("", "none") else v.strip()}


def settings_from_env(resource: str) -> dict:
    """The fields of ``resource`` that the environment sets (see :data:`ENVIRONMENT`)."""
    out: dict = {}
    for name, (owner, field) in ENVIRONMENT.items():
        value = os.environ.get(name)
        if owner != resource or value is None or (not value.strip() and field not in _PARSE):
            continue
        out[field] = _PARSE.get(field, lambda v: v.strip())(value)
    for name, (owner, field) in SECRETS.items():
        if owner == resource and os.environ.get(name, "").strip():
            out[field] = dg.EnvVar(name)
    return out


def from_env(cls: type, owner: str, **fixed):
    """``cls(**fixed, **settings_from_env(owner))``; a value the resource refuses raises
    :class:`~equal_dagster.errors.UsageError` naming the variable it came from (not the resource's field)."""
    values = settings_from_env(owner)
    try:
        return cls(**{**fixed, **values})
    except pydantic.ValidationError as exc:
        error = exc.errors()[0]
        field = str(error["loc"][0]) if error.get("loc") else ""
        variable = next((name for name, key in ENVIRONMENT.items() if key == (owner, field) and field in values), None)
        if variable is None:
            raise
        raise UsageError(f"{variable}={os.environ.get(variable, '')!r}: {error['msg']}") from None


def _store_database(paths: EqualPaths) -> str:
    """The store resource's ``database``: a DuckDB file's path, or for a DuckLake store the EnvVar ``EQUAL_STORE``
    (read at run time, with ``EQUAL_STORE_DATA``), so that its connection string, a password perhaps, is never shown
    in the UI's resource settings."""
    return dg.EnvVar(STORE_ENV) if isinstance(paths.store, LakeLocation) else str(paths.store)


def extraction_resource_from_env() -> ExtractionResource:
    """The llm resource from EQUAL_LLM_* (docs/configuration.md); the API key stays an EnvVar."""
    return from_env(ExtractionResource, "llm")


def bandit_resource_from_env(paths: EqualPaths) -> BanditResource:
    """The bandit resource from EQUAL_BANDIT_*, EQUAL_BUDGET* and EQUAL_REFERENCE (docs/configuration.md)."""
    return from_env(BanditResource, "bandit", reference=str(paths.reference_dir / "reference.jsonl"))


def trainer_resource_from_env(paths: EqualPaths) -> TrainerResource:
    """The trainer resource from EQUAL_BASE_MODEL and EQUAL_TRAIN_* (docs/configuration.md)."""
    return from_env(TrainerResource, "trainer", base_model=str(paths.home / "models" / "base"),
                    models_dir=str(paths.home / "models"))


def evaluator_resource_from_env(paths: EqualPaths) -> EvaluatorResource:
    """The evaluator resource from EQUAL_EVAL_* (docs/configuration.md)."""
    return from_env(EvaluatorResource, "evaluator", eval_data=str(paths.home / "evaluation" / "eval.jsonl"),
                    tasks_dir=str(paths.home / "eval_tasks"))


def build_definitions(paths: EqualPaths | None = None, llm: ExtractionResource | None = None,
                      bandit: BanditResource | None = None, trainer: TrainerResource | None = None,
                      evaluator: EvaluatorResource | None = None, compute: ComputeResource | None = None) -> dg.Definitions:
    """Definitions for one EQUAL home (default: from $EQUAL_HOME and $EQUAL_CRAWL_DIR); the llm and bandit resources
    from the environment (EQUAL_LLM_*, EQUAL_BANDIT_*, EQUAL_BUDGET, EQUAL_REFERENCE) unless given."""
    paths = paths or EqualPaths.from_env()
    crawl_folder = from_env(CrawlFolder, "crawl_folder", path=str(paths.crawl_dir))
    return dg.Definitions(
        assets=[corpus, warmup_extractions, embedder, embeddings, clusters, bandit_rounds, qa_dataset, fine_tuned_model,
                eval_scores],
        asset_checks=ASSET_CHECKS,
        jobs=[ingest_crawl_job, warmup_job, embedder_job, embed_crawl_job, clusters_job, bandit_round_job, dataset_job,
              fine_tune_job, evaluate_job, store_maintenance],
        sensors=[new_crawl_sensor, next_round_sensor, dead_run_sensor],
        schedules=[reextraction_schedule, store_maintenance_schedule(isinstance(paths.store, LakeLocation))],
        loggers=LOGGERS,  # the headless commands' console and log file; a run from the UI keeps Dagster's own
        resources={
            "store": StoreResource(database=_store_database(paths)),
            "crawl_folder": crawl_folder,
            "llm": llm or extraction_resource_from_env(),
            "bandit": bandit or bandit_resource_from_env(paths),
            "trainer": trainer or trainer_resource_from_env(paths),
            "evaluator": evaluator or evaluator_resource_from_env(paths),
            "compute": compute or from_env(ComputeResource, "compute"),
            "embedding_model": from_env(EmbedderResource, "embedding_model", embedders_dir=str(paths.home / "embedders")),
        },
    )


defs = build_definitions()
