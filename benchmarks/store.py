"""The store on one DuckDB file against DuckLake on a Postgres catalog, measured in one run.

1. Four crawls of N generated documents each (the demo generator, seeds 0-3, its first crawl of each) ingested
   one after another into a DuckDB file (one writer at a time: what the `duckdb` pool of 1 does), then all four at
   once, four processes, into DuckLake (catalog in a throwaway Postgres from the machine's binaries, data as Parquet
   in a local folder). Wall time, documents/s, and the peak RSS of each process (VmHWM).
2. The single-writer rate: the first crawl alone into a fresh DuckLake store, against the first crawl into the
   DuckDB file above.
3. A round's write: the extractions and QA pairs of D documents (the rules extractor on the first documents of the
   first crawl) written as one round partition, in each store (median of 3 rounds).

    .venv/bin/python benchmarks/store.py [--documents 50000] [--round-documents 500] [--repeats 3]

Each of the --repeats runs measures the sequential and the concurrent ingest side by side, twice: into existing
stores (each created empty and migrated before the clock starts: crawls landing on a store in use, the case that
repeats) and into new stores (the first file ingest creates the file; the four lake writers race to create the lake,
a one-time cost). The ratios' medians and every run's ratio are printed for each.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # tests/postgres.py: the throwaway Postgres the store tests use
sys.path.insert(0, str(Path(__file__).resolve().parent))

from ingest import peak_rss_kib  # noqa: E402

CRAWLS = ["crawl-a", "crawl-b", "crawl-c", "crawl-d"]


def child_ingest(crawl_root: str, crawl: str, store: str, data_path: str) -> None:
    from equal_dagster.core.corpus import ingest_crawl
    from equal_dagster.core.store import LakeLocation, Store

    location = LakeLocation.parse(store, data_path) if store.startswith("ducklake:") else store
    started = time.perf_counter()
    with Store.open(location, wait_s=600) as db:
        report = ingest_crawl(db, crawl, Path(crawl_root) / crawl, Path(crawl_root))
        retried = getattr(db, "conflicts_retried", 0)
    seconds = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_SELF)  # the whole process's: start-up and imports included
    print(json.dumps({"crawl": crawl, "rows": report.rows_read, "kept": report.documents_kept, "seconds": seconds,
                      "peak_rss_mib": peak_rss_kib() / 1024, "conflicts_retried": retried,
                      "cpu_s": usage.ru_utime + usage.ru_stime}))


def child_round(store: str, data_path: str, crawl: str, documents: int) -> None:
    from equal_dagster.core.extraction import Document
    from equal_dagster.core.extraction.extractor import RuleExtractor
    from equal_dagster.core.rounds import write_extraction_round
    from equal_dagster.core.store import LakeLocation, Store

    location = LakeLocation.parse(store, data_path) if store.startswith("ducklake:") else store
    with Store.open(location) as db:
        rows = db.documents(crawl).head(documents)
        docs = [Document(r["doc_id"], r["text"]) for r in rows.iter_rows(named=True)]
        run = RuleExtractor().extract(docs)
        seconds = []
        for round_no in (1, 2, 3):
            tick = time.perf_counter()
            write_extraction_round(db, f"r{round_no:04d}", round_no, "equal_ucb", run, seed=0, dagster_run_id="bench")
            seconds.append(time.perf_counter() - tick)
    print(json.dumps({"documents": len(docs), "pairs": sum(len(r.qa_pairs) for r in run.results),
                      "seconds": statistics.median(seconds)}))


def _spawn(*args: str) -> subprocess.Popen:
    env = {**os.environ, "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE", "Haswell")}
    return subprocess.Popen([sys.executable, __file__, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)


def _result(process: subprocess.Popen) -> dict:
    out, err = process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"child failed ({process.returncode}): {err[-3000:]}")
    return json.loads(out.strip().splitlines()[-1])


def generate(crawl_root: Path, documents: int) -> None:
    """Four crawls of distinct documents: the demo generator's first crawl (seeds 0-3), each row's id and text marked
    with its crawl (the generator draws from the same templates, so crawls would otherwise share most texts and the
    DuckDB file, which sees the earlier crawls, would keep far fewer documents than four concurrent writers)."""
    from equal_dagster.demo.corpus import CRAWL_NAMES, write_demo_crawls

    for seed, name in enumerate(CRAWLS):
        with tempfile.TemporaryDirectory() as tmp:
            write_demo_crawls(Path(tmp), seed=seed, n_documents=documents * 100 // 55)  # the first crawl holds 55%
            (crawl_root / name).mkdir()
            for part in sorted((Path(tmp) / CRAWL_NAMES[0]).iterdir()):  # .jsonl and .jsonl.gz parts
                opener = gzip.open if part.suffix == ".gz" else open
                with opener(part, "rb") as f:
                    lines = f.read().split(b"\n")
                with opener(crawl_root / name / part.name, "wb") as out:
                    out.write(b"\n".join(_marked(line, name) for line in lines))


def _marked(line: bytes, crawl: str) -> bytes:
    try:
        row = json.loads(line)
    except ValueError:
        return line  # the generator's broken rows stay broken (quarantined)
    if isinstance(row, dict) and isinstance(row.get("text"), str):
        row["text"] = f"{row['text']}\n({crawl})"
        if isinstance(row.get("id"), str):
            row["id"] = f"{crawl}-{row['id']}"
    return json.dumps(row).encode()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--documents", type=int, default=50_000, help="generated rows per crawl")
    parser.add_argument("--round-documents", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=3, help="side-by-side runs; the medians are reported")
    parser.add_argument("--child-ingest", nargs=4, help=argparse.SUPPRESS)
    parser.add_argument("--child-round", nargs=4, help=argparse.SUPPRESS)
    parser.add_argument("--child-create", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_create:
        return create(*args.child_create)
    if args.child_ingest:
        return child_ingest(*args.child_ingest)
    if args.child_round:
        return child_round(*args.child_round[:3], int(args.child_round[3]))

    from postgres import Postgres, _free_port, _server_user, postgres_bin

    bin_dir = postgres_bin()
    if bin_dir is None:
        sys.exit("benchmarks/store.py: no Postgres binaries (initdb, pg_ctl): apt-get install postgresql")
    print(f"command: {' '.join([Path(sys.executable).name, 'benchmarks/store.py', *sys.argv[1:]])}; "
          f"{os.cpu_count()} CPUs; {time.strftime('%Y-%m-%d')}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        crawl_root = tmp_path / "crawls"
        crawl_root.mkdir()
        tick = time.perf_counter()
        generate(crawl_root, args.documents)
        print(f"generated {len(CRAWLS)} crawls of {args.documents:,} rows in {time.perf_counter() - tick:.0f} s")
        user = _server_user()
        folder = Path(tempfile.mkdtemp(prefix="equal-postgres-"))  # its own: Postgres may run as another user
        if user:
            os.chown(folder, user.pw_uid, user.pw_gid)
        server = Postgres(bin_dir, folder, _free_port(), user)
        server.start()
        try:
            run(server, crawl_root, tmp_path, args.round_documents, args.repeats)
        finally:
            server.stop()
            shutil.rmtree(folder, ignore_errors=True)


def postgres_cpu_s(server) -> float:
    """CPU seconds the Postgres server has used so far: the postmaster's, its ended backends' (reaped into its
    children's times) and its live backends'. On a busy machine CPU is the steadier measure of what a store costs."""
    tick = os.sysconf("SC_CLK_TCK")

    def times(pid: str) -> tuple[int, float]:  # (parent pid, CPU seconds of the process and its reaped children)
        fields = (Path("/proc") / pid / "stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[1]), sum(int(f) for f in fields[11:15]) / tick

    try:
        postmaster = (server.folder / "data" / "postmaster.pid").read_text().split()[0]
        total = times(postmaster)[1]
    except (OSError, IndexError, ValueError):
        return float("nan")
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent, seconds = times(entry.name)
            except (OSError, IndexError, ValueError):
                continue
            total += seconds if str(parent) == postmaster else 0.0
    return total


def create(store: str, data_path: str) -> None:
    """A new, empty store (created and migrated), in a process of its own."""
    from equal_dagster.core.store import LakeLocation, Store

    with Store.open(LakeLocation.parse(store, data_path) if store.startswith("ducklake:") else store):
        pass
    print("{}")


def run_once(server, crawl_root: Path, folder: Path, existing: bool) -> dict:
    """One side-by-side measurement: 4 crawls sequentially into a DuckDB file, 4 at once into a DuckLake store, the
    first crawl alone into another DuckLake store. ``existing``: each store is created (empty, migrated) before the
    clock starts, as when crawls land on a store in use; else the first ingest creates the file, and the four
    concurrent processes race to create the lake (a one-time cost)."""
    folder.mkdir()
    duck = str(folder / "equal.duckdb")
    lake = server.new_lake(folder / "lake")
    single_lake = server.new_lake(folder / "lake-single")
    if existing:
        for store, data_path in ((duck, ""), (f"ducklake:{lake.catalog}", lake.data_path),
                                 (f"ducklake:{single_lake.catalog}", single_lake.data_path)):
            _result(_spawn("--child-create", store, data_path))
    tick = time.perf_counter()
    sequential = [_result(_spawn("--child-ingest", str(crawl_root), crawl, duck, "")) for crawl in CRAWLS]
    sequential_s = time.perf_counter() - tick
    postgres_before = postgres_cpu_s(server)
    tick = time.perf_counter()
    concurrent = [_result(p) for p in [_spawn("--child-ingest", str(crawl_root), crawl, f"ducklake:{lake.catalog}",
                                              lake.data_path) for crawl in CRAWLS]]
    concurrent_s = time.perf_counter() - tick
    postgres_s = postgres_cpu_s(server) - postgres_before
    single = _result(_spawn("--child-ingest", str(crawl_root), CRAWLS[0], f"ducklake:{single_lake.catalog}",
                            single_lake.data_path))
    return {"duck": duck, "lake": lake, "sequential": sequential, "sequential_s": sequential_s,
            "concurrent": concurrent, "concurrent_s": concurrent_s, "single": single, "postgres_s": postgres_s,
            "concurrency_ratio": concurrent_s / sequential_s,
            "single_ratio": (single["rows"] / single["seconds"]) / (sequential[0]["rows"] / sequential[0]["seconds"])}


def report(title: str, runs: list[dict]) -> dict:
    """Prints the runs' figures under ``title``; returns the run of median ratio."""
    median = sorted(runs, key=lambda r: r["concurrency_ratio"])[len(runs) // 2]
    rows = sum(r["rows"] for r in median["sequential"])
    print(f"\n### {title}")
    print(f"\n| 4 crawls (the run of median ratio, of {len(runs)}) | wall time (s) | documents/s | documents kept | "
          "peak RSS per process (MiB) | commit retries | CPU (s) |")
    print("|---|---:|---:|---:|---|---:|---:|")
    for label, results, seconds, postgres_s in (
            ("DuckDB file, one after another", median["sequential"], median["sequential_s"], 0.0),
            ("DuckLake + Postgres, 4 processes at once", median["concurrent"], median["concurrent_s"],
             median["postgres_s"])):
        peaks = ", ".join(f"{r['peak_rss_mib']:.0f}" for r in results)
        cpu = sum(r["cpu_s"] for r in results)
        print(f"| {label} | {seconds:.1f} | {rows / seconds:,.0f} | {sum(r['kept'] for r in results):,} | {peaks} | "
              f"{sum(r['conflicts_retried'] for r in results)} | "
              f"{cpu:.1f}{f' + {postgres_s:.1f} Postgres' if postgres_s else ''} |")
    ratios = sorted(r["concurrency_ratio"] for r in runs)
    print(f"\nconcurrent DuckLake / sequential DuckDB wall time: median **{statistics.median(ratios):.2f}x** "
          f"(runs: {', '.join(f'{x:.2f}' for x in ratios)}; goal <= 0.6x)")
    # CPU, steadier than wall time on a busy machine: the concurrent ingest's (processes and Postgres) spread over
    # every core, over the sequential ingest's
    cores = os.cpu_count() or 1
    cpu_ratios = [(sum(r["cpu_s"] for r in run["concurrent"]) + run["postgres_s"]) / cores
                  / sum(r["cpu_s"] for r in run["sequential"]) for run in runs]
    print(f"CPU: concurrent (processes and Postgres) / {cores} cores, over sequential: "
          f"{', '.join(f'{x:.2f}' for x in cpu_ratios)} (each run)")
    singles = sorted(r["single_ratio"] for r in runs)
    first = median["sequential"][0]
    print(f"single writer, {CRAWLS[0]} ({first['rows']:,} rows) into an empty store, DuckLake / DuckDB file rate: "
          f"median **{statistics.median(singles):.2f}x** (runs: {', '.join(f'{x:.2f}' for x in singles)}; goal >= "
          f"0.7x); the median run: DuckDB file {first['rows'] / first['seconds']:,.0f} rows/s, DuckLake "
          f"{median['single']['rows'] / median['single']['seconds']:,.0f} rows/s")
    return median


def run(server, crawl_root: Path, tmp_path: Path, round_documents: int, repeats: int) -> None:
    settings = {"existing": "into existing stores (created empty before the clock: crawls landing on a store in use)",
                "new": "into new stores (the first file ingest creates the file; the 4 lake writers race to create "
                       "the lake)"}
    runs: dict[str, list[dict]] = {name: [] for name in settings}
    for i in range(repeats):  # the two settings alternate, each run side by side
        for name in settings:
            runs[name].append(run_once(server, crawl_root, tmp_path / f"run-{name}-{i}", existing=name == "existing"))
    medians = {name: report(title, runs[name]) for name, title in settings.items()}
    median = medians["existing"]  # a round's write, in the stores of that run
    lake = median["lake"]
    round_duck = _result(_spawn("--child-round", median["duck"], "", CRAWLS[0], str(round_documents)))
    round_lake = _result(_spawn("--child-round", f"ducklake:{lake.catalog}", lake.data_path, CRAWLS[0],
                                str(round_documents)))
    print(f"a round's write ({round_duck['documents']} documents, {round_duck['pairs']} QA pairs; median of 3): "
          f"DuckDB file {round_duck['seconds'] * 1000:.0f} ms, DuckLake {round_lake['seconds'] * 1000:.0f} ms")


if __name__ == "__main__":
    main()
