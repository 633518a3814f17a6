"""The one Definitions of equal-dagster: assets, resources, jobs and sensors."""

from __future__ import annotations

import os

import dagster as dg

from equal_dagster.assets.corpus import corpus
from equal_dagster.automation import ingest_crawl_job, new_crawl_sensor
from equal_dagster.core.settings import EqualPaths
from equal_dagster.resources.crawls import CrawlFolder
from equal_dagster.resources.store import StoreResource


def build_definitions(paths: EqualPaths | None = None) -> dg.Definitions:
    """Definitions for one EQUAL home (default: from $EQUAL_HOME and $EQUAL_CRAWL_DIR)."""
    paths = paths or EqualPaths.from_env()
    crawl_folder = CrawlFolder(
        path=str(paths.crawl_dir),
        text_field=os.environ.get("EQUAL_TEXT_FIELD", "text"),
        id_field=os.environ.get("EQUAL_ID_FIELD", "id") or None,
        url_field=os.environ.get("EQUAL_URL_FIELD", "url") or None,
        max_doc_bytes=int(os.environ.get("EQUAL_MAX_DOC_BYTES", "1000000")),
        settle_seconds=float(os.environ.get("EQUAL_CRAWL_SETTLE_SECONDS", "10")),
    )
    return dg.Definitions(
        assets=[corpus],
        jobs=[ingest_crawl_job],
        sensors=[new_crawl_sensor],
        resources={
            "store": StoreResource(database=str(paths.store)),
            "crawl_folder": crawl_folder,
        },
    )


defs = build_definitions()
