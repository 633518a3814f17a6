"""Asset ``embeddings``: one crawl's documents embedded with the current embedder (EQUAL's document vectors)."""

import dagster as dg

from equal_dagster.assets.corpus import corpus
from equal_dagster.assets.embedder import embedder as embedder_asset
from equal_dagster.assets.metadata import check_result, store_snapshot
from equal_dagster.core.checks import crawl_embedded
from equal_dagster.core.compute import embed_crawl_on_ray
from equal_dagster.core.embedding import EmbedReport, embed_crawl, progress_line, resolve_model
from equal_dagster.partitions import crawls_partitions
from equal_dagster.ray_job import job_spec
from equal_dagster.resources.compute import ComputeResource
from equal_dagster.resources.embedder import EmbedderResource
from equal_dagster.resources.store import StoreResource


@dg.asset(
    partitions_def=crawls_partitions,
    deps=[corpus, embedder_asset],
    group_name="embed",
    kinds={"duckdb", "pytorch"},
    pool="duckdb",
    # runs by itself once the default_automation_condition_sensor is switched on (off by default)
    automation_condition=dg.AutomationCondition.eager(),
    description=(
        "Normalized sentence-transformers vectors of one crawl's documents, keyed by embedder id. Incremental: "
        "only documents without a vector from the current embedder are embedded (a re-run embeds nothing; a new "
        "embedder embeds everything, and the old vectors stay until dropped)."
    ),
    check_specs=[dg.AssetCheckSpec("every_document_embedded", asset="embeddings", blocking=True,
                                   description="every document of the crawl has a vector from the current embedder")],
)
def embeddings(context: dg.AssetExecutionContext, store: StoreResource, embedding_model: EmbedderResource,
               compute: ComputeResource) -> dg.MaterializeResult:
    crawl_id = context.partition_key
    location, why = embedding_model.current_location()
    resolved = resolve_model(location)
    ray, job = compute.ray_settings(), compute.submits_jobs
    where = (f"as a Ray job, {compute.workers} workers" if job else
             f"on Ray, {ray.workers} workers" if ray else "in this process")
    context.log.info(f"embedding crawl {crawl_id} with {resolved.embedder_id} ({why}; {location}) {where}")

    def log_progress(done: int, total: int, rate: float) -> None:
        context.log.info(progress_line(crawl_id, done, total, rate))

    if job:  # the job opens the store itself: this process holds it only once the job is done
        report = EmbedReport(**compute.run_job(context, job_spec(
            "embed", store.database, compute.job_settings(), crawl_id=crawl_id, embedder_id=resolved.embedder_id,
            embedder=embedding_model.current_spec())))
    dimension = None
    with store.open_store() as db:
        if ray is None and not job:  # the model loads here, and only here: on Ray each worker loads its own
            model = embedding_model.load_current()
            report = embed_crawl(db, crawl_id, model, progress=log_progress)
            dimension = model.dimension
        elif not job:  # this process stages the texts and loads the vectors
            report = embed_crawl_on_ray(db, crawl_id, embedding_model.current_loader(), resolved.embedder_id, ray,
                                        progress=log_progress)
        counts = db.embedding_counts(crawl_id)
        embedded = crawl_embedded(db, crawl_id, resolved.embedder_id)
        snapshot = store_snapshot(db)
        if dimension is None:  # the workers' vectors say it
            dimension = db.embedding_shape(resolved.embedder_id, crawl_id)[1] or None
    context.log.info(
        f"crawl {crawl_id}: {report.embedded:,} embedded, {report.already_embedded:,} already had a vector, "
        f"{report.stale_deleted:,} stale vectors deleted, {report.documents_per_second:,.1f} documents/s"
    )
    return dg.MaterializeResult(check_results=[check_result("every_document_embedded", embedded, blocking=True)], metadata={
        "dagster/row_count": counts.get(resolved.embedder_id, 0),
        **snapshot,
        "embedder_id": resolved.embedder_id,
        "compute": "ray job" if job else compute.engine,
        "embedder_source": resolved.source,
        "dimension": dimension,
        "embedded": report.embedded,
        "already_embedded": report.already_embedded,
        "stale_deleted": report.stale_deleted,
        "documents_per_second": round(report.documents_per_second, 1),
        "vectors_by_embedder": dg.MetadataValue.json(counts),
    })
