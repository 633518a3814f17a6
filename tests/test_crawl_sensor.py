import os
import time

import dagster as dg
import pytest

from conftest import write_jsonl
from equal_dagster.automation import new_crawl_sensor
from equal_dagster.core.crawls import scan_crawl_folder
from equal_dagster.partitions import crawls_partitions
from equal_dagster.resources.crawls import CrawlFolder


@pytest.fixture
def instance():
    with dg.instance_for_test() as instance:
        yield instance


def tick(instance, crawl_dir, cursor):
    context = dg.build_sensor_context(instance=instance, cursor=cursor,
                                      resources={"crawl_folder": CrawlFolder(path=str(crawl_dir), settle_seconds=0)})
    result = new_crawl_sensor(context)
    for request in result.dynamic_partitions_requests or []:
        instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
    return result, result.cursor or cursor


def requested(result):
    return [r.partition_key for r in result.run_requests or []]


def test_a_crawl_is_requested_once_and_a_new_one_is_picked_up(paths, instance):
    write_jsonl(paths.crawl_dir / "crawl-1" / "a.jsonl", [{"text": "a"}])
    result, cursor = tick(instance, paths.crawl_dir, None)
    assert requested(result) == ["crawl-1"]
    assert result.run_requests[0].run_key == "crawl:crawl-1"
    assert instance.get_dynamic_partitions(crawls_partitions.name) == ["crawl-1"]

    result, cursor = tick(instance, paths.crawl_dir, cursor)
    assert requested(result) == [] and "no new crawl" in result.skip_reason.skip_message

    write_jsonl(paths.crawl_dir / "crawl-2.jsonl", [{"text": "b"}])
    result, cursor = tick(instance, paths.crawl_dir, cursor)
    assert requested(result) == ["crawl-2.jsonl"]
    # a lost cursor does not request again what is already a partition
    result, _ = tick(instance, paths.crawl_dir, None)
    assert requested(result) == []


def test_a_symlink_out_of_the_crawl_folder_is_refused_and_reported(paths, instance, tmp_path):
    write_jsonl(tmp_path / "outside" / "x.jsonl", [{"text": "secret"}])
    os.symlink(tmp_path / "outside", paths.crawl_dir / "escape")
    write_jsonl(paths.crawl_dir / "fine" / "a.jsonl", [{"text": "a"}])
    result, _ = tick(instance, paths.crawl_dir, None)
    assert requested(result) == ["fine"]
    scan = scan_crawl_folder(paths.crawl_dir, set(), 0)
    assert "escape" in scan.refused and "outside the crawl folder" in scan.refused["escape"]
    result, _ = tick(instance, paths.crawl_dir, None)
    assert "escape" in result.skip_reason.skip_message and "outside" in result.skip_reason.skip_message


def test_a_crawl_still_being_written_waits(paths):
    write_jsonl(paths.crawl_dir / "busy" / "a.jsonl", [{"text": "a"}])
    scan = scan_crawl_folder(paths.crawl_dir, set(), settle_seconds=60)
    assert scan.settling == ["busy"] and scan.new == []
    scan = scan_crawl_folder(paths.crawl_dir, set(), settle_seconds=60, now=time.time() + 120)
    assert scan.new == ["busy"]


def test_names_that_are_not_crawl_names_are_refused(paths):
    (paths.crawl_dir / "bad,name[1]").mkdir()
    (paths.crawl_dir / ".hidden").mkdir()
    scan = scan_crawl_folder(paths.crawl_dir, set(), 0)
    assert list(scan.refused) == ["bad,name[1]"] and scan.new == []
