"""The one Definitions of equal-dagster: assets, resources, jobs and sensors."""

from __future__ import annotations

import os

import dagster as dg

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
    dead_run_sensor,
    dataset_job,
    embed_crawl_job,
    embedder_job,
    evaluate_job,
    fine_tune_job,
    ingest_crawl_job,
    new_crawl_sensor,
    next_round_sensor,
    reextraction_schedule,
    warmup_job,
)
from equal_dagster.core.extraction.results import MAX_PAIRS_PER_DOCUMENT
from equal_dagster.core.rounds import MAX_FAILURE_SHARE
from equal_dagster.core.settings import EqualPaths
from equal_dagster.resources.bandit import BanditResource
from equal_dagster.resources.crawls import CrawlFolder
from equal_dagster.resources.embedder import EmbedderResource
from equal_dagster.resources.evaluator import EvaluatorResource
from equal_dagster.resources.llm import ExtractionResource
from equal_dagster.resources.store import StoreResource
from equal_dagster.resources.trainer import TrainerResource


def _env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name, "")
    return value if value.strip() else default


def _optional_int(name: str) -> int | None:
    value = _env(name)
    return int(value) if value else None


def extraction_resource_from_env() -> ExtractionResource:
    """The llm resource from EQUAL_LLM_* variables (docs/configuration.md); the API key stays an EnvVar."""
    max_model_len = _env("EQUAL_VLLM_MAX_MODEL_LEN")
    return ExtractionResource(
        backend=_env("EQUAL_LLM_BACKEND", "rules"),
        model=_env("EQUAL_LLM_MODEL"),
        strategy=_env("EQUAL_LLM_STRATEGY", "equal"),
        refine=_env("EQUAL_LLM_REFINE", "0").lower() in ("1", "true", "yes"),
        prompt_dir=_env("EQUAL_PROMPT_DIR"),
        max_pairs_per_document=_optional_int("EQUAL_LLM_MAX_PAIRS_PER_DOCUMENT") or MAX_PAIRS_PER_DOCUMENT,
        temperature=float(_env("EQUAL_LLM_TEMPERATURE", "0")),
        max_tokens=int(_env("EQUAL_LLM_MAX_TOKENS", "1024")),
        base_url=_env("EQUAL_LLM_BASE_URL"),
        api_key=dg.EnvVar("EQUAL_LLM_API_KEY") if _env("EQUAL_LLM_API_KEY") else None,
        max_in_flight=int(_env("EQUAL_LLM_MAX_IN_FLIGHT", "8")),
        timeout_s=float(_env("EQUAL_LLM_TIMEOUT_S", "120")),
        max_retries=int(_env("EQUAL_LLM_MAX_RETRIES", "4")),
        response_format=_env("EQUAL_LLM_RESPONSE_FORMAT", "json_schema"),
        tokenizer=_env("EQUAL_LLM_TOKENIZER"),
        device=_env("EQUAL_LLM_DEVICE", "auto"),
        tensor_parallel_size=int(_env("EQUAL_VLLM_TENSOR_PARALLEL_SIZE", "1")),
        max_model_len=int(max_model_len) if max_model_len else None,
        gpu_memory_utilization=float(_env("EQUAL_VLLM_GPU_MEMORY_UTILIZATION", "0.9")),
    )


def bandit_resource_from_env(paths: EqualPaths) -> BanditResource:
    """The bandit resource from EQUAL_BANDIT_*, EQUAL_BUDGET* and EQUAL_REFERENCE (docs/configuration.md)."""
    share_threshold = _env("EQUAL_BANDIT_SHARE_THRESHOLD")
    budget_tokens = _env("EQUAL_BUDGET_TOKENS")
    return BanditResource(
        policy=_env("EQUAL_BANDIT_POLICY", "equal_ucb"),
        arms_per_round=_optional_int("EQUAL_BANDIT_ARMS_PER_ROUND"),
        docs_per_arm=_optional_int("EQUAL_BANDIT_DOCS_PER_ARM"),
        alpha=float(_env("EQUAL_BANDIT_ALPHA", "1.0")),
        alpha_decay=_env("EQUAL_BANDIT_ALPHA_DECAY", "1").lower() in ("1", "true", "yes"),
        share_threshold=float(share_threshold) if share_threshold else None,
        epsilon=float(_env("EQUAL_BANDIT_EPSILON", "0.1")),
        warm_start=_env("EQUAL_BANDIT_WARM_START", "1").lower() in ("1", "true", "yes"),
        seed=int(_env("EQUAL_BANDIT_SEED", "0")),
        budget=_env("EQUAL_BUDGET", "10%"),
        budget_tokens=int(budget_tokens) if budget_tokens else None,
        reference=_env("EQUAL_REFERENCE", str(paths.reference_dir / "reference.jsonl")),
        ot_cost=_env("EQUAL_OT_COST", "cosine"),
        max_failure_share=float(_env("EQUAL_MAX_FAILURE_SHARE", str(MAX_FAILURE_SHARE))),
    )


def trainer_resource_from_env(paths: EqualPaths) -> TrainerResource:
    """The trainer resource from EQUAL_BASE_MODEL and EQUAL_TRAIN_* (docs/configuration.md)."""
    max_steps = _env("EQUAL_TRAIN_MAX_STEPS")
    return TrainerResource(
        base_model=_env("EQUAL_BASE_MODEL", str(paths.home / "models" / "base")),
        models_dir=str(paths.home / "models"),
        method=_env("EQUAL_TRAIN_METHOD", "lora"),
        lora_r=int(_env("EQUAL_TRAIN_LORA_R", "8")),
        lora_alpha=int(_env("EQUAL_TRAIN_LORA_ALPHA", "16")),
        learning_rate=float(_env("EQUAL_TRAIN_LEARNING_RATE", "2e-4")),
        epochs=float(_env("EQUAL_TRAIN_EPOCHS", "1")),
        batch_size=int(_env("EQUAL_TRAIN_BATCH_SIZE", "8")),
        max_length=int(_env("EQUAL_TRAIN_MAX_LENGTH", "512")),
        max_steps=int(max_steps) if max_steps else None,
        seed=int(_env("EQUAL_TRAIN_SEED", "0")),
    )


def evaluator_resource_from_env(paths: EqualPaths) -> EvaluatorResource:
    """The evaluator resource from EQUAL_EVAL_* (docs/configuration.md)."""
    extra = _env("EQUAL_EVAL_TASKS", "")
    return EvaluatorResource(
        eval_data=_env("EQUAL_EVAL_DATA", str(paths.home / "evaluation" / "eval.jsonl")),
        tasks_dir=str(paths.home / "eval_tasks"),
        extra_tasks=[t.strip() for t in extra.split(",") if t.strip()],
        batch_size=int(_env("EQUAL_EVAL_BATCH_SIZE", "8")),
        device=_env("EQUAL_EVAL_DEVICE", "cpu"),
    )


def build_definitions(paths: EqualPaths | None = None, llm: ExtractionResource | None = None,
                      bandit: BanditResource | None = None, trainer: TrainerResource | None = None,
                      evaluator: EvaluatorResource | None = None) -> dg.Definitions:
    """Definitions for one EQUAL home (default: from $EQUAL_HOME and $EQUAL_CRAWL_DIR); the llm and bandit resources
    from the environment (EQUAL_LLM_*, EQUAL_BANDIT_*, EQUAL_BUDGET, EQUAL_REFERENCE) unless given."""
    paths = paths or EqualPaths.from_env()
    crawl_folder = CrawlFolder(
        path=str(paths.crawl_dir),
        text_field=os.environ.get("EQUAL_TEXT_FIELD", "text"),
        id_field=os.environ.get("EQUAL_ID_FIELD", "id") or None,
        url_field=os.environ.get("EQUAL_URL_FIELD", "url") or None,
        max_doc_bytes=int(os.environ.get("EQUAL_MAX_DOC_BYTES", "1000000")),
        ingest_memory_mb=int(os.environ.get("EQUAL_INGEST_MEMORY_MB", "0")),
        settle_seconds=float(os.environ.get("EQUAL_CRAWL_SETTLE_SECONDS", "10")),
    )
    return dg.Definitions(
        assets=[corpus, warmup_extractions, embedder, embeddings, clusters, bandit_rounds, qa_dataset, fine_tuned_model,
                eval_scores],
        jobs=[ingest_crawl_job, warmup_job, embedder_job, embed_crawl_job, clusters_job, bandit_round_job, dataset_job,
              fine_tune_job, evaluate_job],
        sensors=[new_crawl_sensor, next_round_sensor, dead_run_sensor],
        schedules=[reextraction_schedule],
        resources={
            "store": StoreResource(database=str(paths.store)),
            "crawl_folder": crawl_folder,
            "llm": llm or extraction_resource_from_env(),
            "bandit": bandit or bandit_resource_from_env(paths),
            "trainer": trainer or trainer_resource_from_env(paths),
            "evaluator": evaluator or evaluator_resource_from_env(paths),
            "embedding_model": EmbedderResource(
                model=_env("EQUAL_EMBEDDER_MODEL", "all-MiniLM-L6-v2"),
                embedders_dir=str(paths.home / "embedders"),
                device=_env("EQUAL_EMBEDDER_DEVICE", "cpu"),
                batch_size=int(_env("EQUAL_EMBEDDER_BATCH_SIZE", "64")),
            ),
        },
    )


defs = build_definitions()
