"""The `ray` compute engine in Ray local mode (fractional CPUs): embeddings and a round's calls fan out over Ray
and give what the local path gives; a Ray worker killed mid-job is retried and repays only its calls in flight."""

import shutil
import threading
import time

import dagster as dg
import numpy as np
import psutil
import pytest
from conftest import bandit_for, write_jsonl
from doubles import FakeOpenAIServer

from equal_dagster.core.ray_setup import RaySettings, pool_size, ray_session
from equal_dagster.core.embedding import DEFAULT_MODEL
from equal_dagster.core.extraction import Document, ExtractionConfig, StoreResponseCache, build_extractor
from equal_dagster.core.extraction.backends.ray_http import BATCHES_PER_WORKER, CALLS_PER_BATCH
from equal_dagster.core.settings import EqualPaths
from equal_dagster.core.store import Store
from equal_dagster.definitions import build_definitions
from equal_dagster.demo.corpus import CRAWL_NAMES
from equal_dagster.partitions import crawls_partitions, rounds_partitions
from equal_dagster.resources.compute import ComputeResource
from equal_dagster.resources.llm import ExtractionResource

RAY = RaySettings()  # the defaults a user gets: 2 workers of half a CPU each


def test_the_compute_resource_starts_ray_through_dagster_ray_and_stops_it_with_the_step():
    """No Ray running: the `ray` engine connects through dagster-ray's LocalRay for the step and its cleanup shuts
    that Ray down (a cancelled or finished run leaves no Ray work behind). Runs before the module's shared Ray."""
    import ray

    assert not ray.is_initialized()
    with dg.build_resources({"compute": ComputeResource(engine="ray")}) as resources:
        assert ray.is_initialized() and ray.cluster_resources().get("CPU", 0) >= 1
        assert resources.compute.ray_settings() == RAY
    assert not ray.is_initialized()
    with dg.build_resources({"compute": ComputeResource()}) as resources:  # `local`: no Ray at all
        assert resources.compute.ray_settings() is None and not ray.is_initialized()


def test_a_pool_starts_no_more_actors_than_it_has_batches():
    """Each actor is a worker process, and an embedder's loads a model: a 40-document crawl (one batch) or a round of
    6 calls gets one actor, a large crawl the configured ``workers``."""
    settings = RaySettings(workers=4)
    assert [pool_size(settings, batches) for batches in (0, 1, 3, 4, 1000)] == [1, 1, 3, 4, 4]


@pytest.fixture(scope="module")
def ray_local():
    """One local Ray for the module (it takes seconds to start); the compute resource uses it as it finds it."""
    with ray_session(RAY):
        yield


TINY = "crawl-tiny"
TEXTS = [f"Problem {i}. Ava has {i} apples and buys {i % 7} more. How many apples does she have?" for i in range(40)]


def play(defs, instance, key):
    if key not in instance.get_dynamic_partitions(rounds_partitions.name):
        instance.add_dynamic_partitions(rounds_partitions.name, [key])
    return defs.resolve_job_def("bandit_round").execute_in_process(partition_key=key, instance=instance)


def test_rounds_on_ray_choose_the_same_documents_and_store_the_same_pairs(ray_local, clustered, tmp_path):
    """For one seed, `local` and `ray` play the same rounds: the same arms, documents, statuses and QA pairs; the
    embeddings asset on Ray writes the vectors the local one wrote (the packaged MiniLM in each Ray worker), and a
    second materialization embeds nothing."""
    tables = {}
    with FakeOpenAIServer() as server:
        llm = ExtractionResource(backend="openai", model="fake-model", base_url=server.base_url, max_retries=0)
        for engine in ("local", "ray"):
            shutil.copytree(clustered.home, tmp_path / engine)
            paths = EqualPaths(tmp_path / engine, tmp_path / engine / "crawls")
            defs = build_definitions(paths, llm=llm, bandit=bandit_for(paths, arms_per_round=2, docs_per_arm=3),
                                     compute=ComputeResource(engine=engine))
            with dg.instance_for_test() as instance:
                instance.add_dynamic_partitions(crawls_partitions.name, list(CRAWL_NAMES))
                for key in ("r0001", "r0002"):
                    result = play(defs, instance, key)
                    assert result.success
                # a new crawl of 40 documents embedded, then again: the second time embeds nothing
                write_jsonl(paths.crawl_dir / TINY / "part.jsonl", [{"id": f"tiny-{i}", "text": t} for i, t in enumerate(TEXTS)])
                instance.add_dynamic_partitions(crawls_partitions.name, [TINY])
                assert defs.resolve_job_def("ingest_crawl").execute_in_process(partition_key=TINY, instance=instance).success
                for time_no in (1, 2):
                    embedded = defs.resolve_job_def("embed_crawl").execute_in_process(partition_key=TINY,
                                                                                      instance=instance)
                    meta = embedded.asset_materializations_for_node("embeddings")[0].metadata
                    assert meta["compute"].value == engine
                    assert meta["dimension"].value == 384  # on Ray: read from the workers' vectors (no model here)
                    assert meta["embedded"].value == (40 if time_no == 1 else 0) and meta["stale_deleted"].value == 0
            with Store.open(paths.store, read_only=True) as store:
                extractions = store.extractions().filter(store.extractions()["round_id"] != "round-0")
                tables[engine] = (
                    extractions.select("round_id", "doc_id", "status", "backend").sort("round_id", "doc_id"),
                    store.qa_pairs().select("doc_id", "question", "answer").sort("doc_id", "question"),
                    store.rounds().select("round_id", "arms", "rewards").sort("round_id"),
                    store.embedding_matrix(DEFAULT_MODEL, TINY),
                )
        assert server.requests == 24  # each engine: 2 rounds of 2 arms x 3 documents, each call made once
        senders = [agent.split("/")[0] for agent in server.user_agents]
        assert senders.count("python-httpx") == 12 and sum("aiohttp" in a for a in server.user_agents) == 12  # Ray's
    local, ray = tables["local"], tables["ray"]
    assert local[0].height == 12 and local[0].equals(ray[0])
    assert local[1].height > 0 and local[1].equals(ray[1])
    assert local[2].equals(ray[2])
    assert local[3][0] == ray[3][0]
    np.testing.assert_allclose(local[3][1], ray[3][1], atol=1e-5)


def _clustering_tables(paths: EqualPaths) -> tuple:
    with Store.open(paths.store, read_only=True) as store:
        clustering_id = store.current_clustering()["clustering_id"]
        members = store.clusters(clustering_id).select("doc_id", "cluster_id", "assignment", "joined_as_noise")
        summaries = store.cluster_summaries(clustering_id)
    return clustering_id, members, summaries


def test_clusters_on_ray_are_the_local_clusters(ray_local, clustered, tmp_path, monkeypatch):
    """For one seed, k-means with its assignment on Ray (centroids trained on the driver from the same sample) gives
    the local clusters: every document in the same arm, the same sizes, top terms, sample lines and Gaussians.
    Training samples 4 vectors per arm here, so that both engines train on a sample (the Ray driver reads it from the
    store), not on every vector. (New documents joining a clustering on Ray: tests/test_ray_jobs.py.)"""
    from equal_dagster.core import clustering

    monkeypatch.setattr(clustering, "MAX_POINTS_PER_CENTROID", 4)
    runs = {}
    for engine in ("local", "ray"):
        shutil.copytree(clustered.home, tmp_path / engine)
        home = EqualPaths(tmp_path / engine, tmp_path / engine / "crawls")
        defs = build_definitions(home, llm=ExtractionResource(), bandit=bandit_for(home),
                                 compute=ComputeResource(engine=engine))
        with dg.instance_for_test() as instance:
            result = defs.resolve_job_def("cluster").execute_in_process(
                instance=instance, run_config={"ops": {"clusters": {"config": {"recluster": True}}}})
        meta = result.asset_materializations_for_node("clusters")[0].metadata
        assert meta["compute"].value == engine and meta["new_documents"].value == 0
        runs[engine] = _clustering_tables(home)
    (_, local_members, local_summaries), (_, ray_members, ray_summaries) = runs["local"], runs["ray"]
    assert local_members.height == ray_members.height > 0 and local_members.equals(ray_members)
    assert local_summaries.height > 1
    for column in ("cluster_id", "size", "top_terms", "sample_lines", "method", "embedder_id"):
        assert local_summaries[column].to_list() == ray_summaries[column].to_list(), column
    for column in ("centroid", "mean", "spread"):
        np.testing.assert_allclose(np.array(local_summaries[column].to_list()),
                                   np.array(ray_summaries[column].to_list()), atol=1e-5)


def test_a_ray_job_refuses_in_one_line_a_store_it_cannot_see_or_whose_password_it_was_not_sent(tmp_path, monkeypatch):
    """`python -m equal_dagster.ray_job`'s store: its spec never carries a password (Ray shows a job's entry point);
    a store the job cannot see, or whose password the cluster's EQUAL_STORE does not give, is one clear error, and
    nothing is created."""
    import json

    from equal_dagster import ray_job
    from equal_dagster.core.store import StoreError

    elsewhere = json.loads(ray_job.job_spec("cluster", str(tmp_path / "not-shared" / "equal.duckdb"), RAY))
    with pytest.raises(StoreError, match="cannot see the store"):
        ray_job.job_store(elsewhere)
    assert not (tmp_path / "not-shared").exists()
    lake = json.loads(ray_job.job_spec("cluster", "ducklake:postgres:dbname=lake password=s3cret", RAY))
    assert "s3cret" not in json.dumps(lake) and "password=***" in lake["store"] and lake["ray"]["address"] == "auto"
    monkeypatch.delenv("EQUAL_STORE", raising=False)
    with pytest.raises(StoreError, match="set EQUAL_STORE to it"):
        ray_job.job_store(lake)
    monkeypatch.setenv("EQUAL_STORE", "ducklake:postgres:dbname=other password=s3cret")
    with pytest.raises(StoreError, match="there: ducklake:postgres:dbname=other password=\\*\\*\\*"):
        ray_job.job_store(lake)


def test_on_ducklake_the_ray_workers_write_the_vectors_themselves(ray_local, postgres, tmp_path):
    """With a DuckLake store each embedding actor commits its batches' vectors into the lake itself: the driver loads
    no shard, and the vectors are the embedder's; a second run embeds nothing. Then a new crawl's documents join a
    clustering of the lake on Ray, each at its nearest centroid."""
    from datetime import datetime

    import polars as pl

    from equal_dagster.core.clustering import ClusteringParams, build_clustering, nearest_centroid
    from equal_dagster.core.compute import assign_new_on_ray, embed_crawl_on_ray
    from equal_dagster.core.store import table_frame

    class Instant:  # defined in the test: Ray pickles it by value into the actors
        embedder_id = "instant"

        def encode(self, texts):
            vectors = np.array([[len(t), sum(map(ord, t)) % 97, t.count(" ") + 1.0] for t in texts], dtype=np.float32)
            return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

    ids = [f"lake-{i:04d}" for i in range(300)]
    texts = [f"Document {i} about {'rivers ' * (i % 5)}and numbers" for i in range(300)]
    settings = RaySettings(scratch_dir=str(tmp_path / "scratch"))
    with Store.open(postgres.new_lake(tmp_path / "lake")) as store:
        with store.replace_partition("crawl_id", "c1", ["documents"]) as writer:
            writer.insert("documents", table_frame("documents", {
                "doc_id": ids, "crawl_id": ["c1"] * 300, "source_file": ["f.jsonl"] * 300,
                "line_no": list(range(1, 301)), "url": [None] * 300, "text": texts,
                "n_chars": [len(t) for t in texts], "content_hash": ids, "ingested_at": [datetime(2026, 1, 1)] * 300}))

        def no_shards(*_):
            raise AssertionError("the driver was given shards to load")

        store.insert_embeddings_from_parquet = no_shards
        report = embed_crawl_on_ray(store, "c1", Instant, "instant", settings)
        assert report.embedded == 300
        doc_ids, vectors = store.embedding_matrix("instant", "c1")
        assert doc_ids == ids
        np.testing.assert_allclose(vectors, Instant().encode(texts), atol=1e-6)
        assert embed_crawl_on_ray(store, "c1", Instant, "instant", settings).embedded == 0
        # a clustering (made locally), then a new crawl's documents join it on Ray: each its nearest centroid
        clustering = build_clustering(store, "instant", ClusteringParams(n_clusters=3))
        assert clustering.documents == 300 and store.clusters(clustering.clustering_id).height == 300
        with store.replace_partition("crawl_id", "c2", ["documents"]) as writer:
            writer.insert("documents", table_frame("documents", {
                "doc_id": [f"new-{i}" for i in range(30)], "crawl_id": ["c2"] * 30, "source_file": ["g.jsonl"] * 30,
                "line_no": list(range(1, 31)), "url": [None] * 30, "text": [f"A new page {i}" for i in range(30)],
                "n_chars": [12] * 30, "content_hash": [f"new-{i}" for i in range(30)],
                "ingested_at": [datetime(2026, 1, 2)] * 30}))
        embed_crawl_on_ray(store, "c2", Instant, "instant", settings)
        current = {"clustering_id": clustering.clustering_id, "embedder_id": "instant"}
        added = assign_new_on_ray(store, current, settings)
        assert added.new_documents == 30 and added.documents == 330
        members = store.clusters(clustering.clustering_id).filter(pl.col("assignment") == "new_document")
        centroids = np.array(store.cluster_summaries(clustering.clustering_id)["centroid"].to_list(), dtype=np.float32)
        new_ids, new_vectors = store.embedding_matrix("instant", "c2")
        assert dict(zip(members["doc_id"], members["cluster_id"])) == dict(zip(
            new_ids, nearest_centroid(new_vectors, centroids).tolist()))
        assert sum(store.cluster_summaries(clustering.clustering_id)["size"]) == 330
    assert list((tmp_path / "scratch").iterdir()) == []


def _ray_http_workers() -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        if "HttpRequest" in cmdline:
            found.append(process)
    return found


def test_a_ray_worker_killed_mid_job_is_retried_and_repays_only_its_calls_in_flight(ray_local, tmp_path):
    docs = [Document(f"doc-{i}", f"DOC={i} MODE=good\nA text about topic {i}.") for i in range(60)]
    config = ExtractionConfig(backend="openai", base_url="", model="fake-model", max_retries=1, backoff_s=0.01)
    killed: list[int] = []
    with FakeOpenAIServer(latency_s=0.05) as server, Store.open(tmp_path / "s.duckdb") as store:
        config = ExtractionConfig(**{**config.__dict__, "base_url": server.base_url})

        def kill_one_worker() -> None:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and server.requests < 15:
                time.sleep(0.02)
            workers = _ray_http_workers()
            if workers:
                workers[0].kill()
                killed.append(workers[0].pid)

        killer = threading.Thread(target=kill_one_worker)
        killer.start()
        run = build_extractor(config, StoreResponseCache(store), ray=RAY).extract(docs)
        killer.join()
        assert killed, "no Ray worker sending requests was found to kill"
        assert [r.status for r in run.results] == ["ok"] * 60  # the lost batch was sent again
        paid_twice = sum(n - 1 for n in server.answered.values())
        assert paid_twice <= CALLS_PER_BATCH * BATCHES_PER_WORKER  # at most the killed worker's batches in flight
        requests = server.requests
        again = build_extractor(config, StoreResponseCache(store), ray=RAY).extract(docs)
        assert server.requests == requests  # every answer reached the cache: nothing is paid again
        assert all(c.cache_hit for r in again.results for c in r.calls)


def test_each_answer_through_ray_ends_with_the_status_the_local_backend_gives(ray_local, tmp_path):
    """Error answers (500, 400) and requests left by a failed Ray job (503s past Ray's retries fail the dataset) are
    sent again by the local backend: every document ends as it would without Ray."""
    modes = ["good", "fenced", "garbage", "none", "error500", "error400", "rate429", "error503"]
    docs = [Document(f"doc-{m}", f"DOC={m} MODE={m}\nSome text about topic {m}.") for m in modes]
    statuses = {}
    with FakeOpenAIServer() as server:
        config = ExtractionConfig(backend="openai", base_url=server.base_url, model="fake-model", max_retries=2,
                                  backoff_s=0.01)
        for engine, ray in (("local", None), ("ray", RAY)):
            with Store.open(tmp_path / f"{engine}.duckdb") as store:
                run = build_extractor(config, StoreResponseCache(store), ray=ray).extract(docs)
            statuses[engine] = {r.doc_id: r.status for r in run.results}
    assert statuses["local"] == statuses["ray"]
    assert statuses["ray"]["doc-good"] == "ok" and statuses["ray"]["doc-error500"] == "backend_error"
    assert statuses["ray"]["doc-error400"] == "rejected" and statuses["ray"]["doc-garbage"] == "parse_error"
