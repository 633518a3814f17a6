"""Sensors and schedules."""

import json

import dagster as dg

from equal_dagster.core.crawls import scan_crawl_folder
from equal_dagster.core.rounds import RETRY_STATUSES, RoundRefused, budget_status, round_key, round_no_of
from equal_dagster.core.store import StoreError
from equal_dagster.instance import release_dead_runs
from equal_dagster.partitions import crawls_partitions, rounds_partitions
from equal_dagster.resources.bandit import BanditResource
from equal_dagster.resources.crawls import CrawlFolder
from equal_dagster.resources.store import StoreResource

ingest_crawl_job = dg.define_asset_job(
    "ingest_crawl",
    selection=dg.AssetSelection.assets("corpus"),
    partitions_def=crawls_partitions,
    description="Ingest one crawl (a `crawls` partition).",
)

embed_crawl_job = dg.define_asset_job(
    "embed_crawl",
    selection=dg.AssetSelection.assets("embeddings"),
    partitions_def=crawls_partitions,
    description="Embed one crawl's documents with the current embedder (a `crawls` partition).",
)

warmup_job = dg.define_asset_job(
    "warmup",
    selection=dg.AssetSelection.assets("warmup_extractions"),
    description="EQUAL's warm-up: extract a seeded random sample of the corpus as round 0.",
)

embedder_job = dg.define_asset_job(
    "tune_embedder",
    selection=dg.AssetSelection.assets("embedder"),
    description="EQUAL's contrastive warm-up of the embedder on the warm-up QA pairs.",
)

clusters_job = dg.define_asset_job(
    "cluster",
    selection=dg.AssetSelection.assets("clusters"),
    description="Cluster the embedded documents into bandit arms, or let new documents join the current clusters.",
)

bandit_round_job = dg.define_asset_job(
    "bandit_round",
    selection=dg.AssetSelection.assets("bandit_rounds"),
    partitions_def=rounds_partitions,
    description="One bandit round (a `rounds` partition: r0001, r0002, ...); rounds run in order.",
)


dataset_job = dg.define_asset_job(
    "build_dataset",
    selection=dg.AssetSelection.assets("qa_dataset"),
    description="Score, filter, select and export the harvested QA pairs.",
)

fine_tune_job = dg.define_asset_job(
    "fine_tune",
    selection=dg.AssetSelection.assets("fine_tuned_model"),
    description="Fine-tune the base model on the QA dataset (LoRA or full SFT).",
)

evaluate_job = dg.define_asset_job(
    "evaluate",
    selection=dg.AssetSelection.assets("eval_scores"),
    description="Evaluate the base and the fine-tuned models with lm-evaluation-harness.",
)


@dg.sensor(
    job=ingest_crawl_job,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Watches the crawl folder ($EQUAL_CRAWL_DIR): each new subfolder or file becomes a `crawls` partition "
        "and is requested once. Entries that lead outside the folder are refused and logged."
    ),
)
def new_crawl_sensor(context: dg.SensorEvaluationContext, crawl_folder: CrawlFolder) -> dg.SensorResult:
    requested = set(json.loads(context.cursor)) if context.cursor else set()
    existing = set(context.instance.get_dynamic_partitions(crawls_partitions.name))
    scan = scan_crawl_folder(crawl_folder.root(), requested | existing, crawl_folder.settle_seconds)
    for name, reason in scan.refused.items():
        context.log.warning(f"refused crawl {name!r}: {reason}")
    if scan.settling:
        context.log.info(f"waiting for {', '.join(scan.settling)} to stop changing")
    if not scan.new:
        refused = f"; refused: {', '.join(f'{n} ({r})' for n, r in scan.refused.items())}" if scan.refused else ""
        return dg.SensorResult(skip_reason=f"no new crawl in {crawl_folder.root()}{refused}")
    return dg.SensorResult(
        run_requests=[dg.RunRequest(partition_key=name, run_key=f"crawl:{name}") for name in scan.new],
        dynamic_partitions_requests=[crawls_partitions.build_add_request(scan.new)],
        cursor=json.dumps(sorted(requested | set(scan.new))),
    )


def _last_round(instance: dg.DagsterInstance) -> tuple[int, dict] | None:
    """(round number, metadata) of the latest successful bandit round, from the instance's event log."""
    event = instance.get_latest_materialization_event(dg.AssetKey("bandit_rounds"))
    if event is None or event.asset_materialization is None or not event.asset_materialization.partition:
        return None
    try:
        number = round_no_of(event.asset_materialization.partition)
    except RoundRefused:
        return None
    return number, {k: v.value for k, v in event.asset_materialization.metadata.items()}


@dg.sensor(
    job=bandit_round_job,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description=(
        "Plays the bandit rounds one after another: once round N has succeeded and its budget is not spent, adds "
        "partition N+1 and requests it (once: the run key is the round). Starts with r0001 once clusters exist. "
        "Off by default."
    ),
)
def next_round_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
    last = _last_round(context.instance)
    if last is None:
        if context.instance.get_latest_materialization_event(dg.AssetKey("clusters")) is None:
            return dg.SkipReason("no clusters yet: materialize clusters before the first round")
        next_no = 1
    else:
        number, metadata = last
        if metadata.get("budget_spent"):
            return dg.SkipReason(
                f"round {round_key(number)} spent the budget or the candidates (budget left: "
                f"{metadata.get('budget_left_documents')} documents, {metadata.get('candidates_left')} candidates)")
        next_no = number + 1
    key = round_key(next_no)
    known = set(context.instance.get_dynamic_partitions(rounds_partitions.name))
    return dg.SensorResult(
        run_requests=[dg.RunRequest(partition_key=key, run_key=f"round:{key}")],
        dynamic_partitions_requests=[rounds_partitions.build_add_request([key])] if key not in known else [],
    )


@dg.schedule(
    job=bandit_round_job,
    cron_schedule="0 3 * * *",
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description=(
        "Re-extraction: every night, when documents ingested since the last round sit in the clusters unextracted "
        "and the budget is not spent, adds the next round and requests it. Off by default."
    ),
)
def reextraction_schedule(context: dg.ScheduleEvaluationContext, store: StoreResource,
                          bandit: BanditResource) -> dg.RunRequest | dg.SkipReason:
    try:
        with store.open_store(read_only=True) as db:
            clustering = db.current_clustering()
            if clustering is None:
                return dg.SkipReason("no clusters yet")
            new_documents = db.unextracted_new_documents(clustering["clustering_id"], RETRY_STATUSES)
            next_no = (db.last_round_no() or 0) + 1
            budget = budget_status(db, bandit.round_settings().budget, next_no)
    except (StoreError, OSError, RuntimeError) as exc:  # duckdb raises IOException (an OSError) while a writer holds the file
        return dg.SkipReason(f"store not readable now ({exc.__class__.__name__}: {exc}); next tick")
    if new_documents == 0:
        return dg.SkipReason("no document ingested since the last round is waiting for extraction")
    if budget.spent:
        return dg.SkipReason(f"{new_documents:,} new documents wait, but {budget.describe()}: raise it to extract them")
    key = round_key(next_no)
    context.instance.add_dynamic_partitions(rounds_partitions.name, [key])  # schedules cannot return partition requests
    return dg.RunRequest(partition_key=key, run_key=f"round:{key}")


@dg.sensor(
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Frees the store after a crash: a run whose process is gone (killed with SIGKILL, a machine that went down) "
        "stays STARTED in Dagster and keeps its slot of the duckdb pool, so every later write would wait for ever. "
        "Fails such runs with the reason and frees their slots. `equal recover` does the same from a shell."
    ),
)
def dead_run_sensor(context: dg.SensorEvaluationContext) -> dg.SkipReason:
    released = release_dead_runs(context.instance, context.log.warning)
    if released:
        return dg.SkipReason(f"released {len(released)} dead run(s): " + ", ".join(d.run_id for d in released))
    return dg.SkipReason("no dead run")


@dg.op(
    pool="duckdb",
    description=(
        "Keeps the store's reads fast as writes accumulate (Store.maintain): on DuckLake, merges each table's small "
        "files (every append and every round adds some; a read opens them all) and deletes, a day later, the files "
        "merged away; every snapshot stays readable (`equal lineage --as-of`). On a DuckDB file, a checkpoint."
    ),
)
def maintain_store(context: dg.OpExecutionContext, store: StoreResource) -> dg.Output[dict]:
    with store.open_store() as db:
        report = db.maintain()
    context.log.info(report.describe())
    metadata = {"store": report.store, "seconds": round(report.seconds, 2), "files_deleted": report.files_deleted}
    if report.data_files_before is not None:
        metadata |= {"data_files_before": report.data_files_before, "data_files_after": report.data_files_after}
    return dg.Output(dict(metadata), metadata=metadata)


@dg.job(description="Store maintenance: merge a DuckLake store's small files, delete the ones merged away.")
def store_maintenance():
    maintain_store()


def store_maintenance_schedule(lake: bool) -> dg.ScheduleDefinition:
    """Nightly maintenance: running by default on a DuckLake store, whose reads slow down as small files pile up
    (docs/benchmarks.md), stopped on a DuckDB file, which checkpoints on its own."""
    return dg.ScheduleDefinition(
        name="store_maintenance_schedule",
        job=store_maintenance,
        cron_schedule="30 4 * * *",
        default_status=dg.DefaultScheduleStatus.RUNNING if lake else dg.DefaultScheduleStatus.STOPPED,
        description="Every night at 04:30, the store_maintenance job. On by default with a DuckLake store.",
    )
