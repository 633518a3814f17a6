"""Declarative automation: with the automation sensor on, a new crawl is embedded once an embedder is chosen, and
then joins the clusters; nothing is requested before its inputs exist."""

import warnings

import dagster as dg
from conftest import write_jsonl

from equal_dagster.definitions import build_definitions
from equal_dagster.partitions import crawls_partitions
from equal_dagster.resources.llm import ExtractionResource

EMBEDDINGS, CLUSTERS = dg.AssetKey("embeddings"), dg.AssetKey("clusters")


def crawl(paths, name):
    write_jsonl(paths.crawl_dir / name / "part.jsonl",
                [{"id": f"{name}-{i}", "text": f"Q: What is {i} plus 1?\nA: {i} + 1 = {i + 1}. ({name})"} for i in range(8)])


def test_new_crawls_flow_through_embeddings_into_clusters(paths):
    warnings.simplefilter("ignore")
    crawl(paths, "crawl-a")
    crawl(paths, "crawl-b")
    defs = build_definitions(paths, llm=ExtractionResource())

    def run(job, **kwargs):
        assert defs.resolve_job_def(job).execute_in_process(instance=instance, **kwargs).success

    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(crawls_partitions.name, ["crawl-a"])
        run("ingest_crawl", partition_key="crawl-a")
        evaluation = dg.evaluate_automation_conditions(defs=defs, instance=instance)
        assert evaluation.total_requested == 0  # no embedder chosen yet: nothing to embed with

        run("warmup", run_config={"ops": {"warmup_extractions": {"config": {"fraction": 1.0}}}})
        run("tune_embedder")  # too few pairs: the base embedder, chosen explicitly
        evaluation = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=evaluation.cursor)
        assert evaluation.get_requested_partitions(EMBEDDINGS) == {"crawl-a"}
        assert evaluation.get_num_requested(CLUSTERS) == 0

        run("embed_crawl", partition_key="crawl-a")
        evaluation = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=evaluation.cursor)
        assert evaluation.get_num_requested(CLUSTERS) == 1
        run("cluster")
        evaluation = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=evaluation.cursor)
        assert evaluation.total_requested == 0

        # a new crawl lands (the new_crawl_sensor adds its partition and ingests it)
        instance.add_dynamic_partitions(crawls_partitions.name, ["crawl-b"])
        run("ingest_crawl", partition_key="crawl-b")
        evaluation = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=evaluation.cursor)
        assert evaluation.get_requested_partitions(EMBEDDINGS) == {"crawl-b"}
        run("embed_crawl", partition_key="crawl-b")
        evaluation = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=evaluation.cursor)
        assert evaluation.get_num_requested(CLUSTERS) == 1  # its documents join the nearest clusters
