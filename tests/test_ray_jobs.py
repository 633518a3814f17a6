"""Embeddings and clusters as Ray jobs (the compute resource's ``job_address``), submitted through dagster-ray's
PipesRayJobClient to a throwaway Ray cluster on this machine (tests/ray_cluster.py): the job's progress reaches the
run log, its vectors and clusters are the ones the run's own process would write, and interrupting the run (as
Dagster cancels one) stops the job and its actors."""

import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import numpy as np
import psutil
import pytest
from conftest import bandit_for, write_jsonl
from ray_cluster import ray_cluster

from equal_dagster.core.embedding import DEFAULT_MODEL, Embedder
from equal_dagster.core.settings import EqualPaths
from equal_dagster.core.store import Store
from equal_dagster.definitions import build_definitions
from equal_dagster.demo.corpus import CRAWL_NAMES
from equal_dagster.partitions import crawls_partitions
from equal_dagster.resources.compute import ComputeResource
from equal_dagster.resources.llm import ExtractionResource

pytestmark = pytest.mark.slow
TINY = "crawl-tiny"
TEXTS = [f"Problem {i}. Ava has {i} apples and buys {i % 7} more. How many apples does she have?" for i in range(40)]


@pytest.fixture(scope="module")
def job_server():
    with ray_cluster() as address:
        yield address


def _messages(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    return [entry.user_message for entry in instance.all_logs(run_id)]


def test_embeddings_and_clusters_run_as_ray_jobs_with_their_progress_in_the_run_log(job_server, clustered, tmp_path):
    shutil.copytree(clustered.home, tmp_path / "home")
    paths = EqualPaths(tmp_path / "home", tmp_path / "home" / "crawls")
    defs = build_definitions(paths, llm=ExtractionResource(), bandit=bandit_for(paths),  # one actor: the model loads once
                             compute=ComputeResource(engine="ray", job_address=job_server, workers=1))
    write_jsonl(paths.crawl_dir / TINY / "part.jsonl", [{"id": f"tiny-{i}", "text": t} for i, t in enumerate(TEXTS)])
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(crawls_partitions.name, list(CRAWL_NAMES) + [TINY])
        assert defs.resolve_job_def("ingest_crawl").execute_in_process(partition_key=TINY, instance=instance).success
        embedded = defs.resolve_job_def("embed_crawl").execute_in_process(partition_key=TINY, instance=instance)
        meta = embedded.asset_materializations_for_node("embeddings")[0].metadata
        assert meta["compute"].value == "ray job" and meta["embedded"].value == 40
        logs = _messages(instance, embedded.run_id)
        assert any(m.startswith("submitting a Ray job to http://127.0.0.1:") for m in logs)
        assert any(f"embedded 40/40 documents of {TINY}" in m for m in logs), logs  # the job's own line
        assigned = defs.resolve_job_def("cluster").execute_in_process(instance=instance)
        meta = assigned.asset_materializations_for_node("clusters")[0].metadata
        assert meta["compute"].value == "ray job" and meta["new_documents"].value == 40
        assert meta["clusters"].value > 1 and "clusters_table" in meta  # the summaries, read from the store
        assert any("40 of 40 vectors assigned" in m for m in _messages(instance, assigned.run_id))
    with Store.open(paths.store, read_only=True) as store:
        doc_ids, vectors = store.embedding_matrix(DEFAULT_MODEL, TINY)
        texts = store.document_texts(doc_ids)["text"].to_list()
        members = store.clusters(meta["clustering_id"].value)
        embedded_count = store.embedding_counts()[DEFAULT_MODEL]
    np.testing.assert_allclose(vectors, Embedder(DEFAULT_MODEL).encode(texts), atol=1e-5)
    assert members.height == embedded_count == meta["dagster/row_count"].value


def _actors(name: str) -> list[psutil.Process]:
    """The processes of a Ray job's actors named ``name``: those with the job's Pipes environment (other tests may run
    actors of the same class on a Ray of their own at the same time)."""
    found = []
    for process in psutil.process_iter(["cmdline"]):
        try:
            if any(name in part for part in process.info["cmdline"] or []) and \
                    "DAGSTER_PIPES_CONTEXT" in process.environ():
                found.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def test_an_interrupted_run_stops_its_ray_job_and_the_job_s_actors(job_server, clustered, tmp_path):
    """SIGINT, what Dagster sends a run it cancels: dagster-ray stops the job, the job's embedding actors end, and
    the job deletes what it staged."""
    from ray.job_submission import JobStatus, JobSubmissionClient

    client = JobSubmissionClient(job_server)
    before = {job.submission_id for job in client.list_jobs()}
    home = tmp_path / "home"
    shutil.copytree(clustered.home, home)
    texts = [f"Document {i} about {['rivers', 'algebra', 'proteins', 'harbors'][i % 4]} number {i * 7919 % 10007}."
             for i in range(3000)]  # long enough to embed that the run is interrupted mid-job
    write_jsonl(home / "crawls" / "crawl-big" / "part.jsonl", [{"id": f"big-{i}", "text": t} for i, t in enumerate(texts)])
    script = Path(__file__).with_name("ray_job_run.py")
    scratch = tmp_path / "scratch"
    run = subprocess.Popen([sys.executable, str(script), str(home), job_server, "crawl-big", str(scratch)],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 240
        while not _actors("_EmbedWorker"):  # the job is running and its actor pool embedding
            assert run.poll() is None and time.monotonic() < deadline, run.stdout.read() if run.poll() is not None else ""
            time.sleep(0.5)
        jobs = [job for job in client.list_jobs() if job.submission_id not in before]
        assert len(jobs) == 1 and jobs[0].status == JobStatus.RUNNING
        run.send_signal(signal.SIGINT)
        output, _ = run.communicate(timeout=120)
    finally:
        if run.poll() is None:
            run.kill()
    assert "FAILED" in output or run.returncode != 0, output
    deadline = time.monotonic() + 60
    while client.get_job_status(jobs[0].submission_id) != JobStatus.STOPPED or _actors("_EmbedWorker"):
        assert time.monotonic() < deadline, (client.get_job_status(jobs[0].submission_id), _actors("_EmbedWorker"))
        time.sleep(0.5)
    assert list(scratch.iterdir()) == []  # the stopped job deleted what it had staged
