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
import json
import os
import signal
import sys
from typing import Any

from equal_dagster.core.ray_setup import RaySettings, ray_session

WORKS = ("embed", "cluster", "assign")
STORE_ENV = "EQUAL_STORE"


def job_spec(work: str, store: str, ray: RaySettings, **arguments: Any) -> str:
    """The JSON a job is given: the work, where the store is and the Ray settings (address ``auto``: the job's own
    cluster). The store goes without its password (the spec is the job's entry point, which Ray shows in its
    dashboard and job list): a job whose store needs one takes ``EQUAL_STORE`` from the cluster's environment, which
    must name the same store."""
    from equal_dagster.core.store import STORE_DATA_ENV, redacted

    if work not in WORKS:
        raise ValueError(f"unknown Ray job work {work!r}: one of {', '.join(WORKS)}")
    settings = dataclasses.asdict(dataclasses.replace(ray, address="auto"))
    return json.dumps({"work": work, "store": redacted(store), "store_data": os.environ.get(STORE_DATA_ENV) or None,
                       "ray": settings, **arguments})


def job_store(spec: dict[str, Any]) -> str:
    """The store the spec names, with its password from the cluster's ``EQUAL_STORE`` when the spec's was left out;
    one clear error when the cluster cannot see it (a DuckDB file on a disk the head node does not share would
    otherwise be created there, empty)."""
    from equal_dagster.core.store import StoreError, redacted, store_exists

    store = spec["store"]
    if "***" in store:
        own = os.environ.get(STORE_ENV, "")
        if redacted(own) != store:
            raise StoreError(f"the store {store} has a password, which the Ray job is not sent: set {STORE_ENV} to it "
                             f"in the Ray cluster's environment (there: {redacted(own) or 'not set'})")
        store = own
    if not store_exists(store):
        raise StoreError(f"the Ray job cannot see the store {redacted(store)}: on a cluster, a DuckDB file must be on a "
                         "disk every node shares (or use DuckLake, docs/scaling.md)")
    return store


def run(spec: dict[str, Any], log) -> dict[str, Any]:
    """Do the work of ``spec`` on the Ray cluster this process is a driver of; the result as JSON-able values."""
    from equal_dagster.core import compute
    from equal_dagster.core.clustering import ClusteringParams
    from equal_dagster.core.embedding import embedder_loader, progress_line
    from equal_dagster.core.store import STORE_DATA_ENV, Store
    from equal_dagster.resources.store import WRITER_WAIT_S

    if spec.get("store_data"):
        os.environ[STORE_DATA_ENV] = spec["store_data"]
    settings = RaySettings(**spec["ray"])
    store_location = job_store(spec)
    with ray_session(settings, forward_env=False), Store.open(store_location, wait_s=WRITER_WAIT_S) as store:
        if spec["work"] == "embed":
            report = compute.embed_crawl_on_ray(
                store, spec["crawl_id"], embedder_loader(spec["embedder"]), spec["embedder_id"], settings,
                progress=lambda done, total, rate: log(progress_line(spec["crawl_id"], done, total, rate)))
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
    """Run the spec's work; its result, or the one line that says why it could not be done (a store it cannot see,
    no vectors to cluster), goes to the run as a Pipes message. A job stopped (the run cancelled) gets SIGTERM: it
    exits through its cleanups (staging folders deleted, Ray disconnected)."""
    from dagster_pipes import open_dagster_pipes

    from equal_dagster.core.store import StoreError

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if len(argv) != 1:
        print("usage: python -m equal_dagster.ray_job SPEC (the work as JSON)", file=sys.stderr)
        return 2
    spec = json.loads(argv[0])
    with open_dagster_pipes() as pipes:
        try:
            result = run(spec, pipes.log.info)
        except (ValueError, StoreError) as exc:
            result = {"error": str(exc)}
        pipes.report_custom_message(result)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
