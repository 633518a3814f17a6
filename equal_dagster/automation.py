"""Sensors and schedules."""

import json

import dagster as dg

from equal_dagster.core.crawls import scan_crawl_folder
from equal_dagster.partitions import crawls_partitions
from equal_dagster.resources.crawls import CrawlFolder

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
