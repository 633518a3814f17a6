"""Embeddings: incremental by crawl and by embedder, streamed in chunks, and the `embeddings` asset in process."""

import json
import shutil

import dagster as dg
import numpy as np
import pytest
from conftest import write_jsonl

from equal_dagster.core.corpus import CrawlFormat, ingest_crawl
from equal_dagster.core.embedding import EMBEDDER_INFO, Embedder, EmbedderUnavailable, embed_crawl, resolve_model
from equal_dagster.core.store import Store
from equal_dagster.definitions import build_definitions
from equal_dagster.partitions import crawls_partitions
from equal_dagster.resources.llm import ExtractionResource


@pytest.fixture(scope="module")
def base_embedder():
    return Embedder()


def add_crawl(store, paths, crawl_id, texts):
    write_jsonl(paths.crawl_dir / crawl_id / "part.jsonl", [{"id": f"{crawl_id}-{i}", "text": t} for i, t in enumerate(texts)])
    ingest_crawl(store, crawl_id, paths.crawl_dir / crawl_id, paths.crawl_dir, CrawlFormat())


TEXTS_A = [f"Problem {i}. Ava has {i} apples and buys 3 more. How many apples does she have?" for i in range(12)]
TEXTS_B = [f"City council meeting number {i} discussed the new park and the budget." for i in range(7)]


def test_embedding_is_incremental_by_crawl_and_by_embedder(paths, tmp_path, base_embedder):
    with Store.open(paths.store) as store:
        add_crawl(store, paths, "crawl-a", TEXTS_A)
        first = embed_crawl(store, "crawl-a", base_embedder, chunk_size=5)
        assert (first.embedded, first.already_embedded) == (12, 0)
        again = embed_crawl(store, "crawl-a", base_embedder)
        assert (again.embedded, again.already_embedded) == (0, 12)  # a re-run embeds nothing

        add_crawl(store, paths, "crawl-b", TEXTS_B)
        assert embed_crawl(store, "crawl-b", base_embedder).embedded == 7  # only the new crawl's documents
        assert store.embedding_counts() == {"all-MiniLM-L6-v2": 19}

        ids, matrix = store.embedding_matrix("all-MiniLM-L6-v2")
        assert matrix.shape == (19, 384) and np.allclose(np.linalg.norm(matrix, axis=1), 1.0, atol=1e-5)
        direct = base_embedder.encode([TEXTS_A[3]])[0]
        assert np.allclose(matrix[ids.index("crawl-a-3")], direct, atol=1e-5)  # chunking changes nothing

        # a new embedder embeds everything again; the old vectors stay until dropped
        tuned_dir = tmp_path / "tuned"
        shutil.copytree(resolve_model("all-MiniLM-L6-v2").location, tuned_dir)
        (tuned_dir / EMBEDDER_INFO).write_text(json.dumps({"embedder_id": "tuned-test"}))
        tuned = Embedder(str(tuned_dir))
        assert tuned.embedder_id == "tuned-test" and tuned.resolved.source == "local"
        assert embed_crawl(store, "crawl-a", tuned).embedded == 12
        assert store.embedding_counts("crawl-a") == {"all-MiniLM-L6-v2": 12, "tuned-test": 12}
        assert store.drop_embeddings("all-MiniLM-L6-v2") == 19
        assert store.embedding_counts() == {"tuned-test": 12}

        # a re-ingested crawl: vectors of documents that left it are deleted, new documents embedded
        write_jsonl(paths.crawl_dir / "crawl-a" / "part.jsonl", [{"id": "crawl-a-new", "text": "A brand new page."}])
        ingest_crawl(store, "crawl-a", paths.crawl_dir / "crawl-a", paths.crawl_dir, CrawlFormat())
        report = embed_crawl(store, "crawl-a", tuned)
        assert (report.stale_deleted, report.embedded) == (12, 1)


def test_an_unknown_model_offline_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(EmbedderUnavailable, match="neither a local folder nor the packaged"):
        resolve_model("some-org/some-embedder")
    assert resolve_model("sentence-transformers/all-MiniLM-L6-v2").source == "packaged"


def test_embeddings_asset_in_process(paths):
    write_jsonl(paths.crawl_dir / "crawl-a" / "part.jsonl", [{"id": f"d{i}", "text": t} for i, t in enumerate(TEXTS_A)])
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(crawls_partitions.name, ["crawl-a"])
        defs = build_definitions(paths, llm=ExtractionResource())
        assert defs.resolve_job_def("ingest_crawl").execute_in_process(partition_key="crawl-a", instance=instance).success
        job = defs.resolve_job_def("embed_crawl")
        result = job.execute_in_process(partition_key="crawl-a", instance=instance)
        metadata = {k: v.value for k, v in result.asset_materializations_for_node("embeddings")[0].metadata.items()}
        assert metadata["embedded"] == 12 and metadata["dagster/row_count"] == 12
        assert metadata["embedder_id"] == "all-MiniLM-L6-v2" and metadata["dimension"] == 384
        messages = [e.user_message for e in instance.all_logs(result.run_id)]
        assert any("embedded 12/12 documents of crawl-a (" in m and "documents/s" in m for m in messages)
        again = job.execute_in_process(partition_key="crawl-a", instance=instance)
        metadata = {k: v.value for k, v in again.asset_materializations_for_node("embeddings")[0].metadata.items()}
        assert metadata["embedded"] == 0 and metadata["already_embedded"] == 12
