"""Ingest rate and peak memory of the corpus step for generated crawls of growing size.

Each size is generated with the demo generator (seed 0) into a temporary folder, then ingested in a fresh
process into a fresh store, so that the process's peak RSS (VmHWM) is the ingest's own: opening the store,
reading, deduplicating, writing, and closing it (DuckDB's checkpoint). Prints one row per size, then, with
``--large-docs N``, one for a crawl of N documents of 450 kB each (random words, 2 kB lines of JSON apart).

    .venv/bin/python benchmarks/ingest.py [--sizes 50000 200000 400000] [--large-docs 2000]

With ``--warc N``: N response records of real HTML pages (the HTML pages of tests/fixtures/realtext, repeated
under distinct URIs, each repeat made a distinct document: its number in its first heading and paragraph; each
with its request record, as a crawler writes them; benchmarks/make_warc.py) ingested
by ``equal`` (FastWARC, resiliparse's main text, language, dedup, the DuckDB write), then read by DataTrove's
``WarcReader`` + ``Trafilatura`` extractor (its defaults) and + the same resiliparse extraction, on the same files
in the same run (DataTrove runs from its own environment, benchmarks/.venv-datatrove:
``python3 -m venv benchmarks/.venv-datatrove && benchmarks/.venv-datatrove/bin/pip install -r
benchmarks/requirements-datatrove.txt``; skipped, and said so, when it is missing). DataTrove's figure excludes
writing; ours includes it.

    .venv/bin/python benchmarks/ingest.py --warc 5000
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
    parser.add_argument("--sizes", type=int, nargs="+", default=[50_000, 200_000, 400_000])
    parser.add_argument("--large-docs", type=int, default=0, help="also a crawl of this many 450 kB documents")
    parser.add_argument("--warc", type=int, default=0, help="only the WARC benchmark, with this many page records")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        ingest_once(*args.child)
        return
    if args.warc:
        warc_benchmark(args.warc)
        return

    from equal_dagster.demo.corpus import CRAWL_NAMES, write_demo_crawls

    print("| documents generated | rows read | kept | seconds | documents/s | peak RSS (MiB) |")
    print("|---:|---:|---:|---:|---:|---:|")
    runs = [(f"{size:,}", lambda root, size=size: write_demo_crawls(root, seed=0, n_documents=size * 100 // 55),
             CRAWL_NAMES[0]) for size in args.sizes]  # the first crawl holds 55%
    if args.large_docs:
        runs.append((f"{args.large_docs:,} of 450 kB", lambda root: write_large_documents(root, args.large_docs),
                     "large"))
    for label, write, crawl in runs:
        with tempfile.TemporaryDirectory() as tmp:
            crawl_root = Path(tmp) / "crawls"
            write(crawl_root)
            out = subprocess.run([sys.executable, __file__, "--child", str(crawl_root), crawl,
                                  str(Path(tmp) / "bench.duckdb")], check=True, capture_output=True, text=True)
            r = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"| {label} | {r['rows']:,} | {r['kept']:,} | {r['seconds']:.1f} | {r['rows'] / r['seconds']:,.0f} "
                  f"| {r['peak_rss_mib']:.0f} |", flush=True)


DATATROVE_PYTHON = Path(__file__).parent / ".venv-datatrove" / "bin" / "python"
FIXTURE_PAGES = Path(__file__).parent.parent / "tests" / "fixtures" / "realtext" / "pages"


def warc_benchmark(records: int) -> None:
    import gzip

    with tempfile.TemporaryDirectory() as tmp:
        html_dir, crawl_root = Path(tmp) / "html", Path(tmp) / "crawls"
        html_dir.mkdir()
        for page in sorted(FIXTURE_PAGES.glob("*_html/*.html.gz")):
            (html_dir / page.name[:-3]).write_bytes(gzip.open(page).read())
        made = subprocess.run([sys.executable, str(Path(__file__).parent / "make_warc.py"), str(crawl_root / "web"),
                               str(html_dir), "--records", str(records), "--distinct"], check=True, capture_output=True,
                              text=True)
        print(made.stdout.strip())
        print("\n| reader | records | documents | seconds | records/s |")
        print("|---|---:|---:|---:|---:|")
        out = subprocess.run([sys.executable, __file__, "--child", str(crawl_root), "web", str(Path(tmp) / "bench.duckdb")],
                             check=True, capture_output=True, text=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"| equal (FastWARC + resiliparse, dedup, DuckDB write) | {r['rows']:,} | {r['kept']:,} | "
              f"{r['seconds']:.1f} | {r['rows'] / r['seconds']:,.1f} |", flush=True)
        if not DATATROVE_PYTHON.exists():
            print(f"| DataTrove | skipped: no {DATATROVE_PYTHON} (see this file's docstring) | | | |")
            return
        for extractor in ("trafilatura", "resiliparse"):
            out = subprocess.run([str(DATATROVE_PYTHON), str(Path(__file__).parent / "datatrove_warc.py"),
                                  str(crawl_root / "web"), "--extractor", extractor],
                                 check=True, capture_output=True, text=True)
            d = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"| DataTrove WarcReader + {extractor} (no write) | {d['records']:,} | {d['documents']:,} | "
                  f"{d['seconds']:.1f} | {d['records'] / d['seconds']:,.1f} |", flush=True)


def write_large_documents(crawl_root: Path, n: int, size: int = 450_000) -> None:
    """n documents of ``size`` characters of random words (seed 0), one JSONL file."""
    import random

    rng = random.Random(0)
    words = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 10))) for _ in range(5000)]
    (crawl_root / "large").mkdir(parents=True)
    with open(crawl_root / "large" / "part-00000.jsonl", "w") as f:
        for i in range(n):
            f.write(json.dumps({"id": f"large-{i}", "text": " ".join(rng.choices(words, k=size // 5))[:size]}) + "\n")


if __name__ == "__main__":
    main()
