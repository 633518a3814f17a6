"""`equal run` and `equal rounds`: the pipeline materialized through Dagster's API without the UI, for benchmarks
and scripts. They run the very assets and jobs of `definitions.py` on the home's persistent instance (the runs show
up in `make ui` afterwards); there is no second code path."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
from dagster._core.utils import make_new_run_id

from equal_dagster.core.ray_setup import ray_session
from equal_dagster.core.corpus import CRAWL_SUFFIXES, display_name
from equal_dagster.core.crawls import scan_crawl_folder
from equal_dagster.core.embedding import Embedder
from equal_dagster.core.extraction.backends.vllm_offline import stop_engines
from equal_dagster.core.rounds import (
    MAX_FAILURE_SHARE,
    RoundAlreadyPlayed,
    harvest_summary,
    round_key,
)
from equal_dagster.core.settings import EqualPaths
from equal_dagster.core.store import LakeLocation, Store, store_exists
from equal_dagster.core.warmup import WARMUP_FRACTION
from equal_dagster.definitions import build_definitions
from equal_dagster.errors import HeadlessRunError, UsageError
from equal_dagster.instance import (
    HOST_TAG,
    PoolWatch,
    RunLock,
    persistent_instance,
    release_dead_runs,
)
from equal_dagster.logs import active_log, console_level, say_err
from equal_dagster.partitions import crawls_partitions, rounds_partitions
from equal_dagster.resources.bandit import BanditResource

MAX_ROUNDS = 100_000
READ_WAIT_S = 600.0  # between runs, how long `equal run` / `equal rounds` wait for a store another process writes
MAX_ROUNDS_TAKEN = 100  # rounds another run may take from under `equal rounds` before it gives up


def materialization_metadata(result: dg.ExecuteInProcessResult, node: str) -> dict:
    """The metadata values of ``node``'s (first) materialization in an in-process run."""
    return {k: v.value for k, v in result.asset_materializations_for_node(node)[0].metadata.items()}


def execute_job(defs: dg.Definitions, job: str, instance: dg.DagsterInstance, *, partition_key: str | None = None,
                run_config: dict | None = None, say: Callable[[str], None] = say_err) -> dg.ExecuteInProcessResult:
    """Run ``job`` in this process on the home's instance; raise :class:`HeadlessRunError` with the step's error if it
    fails. Runs whose process died are failed first (their slot of the duckdb pool freed), and :class:`PoolWatch`
    keeps watch while this run may wait for the pool. Under an `equal` command, the run logs to its console and log
    file (:mod:`equal_dagster.logs`); called from a script, to Dagster's console logger at
    ``EQUAL_CONSOLE_LOG_LEVEL`` (default INFO: the steps' progress lines, not Dagster's debug events). The run log
    in the instance keeps every event either way."""
    release_dead_runs(instance, say)
    run_id = make_new_run_id()
    log = active_log()
    loggers = log.run_config() if log else {"console": {"config": {"log_level": console_level("INFO")}}}
    config = {**(run_config or {}), "loggers": loggers}
    with RunLock(instance, run_id), PoolWatch(instance, run_id, say):
        result = defs.resolve_job_def(job).execute_in_process(
            instance=instance, partition_key=partition_key, run_config=config, raise_on_error=False, run_id=run_id,
            tags={HOST_TAG: socket.gethostname()})
    if not result.success:
        failures = [e for e in result.all_events if e.is_step_failure]
        data = failures[0].step_failure_data if failures else None
        why = data.error.message.strip() if data and data.error else ""
        refusal = data.user_failure_data.metadata.get("refusal") if data and data.user_failure_data else None
        raise HeadlessRunError(f"{job}{f'[{partition_key}]' if partition_key else ''} failed (run {result.run_id}): {why}",
                               refusal.value if refusal is not None else None)
    return result


def compute_session(defs: dg.Definitions) -> AbstractContextManager:
    """With the ``ray`` compute engine, one Ray for all of a command's runs (each step would otherwise start and stop
    its own); nothing with ``local``."""
    settings = defs.resources["compute"].ray_settings()
    return ray_session(settings) if settings is not None else nullcontext()


def bandit_settings_of_last_round(store_path: Path | LakeLocation) -> dict | None:
    """The bandit resource's settings the latest round was played with (None: no round yet), so that `equal rounds`
    goes on as the rounds before it went."""
    with Store.open(store_path, read_only=True, wait_s=READ_WAIT_S) as store:
        rows = [r for r in store.rounds().iter_rows(named=True) if r["round_no"] >= 1 and r["config"]]
    if not rows:
        return None
    config = json.loads(rows[-1]["config"])
    bandit, budget, ot = config["bandit"], config["budget"], config["ot"]
    if budget.get("share") is not None:
        budget_text = f"{budget['share'] * 100:g}%"
    else:
        budget_text = str(budget["documents"]) if budget.get("documents") else ""
    return {**bandit, "budget": budget_text, "budget_tokens": budget.get("tokens"),
            "reference": config["reference"]["path"], "ot_cost": ot["cost"], "ot_exact_max_cells": ot["exact_max_cells"],
            "sinkhorn_reg": ot["sinkhorn_reg"], "max_failure_share": config.get("max_failure_share", MAX_FAILURE_SHARE)}


def play_rounds(defs: dg.Definitions, instance: dg.DagsterInstance, store_path: Path | LakeLocation, count: int | None,
                say: Callable[[str], None] = say_err) -> list[dict]:
    """Play the next ``count`` rounds in order (None: until the budget or the candidates are spent); returns each
    round's metadata. Stops early, without error, once a round reports the budget spent."""
    results = []
    taken = 0
    while len(results) < (count if count is not None else MAX_ROUNDS):
        key = round_key(_next_round(store_path))
        ensure_partitions(instance, rounds_partitions.name, [key])
        try:
            result = execute_job(defs, "bandit_round", instance, partition_key=key, say=say)
        except HeadlessRunError as exc:
            # another run played this round while this one waited for the store: go on with the next one
            if exc.refusal != RoundAlreadyPlayed.__name__ or taken >= MAX_ROUNDS_TAKEN:
                raise
            taken += 1
            say(f"round {key} was played by another run meanwhile; going on with the next round")
            continue
        metadata = materialization_metadata(result, "bandit_rounds")
        results.append(metadata)
        say(f"round {key}: {metadata['documents']} documents, {metadata['qa_pairs']} QA pairs, reward "
            f"{metadata['round_reward']:.4f}; {metadata['documents_spent_total']} documents spent")
        # a round that found no pairs says why in the run's own warning, which the console shows
        if metadata["budget_spent"]:
            break
    return results


def ensure_partitions(instance: dg.DagsterInstance, name: str, keys: list[str]) -> None:
    """Add the missing ``keys`` to dynamic partitions ``name``; another process adding the same ones at the same
    time is fine."""
    missing = [k for k in keys if k not in set(instance.get_dynamic_partitions(name))]
    if not missing:
        return
    try:
        instance.add_dynamic_partitions(name, missing)
    except Exception:  # noqa: BLE001 - a concurrent add (a unique constraint); anything else shows below
        still = [k for k in keys if k not in set(instance.get_dynamic_partitions(name))]
        if still:
            raise


def _next_round(store_path: Path | LakeLocation) -> int:
    with Store.open(store_path, read_only=True, wait_s=READ_WAIT_S) as store:
        return (store.last_round_no() or 0) + 1


@dataclass(frozen=True)
class Stage:
    """One step before the rounds: ``job`` run once, or once per crawl (a ``crawls`` partition)."""

    name: str
    job: str
    per_crawl: bool = False


# Everything a bandit round needs, whatever its policy, in order: `equal run`, `equal demo` and the benchmarks run
# exactly these jobs.
STAGES = (Stage("ingest", "ingest_crawl", per_crawl=True), Stage("warm-up", "warmup"), Stage("embedder", "tune_embedder"),
          Stage("embeddings", "embed_crawl", per_crawl=True), Stage("clusters", "cluster"))
StageResult = Callable[[Stage, "str | None", dg.ExecuteInProcessResult], None]


def run_stages_before_rounds(defs: dg.Definitions, instance: dg.DagsterInstance, crawls: list[str], seed: int, *,
                             warmup_fraction: float = WARMUP_FRACTION, tune_embedder: bool = True,
                             recluster: bool = True, say: Callable[[str], None] = say_err,
                             skipped: dict[str, str] | None = None, announce: Callable[[Stage, str | None], str] | None = None,
                             on_result: StageResult | None = None) -> dict[str, float]:
    """Run :data:`STAGES` (the embedder's only with ``tune_embedder``; the clusters anew with ``recluster``). A crawl
    whose ingestion fails is reported, recorded in ``skipped`` (name -> why) and left out; the others go on; a corpus
    where every row was quarantined stops here, with the reasons. ``announce`` gives the line said before a stage
    (default: its name), ``on_result`` sees each stage's result. Returns the seconds of each stage."""
    ensure_partitions(instance, crawls_partitions.name, crawls)
    timings: dict[str, float] = {}
    skipped = {} if skipped is None else skipped
    configs = {"warmup": {"warmup_extractions": {"fraction": warmup_fraction, "seed": seed}},
               "tune_embedder": {"embedder": {"seed": seed}},
               "cluster": {"clusters": {"recluster": recluster, "seed": seed}}}

    for stage in STAGES:
        if stage.job == "tune_embedder" and not tune_embedder:
            continue
        for crawl in (crawls if stage.per_crawl else [None]):
            if crawl in skipped:
                continue
            say(announce(stage, crawl) if announce else f"{stage.name} ...")
            tick = time.perf_counter()
            run_config = {"ops": {op: {"config": c} for op, c in configs[stage.job].items()}} if stage.job in configs else None
            try:
                result = execute_job(defs, stage.job, instance, partition_key=crawl, run_config=run_config, say=say)
            except HeadlessRunError as exc:
                if stage.job != "ingest_crawl":
                    raise
                skipped[crawl] = str(exc)
                say(f"crawl {crawl} skipped: {exc}")
                continue
            finally:
                timings[stage.name] = round(timings.get(stage.name, 0.0) + time.perf_counter() - tick, 2)
            if on_result:
                on_result(stage, crawl, result)
        if stage.job == "ingest_crawl":
            _check_ingested(defs, [c for c in crawls if c not in skipped], skipped)
    return timings


def _check_ingested(defs: dg.Definitions, crawls: list[str], skipped: dict[str, str]) -> None:
    if not crawls:
        raise HeadlessRunError("no crawl could be ingested: " + "; ".join(f"{c}: {why}" for c, why in skipped.items()))
    database = defs.resources["store"].database
    database = database.get_value() if isinstance(database, dg.EnvVar) else database  # EQUAL_STORE, read now
    with Store.open(database, read_only=True, wait_s=READ_WAIT_S) as store:
        if store.document_count() == 0:
            reasons = list(store.quarantine()["reason"].value_counts(sort=True).iter_rows())
            if not reasons:
                raise UsageError(f"no document was kept from {', '.join(crawls)}: no row was found (its files hold no "
                                 f"row, or none ends in {', '.join(CRAWL_SUFFIXES)})")
            raise UsageError(
                f"no document was kept from {', '.join(crawls)}: every row was quarantined ("
                + ", ".join(f"{n:,} {reason}" for reason, n in reasons)
                + f"); the quarantine table of {store.path} has each row's reason")


@dataclass(frozen=True)
class RunPlan:
    """What `equal run` will do, checked before any run is launched (:func:`plan_run`)."""

    paths: EqualPaths
    crawls: list[str]
    skipped: dict[str, str]
    bandit: BanditResource
    seed: int
    warmup_fraction: float
    tune_embedder: bool


def plan_run(crawl_dir: Path, reference: Path, *, policy: str, budget: str, seed: int, home: Path,
             arms_per_round: int | None = None, docs_per_arm: int | None = None,
             warmup_fraction: float = WARMUP_FRACTION, tune_embedder: bool = True, budget_tokens: int | None = None,
             say: Callable[[str], None] = say_err) -> RunPlan:
    """Check what `equal run` was given (the crawl folder and its crawls, a fresh home, the policy, budget and
    reference set) without launching anything: a mistake raises :class:`UsageError` (or a ``ValueError`` from the
    settings) naming what and where."""
    crawl_dir, reference, home = Path(crawl_dir).absolute(), Path(reference).absolute(), Path(home).absolute()
    if not crawl_dir.is_dir():
        raise UsageError(f"no crawl folder at {crawl_dir}" + (" (it is a file)" if crawl_dir.exists() else ""))
    scan = scan_crawl_folder(crawl_dir, set(), settle_seconds=0)
    skipped = {display_name(name): why for name, why in scan.refused.items()}
    for name, why in skipped.items():
        say(f"crawl folder {crawl_dir / name} skipped: {why}")
    if not scan.new:
        raise UsageError(f"{crawl_dir} holds no crawl: each subfolder or crawl file (.jsonl, .parquet, .warc.gz, "
                         ".html) in it is one" + (f" ({len(skipped)} refused: see above)" if skipped else ""))
    if not 0 < warmup_fraction < 1:
        raise UsageError(f"the warm-up fraction must be between 0 and 1 (got {warmup_fraction:g})")
    paths = EqualPaths(home, crawl_dir)
    if store_exists(paths.store):
        with Store.open(paths.store, read_only=True) as store:
            if store.last_round_no() is not None:
                raise UsageError(f"{home} already holds bandit rounds: `equal run` starts from nothing; give a fresh "
                                 "--home (or go on with `equal rounds N`)")
    bandit = BanditResource(policy=policy, budget=budget, budget_tokens=budget_tokens, seed=seed, reference=str(reference),
                            arms_per_round=arms_per_round, docs_per_arm=docs_per_arm)
    bandit.round_settings()  # a bad policy or budget fails here, before any work
    bandit.load_reference()
    return RunPlan(paths, list(scan.new), skipped, bandit, seed, warmup_fraction, tune_embedder)


def execute_run(plan: RunPlan, say: Callable[[str], None] = say_err) -> dict:
    """Ingest the planned crawls, then warm-up, embedder, embeddings, clusters and bandit rounds until the budget is
    spent; returns the summary `equal run` prints."""
    began = time.perf_counter()
    paths, bandit, skipped = plan.paths, plan.bandit, dict(plan.skipped)
    instance = persistent_instance(paths)
    defs = build_definitions(paths, bandit=bandit)
    with compute_session(defs):
        timings = run_stages_before_rounds(defs, instance, plan.crawls, plan.seed, warmup_fraction=plan.warmup_fraction,
                                           tune_embedder=plan.tune_embedder, say=say, skipped=skipped)
        crawls = [c for c in plan.crawls if c not in skipped]
        with Store.open(paths.store, read_only=True) as store:
            corpus_documents = store.document_count()
        tick = time.perf_counter()
        rounds = play_rounds(defs, instance, paths.store, None, say)
        timings["rounds"] = round(time.perf_counter() - tick, 2)

    stop_engines()  # the run's rounds are played: a vLLM engine kept across them frees its GPU memory
    # the harvested set, measured with the base embedder: the same yardstick whatever embedder a run tuned
    yardstick = Embedder(defs.resources["embedding_model"].model)
    with Store.open(paths.store) as store:
        harvest = harvest_summary(store, yardstick, bandit.load_reference(), bandit.round_settings().ot)
    return {
        "home": str(paths.home), "crawls": crawls, "skipped_crawls": skipped, "policy": bandit.policy,
        "budget": bandit.budget, "seed": plan.seed,
        "corpus_documents": corpus_documents, "documents_extracted": harvest.documents_extracted,
        "share_extracted": round(harvest.documents_extracted / corpus_documents, 4) if corpus_documents else 0.0,
        "tokens": harvest.tokens, "qa_pairs": harvest.qa_pairs, "why_no_pairs": harvest.why_no_pairs,
        "ot_distance_to_reference": None if harvest.ot_distance is None else round(harvest.ot_distance, 6),
        "ot_embedder": harvest.ot_embedder_id, "rounds": harvest.rounds, "per_round": harvest.per_round,
        "last_round": rounds[-1]["round_no"] if rounds else None,
        "round_shape": rounds[0]["round_shape"] if rounds else None, "timings_s": timings,
        "elapsed_s": round(time.perf_counter() - began, 2),
    }


def run_headless(crawl_dir: Path, reference: Path, *, say: Callable[[str], None] = say_err, **settings) -> dict:
    """`equal run` from a script: :func:`plan_run` with ``settings``, then :func:`execute_run`."""
    return execute_run(plan_run(crawl_dir, reference, say=say, **settings), say)


def summary_json(summary: dict) -> str:
    return json.dumps(summary, indent=1, default=str)
