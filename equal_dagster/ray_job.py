"""The entry point of a Ray job that the ``embeddings`` and ``clusters`` assets submit to a Ray cluster through
dagster-ray's ``PipesRayJobClient`` (the compute resource's ``job_address``): ``python -m equal_dagster.ray_job SPEC``,
``SPEC`` the work as JSON. The job is the driver, on the cluster: it opens the store itself, runs the same code as the
asset's own process would (:mod:`equal_dagster.core.compute`), and speaks to the Dagster run through Dagster Pipes:
its progress lines are the run log's, its result is a Pipes message. Stopping the job (the run cancelled) ends its
actors with it.

Works:

* ``embed``: one crawl's documents without a vector (``embed_crawl_on_ray``);
* ``cluster``: a new k-means clustering (``cluster_on_ray``);
* ``assign``: documents embedded after the current clustering join it (``assign_new_on_ray``).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import sys
from typing import Any

from equal_dagster.core.compute import RaySettings

WORKS = ("embed", "cluster", "assign")
STORE_WAIT_S = 120.0  # a DuckDB file another process still holds (the asset's own process closed it before submitting)


def job_spec(work: str, store: str, ray: RaySettings, **arguments: Any) -> str:
    """The JSON a job is given: the work, where the store is (with this process's DuckLake data path) and the Ray
    settings (address ``auto``: the job's own cluster)."""
    from equal_dagster.core.store import STORE_DATA_ENV

    if work not in WORKS:
        raise ValueError(f"unknown Ray job work {work!r}: one of {', '.join(WORKS)}")
    settings = dataclasses.asdict(dataclasses.replace(ray, address="auto"))
    return json.dumps({"work": work, "store": store, "store_data": os.environ.get(STORE_DATA_ENV) or None,
                       "ray": settings, **arguments})


def run(spec: dict[str, Any], log) -> dict[str, Any]:
    """Do the work of ``spec`` on the Ray cluster this process is a driver of; the result as JSON-able values."""
    from equal_dagster.core import compute
    from equal_dagster.core.clustering import ClusteringParams
    from equal_dagster.core.embedding import Embedder
    from equal_dagster.core.store import STORE_DATA_ENV, Store

    if spec.get("store_data"):
        os.environ[STORE_DATA_ENV] = spec["store_data"]
    settings = RaySettings(**spec["ray"])
    with compute.ray_session(settings, forward_env=False), Store.open(spec["store"], wait_s=STORE_WAIT_S) as store:
        if spec["work"] == "embed":
            embedder = dict(spec["embedder"])  # EmbedderResource.current_spec
            load = functools.partial(Embedder, embedder.pop("location"), **embedder)

            def progress(done: int, total: int, rate: float) -> None:
                log(f"embedded {done:,}/{total:,} documents of {spec['crawl_id']} ({rate:,.1f} documents/s)")

            report = compute.embed_crawl_on_ray(store, spec["crawl_id"], load, spec["embedder_id"], settings,
                                                progress=progress)
            return dataclasses.asdict(report)
        if spec["work"] == "cluster":
            report = compute.cluster_on_ray(store, spec["embedder_id"], ClusteringParams(**spec["params"]), settings,
                                            log=log)
        else:
            report = compute.assign_new_on_ray(store, spec["clustering"], settings, log=log)
        result = dataclasses.asdict(report)
        result.pop("summaries")  # the asset reads them from the store: a message stays small
        return result


def main(argv: list[str]) -> int:
    from dagster_pipes import open_dagster_pipes

    if len(argv) != 1:
        print("usage: python -m equal_dagster.ray_job SPEC (the work as JSON)", file=sys.stderr)
        return 2
    spec = json.loads(argv[0])
    with open_dagster_pipes() as pipes:
        result = run(spec, pipes.log.info)
        pipes.report_custom_message(result)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
