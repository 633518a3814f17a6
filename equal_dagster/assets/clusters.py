"""Asset ``clusters``: documents grouped into bandit arms (EQUAL's clustering step)."""

import dataclasses
import json
from typing import Literal, Optional

import dagster as dg
from pydantic import Field

from equal_dagster.assets.embeddings import embeddings
from equal_dagster.assets.metadata import markdown_table, store_snapshot
from equal_dagster.core.clustering import ClusteringParams, ClusteringReport, assign_new_documents, build_clustering
from equal_dagster.core.compute import assign_new_on_ray, cluster_on_ray
from equal_dagster.core.embedding import resolve_model
from equal_dagster.ray_job import job_spec
from equal_dagster.resources.compute import ComputeResource
from equal_dagster.resources.embedder import EmbedderResource
from equal_dagster.resources.store import StoreResource


class ClustersConfig(dg.Config):
    recluster: bool = Field(False, description="cluster everything again under a new clustering_id (else: new "
                                                "documents join the current clustering's nearest centroid)")
    method: Literal["kmeans", "hdbscan"] = Field(ClusteringParams.method, description="kmeans (faiss) | hdbscan")
    dimension: int = Field(ClusteringParams.dimension,
                           description="hdbscan: PCA dimension the vectors are reduced to before clustering")
    min_cluster_size: int = Field(ClusteringParams.min_cluster_size, description="hdbscan: smallest cluster")
    min_samples: Optional[int] = Field(None, description="hdbscan: neighbourhood size (default: min_cluster_size)")
    n_clusters: Optional[int] = Field(None, description="kmeans: number of arms; none: one per 5 warm-up documents "
                                                        "(at most 1,000, EQUAL's)")
    seed: int = 0


def clusters_table(report: ClusteringReport, limit: int = 40) -> str:
    """The largest clusters; top_terms and sample_lines are JSON text, as the store holds them."""
    rows = sorted(report.summaries, key=lambda r: -r["size"])[:limit]
    return markdown_table(
        ["cluster", "size", "top terms", "sample first lines"],
        [(r["cluster_id"], r["size"], ", ".join(json.loads(r["top_terms"])), " / ".join(json.loads(r["sample_lines"])))
         for r in rows],
    )


@dg.asset(
    deps=[embeddings],
    group_name="embed",
    kinds={"duckdb", "faiss"},
    pool="duckdb",
    # runs by itself once the default_automation_condition_sensor is switched on (off by default)
    automation_condition=dg.AutomationCondition.eager(),
    description=(
        "Every embedded document in exactly one cluster (a bandit arm): faiss k-means with one arm per 5 warm-up "
        "documents (or PCA and HDBSCAN). Documents of new crawls join the nearest existing centroid; "
        "`recluster: true` starts a new clustering_id. With the ray compute engine, k-means's assignment fans out "
        "over Ray (the centroids are trained on the driver)."
    ),
)
def clusters(context: dg.AssetExecutionContext, config: ClustersConfig, store: StoreResource,
             embedding_model: EmbedderResource, compute: ComputeResource) -> dg.MaterializeResult:
    location, _ = embedding_model.current_location()
    embedder_id = resolve_model(location).embedder_id
    params = ClusteringParams(config.method, config.dimension, config.min_cluster_size, config.min_samples,
                              config.n_clusters, config.seed)
    ray = compute.ray_settings()
    job = compute.submits_jobs
    if (ray is not None or job) and params.method != "kmeans":
        context.log.info(f"{params.method} clusters every vector at once: it runs in this process, not on Ray")
        ray, job = None, False
    with store.open_store() as db:
        current = db.current_clustering()
        new = config.recluster or current is None
        if job and not new and not db.documents_outside_clustering(current["clustering_id"])[0]:
            job = False  # nothing to assign: no job to start
    if not new and current["embedder_id"] != embedder_id:
        raise dg.Failure(description=(
            f"the current clustering {current['clustering_id']} was made with embedder {current['embedder_id']}, "
            f"the current embedder is {embedder_id}: materialize embeddings, then clusters with recluster: true"
        ))
    if job:  # the job opens the store itself: this process holds it again once the job is done
        spec = (job_spec("cluster", store.database, compute.job_settings(), embedder_id=embedder_id,
                         params=dataclasses.asdict(params)) if new else
                job_spec("assign", store.database, compute.job_settings(),
                         clustering={k: current[k] for k in ("clustering_id", "embedder_id")}))
        report = ClusteringReport(**compute.run_job(context, spec), summaries=[])
    with store.open_store() as db:
        try:
            if job:
                report.summaries = db.cluster_summaries(report.clustering_id).to_dicts()
            elif new:
                report = (cluster_on_ray(db, embedder_id, params, ray, log=context.log.info) if ray
                          else build_clustering(db, embedder_id, params, log=context.log.info))
            else:
                report = (assign_new_on_ray(db, current, ray, log=context.log.info) if ray
                          else assign_new_documents(db, current, log=context.log.info))
        except ValueError as exc:
            raise dg.Failure(description=str(exc)) from exc
        snapshot = store_snapshot(db)
    context.log.info(
        f"clustering {report.clustering_id}: {report.documents:,} documents in {report.n_clusters:,} clusters, "
        f"{report.new_documents:,} new, assignments {report.by_assignment}, {'; '.join(report.notes) or 'no notes'}, "
        f"timings {report.seconds}"
    )
    sizes = [r["size"] for r in report.summaries]
    return dg.MaterializeResult(metadata={
        "dagster/row_count": report.documents,
        **snapshot,
        "clustering_id": report.clustering_id,
        "embedder_id": report.embedder_id,
        "clusters": report.n_clusters,
        "new_documents": report.new_documents,
        "assignments": dg.MetadataValue.json(report.by_assignment),
        "largest_cluster": max(sizes) if sizes else 0,
        "smallest_cluster": min(sizes) if sizes else 0,
        "compute": "ray job" if job else "ray" if ray else "local",
        "notes": "; ".join(report.notes),
        "timings": dg.MetadataValue.json(report.seconds),
        "clusters_table": dg.MetadataValue.md(clusters_table(report)),
    })
