"""Embeds one crawl of the EQUAL home HOME as a Ray job submitted to ADDRESS (the compute resource's job server), in
a process of its own that tests/test_ray_jobs.py interrupts as Dagster cancels a run (SIGINT). Prints the run's
outcome. Usage: python ray_job_run.py HOME ADDRESS CRAWL SCRATCH"""

import sys
from pathlib import Path

import dagster as dg

from equal_dagster.core.settings import EqualPaths
from equal_dagster.definitions import build_definitions
from equal_dagster.partitions import crawls_partitions
from equal_dagster.resources.compute import ComputeResource

home, address, crawl, scratch = sys.argv[1:5]
Path(scratch).mkdir(parents=True, exist_ok=True)
paths = EqualPaths(Path(home), Path(home) / "crawls")
defs = build_definitions(paths, compute=ComputeResource(engine="ray", job_address=address, scratch_dir=scratch))
with dg.instance_for_test() as instance:
    instance.add_dynamic_partitions(crawls_partitions.name, [crawl])
    assert defs.resolve_job_def("ingest_crawl").execute_in_process(partition_key=crawl, instance=instance).success
    print("EMBEDDING", flush=True)
    result = defs.resolve_job_def("embed_crawl").execute_in_process(partition_key=crawl, instance=instance,
                                                                    raise_on_error=False)
    print("SUCCESS" if result.success else "FAILED", flush=True)
