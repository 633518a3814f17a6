"""A DuckLake store as rounds accumulate, then after `Store.maintain` (the store_maintenance job), in one run:

One crawl of N generated documents ingested into a new DuckLake store (catalog: a throwaway Postgres from the
machine's binaries, data: Parquet in a local folder), then R rounds written one after another (each the rules
extractor's pairs from 50 documents, one partition write, as a bandit round's), and 20 more after maintenance.
Every 50 rounds: the median time of the last 50 round writes, the time to read every QA pair (`Store.qa_pairs`) and
the rounds table, and the Parquet files in the data folder. Then `Store.maintain(delete_after_s=0)` (the job's
default keeps merged-away files a day) and the same figures again.

    .venv/bin/python benchmarks/lake_maintenance.py [--documents 20000] [--rounds 300]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # tests/postgres.py: the throwaway Postgres the store tests use
sys.path.insert(0, str(Path(__file__).resolve().parent))

PER_ROUND = 50


def measure(db, lake_folder: Path) -> tuple[float, float, int]:
    """Seconds to read every QA pair, seconds to read the rounds table, Parquet files in the data folder."""
    tick = time.perf_counter()
    db.qa_pairs()
    qa_s = time.perf_counter() - tick
    tick = time.perf_counter()
    db.rounds()
    rounds_s = time.perf_counter() - tick
    return qa_s, rounds_s, sum(1 for _ in lake_folder.rglob("*.parquet"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--documents", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=300)
    args = parser.parse_args()

    from postgres import Postgres, _free_port, _server_user, postgres_bin
    from store import CRAWLS, generate

    from equal_dagster.core.corpus import ingest_crawl
    from equal_dagster.core.extraction import Document
    from equal_dagster.core.extraction.extractor import RuleExtractor
    from equal_dagster.core.rounds import write_extraction_round
    from equal_dagster.core.store import Store

    bin_dir = postgres_bin()
    if bin_dir is None:
        sys.exit("benchmarks/lake_maintenance.py: no Postgres binaries (initdb, pg_ctl): apt-get install postgresql")
    print(f"command: {' '.join([Path(sys.executable).name, 'benchmarks/lake_maintenance.py', *sys.argv[1:]])}; "
          f"{os.cpu_count()} CPUs; {time.strftime('%Y-%m-%d')}")
    user = _server_user()
    folder = Path(tempfile.mkdtemp(prefix="equal-postgres-"))
    if user:
        os.chown(folder, user.pw_uid, user.pw_gid)
    server = Postgres(bin_dir, folder, _free_port(), user)
    server.start()
    work = Path(tempfile.mkdtemp(prefix="equal-lake-bench-"))
    try:
        crawls = work / "crawls"
        crawls.mkdir()
        generate(crawls, args.documents)
        lake = server.new_lake(work / "lake")
        with Store.open(lake) as db:
            ingest_crawl(db, CRAWLS[0], crawls / CRAWLS[0], crawls)
            rows = db.documents(CRAWLS[0]).head(PER_ROUND * 40)
            docs = [Document(r["doc_id"], r["text"]) for r in rows.iter_rows(named=True)]
            extractor = RuleExtractor()

            def write(round_no: int) -> float:
                start = (round_no % 40) * PER_ROUND
                run = extractor.extract(docs[start:start + PER_ROUND])
                tick = time.perf_counter()
                write_extraction_round(db, f"r{round_no:04d}", round_no, "equal_ucb", run, seed=0,
                                       dagster_run_id="bench")
                return time.perf_counter() - tick

            print("\n| rounds written | a round's write (ms, median of the last 50) | read every QA pair (ms) | "
                  "read the rounds (ms) | Parquet files |")
            print("|---|---:|---:|---:|---:|")
            writes: list[float] = []
            for round_no in range(1, args.rounds + 1):
                writes.append(write(round_no))
                if round_no % 50 == 0:
                    qa_s, rounds_s, files = measure(db, work / "lake")
                    print(f"| {round_no} | {statistics.median(writes[-50:]) * 1000:.0f} | {qa_s * 1000:.0f} | "
                          f"{rounds_s * 1000:.0f} | {files:,} |", flush=True)
            report = db.maintain(delete_after_s=0)
            qa_s, rounds_s, files = measure(db, work / "lake")
            after = [write(round_no) for round_no in range(args.rounds + 1, args.rounds + 21)]
            print(f"| after maintenance (20 more rounds) | {statistics.median(after) * 1000:.0f} | {qa_s * 1000:.0f} | "
                  f"{rounds_s * 1000:.0f} | {files:,} |")
            print(f"\nmaintenance: {report.describe()}")
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
