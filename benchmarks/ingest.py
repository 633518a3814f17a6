"""Ingest rate and peak memory of the corpus step for generated crawls of growing size.

Each size is generated with the demo generator (seed 0) into a temporary folder, then ingested in a fresh
process into a fresh store, so that the process's peak RSS (VmHWM) is the ingest's own: opening the store,
reading, deduplicating, writing, and closing it (DuckDB's checkpoint). Prints one row per size.

    .venv/bin/python benchmarks/ingest.py [--sizes 50000 200000]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def peak_rss_kib() -> int:
    """This process's peak resident memory. VmHWM starts afresh at exec; ru_maxrss would carry over the
    parent's peak (the generator's) into the child, so it is only the fallback off Linux."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def ingest_once(crawl_root: str, crawl: str, store: str) -> None:
    from equal_dagster.core.corpus import ingest_crawl
    from equal_dagster.core.store import Store

    started = time.perf_counter()
    with Store.open(store) as db:
        report = ingest_crawl(db, crawl, Path(crawl_root) / crawl, Path(crawl_root))
    seconds = time.perf_counter() - started
    peak_kib = peak_rss_kib()
    print(json.dumps({"rows": report.rows_read, "kept": report.documents_kept, "seconds": seconds,
                      "peak_rss_mib": peak_kib / 1024}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[50_000, 200_000])
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        ingest_once(*args.child)
        return

    from equal_dagster.demo.corpus import CRAWL_NAMES, write_demo_crawls

    print("| documents generated | rows read | kept | seconds | documents/s | peak RSS (MiB) |")
    print("|---:|---:|---:|---:|---:|---:|")
    for size in args.sizes:
        with tempfile.TemporaryDirectory() as tmp:
            crawl_root = Path(tmp) / "crawls"
            write_demo_crawls(crawl_root, seed=0, n_documents=size * 100 // 55)  # the first crawl holds 55%
            out = subprocess.run([sys.executable, __file__, "--child", str(crawl_root), CRAWL_NAMES[0],
                                  str(Path(tmp) / "bench.duckdb")], check=True, capture_output=True, text=True)
            r = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"| {size:,} | {r['rows']:,} | {r['kept']:,} | {r['seconds']:.1f} | {r['rows'] / r['seconds']:,.0f} "
                  f"| {r['peak_rss_mib']:.0f} |", flush=True)


if __name__ == "__main__":
    main()
