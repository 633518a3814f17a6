"""DataTrove's WARC ingest, for a side-by-side benchmark: WarcReader -> extractor, in one pipeline, no writer.

Run with the DataTrove venv (DataTrove is not installed in the project's .venv):

    benchmarks/.venv-datatrove/bin/python benchmarks/datatrove_warc.py WARC_DIR [--extractor trafilatura|resiliparse|none]
        [--timeout SECONDS] [--no-sandbox] [--limit N]

(make the WARC files with `.venv/bin/python benchmarks/make_warc.py WARC_DIR --records 5000`)

The steps' `run` methods are chained as generators in this process (what LocalPipelineExecutor does for one
task, tasks=1, without its logging and stats files): `WarcReader(WARC_DIR, glob_pattern="*.warc.gz")` then
`Trafilatura(favour_precision=True)` as in DataTrove's examples (examples/fineweb.py). The clock runs from the
first read to the last extracted document; nothing is written.

Note that DataTrove's BaseExtractor.run always extracts in a child process (ExtractorSandbox: the HTML goes
through a Pipe, with a per-document timeout, default 1 s for Trafilatura; documents over it are dropped and the
child is restarted). `--no-sandbox` calls the extractor's `extract` directly in this process instead, to show
what the sandbox costs. DataTrove 0.10.1 ships no Resiliparse extractor: `--extractor resiliparse` uses the
small BaseExtractor subclass below (extract_plain_text(html, main_content=True), the settings of
benchmarks/html_text.py), so it goes through the same sandbox.

Prints one JSON line: {"records": n_in, "documents": n_out, "seconds": s, "docs_per_s": r, ...}, where records
are the HTML response records the reader yielded, documents those the extractor kept.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from importlib.metadata import version

try:
    from datatrove.pipeline.extractors import Trafilatura
    from datatrove.pipeline.extractors.base import BaseExtractor
    from datatrove.pipeline.readers import WarcReader
    from datatrove.utils.typeshelper import StatHints
except ImportError as e:
    sys.exit(f"datatrove_warc.py: cannot import datatrove ({e}); run it with benchmarks/.venv-datatrove/bin/python "
             "(pip install -r benchmarks/requirements-datatrove.txt)")


class Resiliparse(BaseExtractor):
    """Not part of DataTrove 0.10.1: Resiliparse's extract_plain_text(main_content=True) as a DataTrove extractor."""

    name = "⛏ Resiliparse"
    _requires_dependencies = ["resiliparse"]

    def __init__(self, main_content: bool = True, timeout: float = 1):
        super().__init__(timeout)
        self.main_content = main_content

    def extract(self, text: str) -> str:
        from resiliparse.extract.html2text import extract_plain_text
        from resiliparse.parse.html import HTMLTree

        return extract_plain_text(HTMLTree.parse(text), main_content=self.main_content)


def unsandboxed(extractor: BaseExtractor, data):
    """BaseExtractor.run without the child process: same stats and dropping of empty documents."""
    for doc in data:
        extractor.stat_update(StatHints.total)
        with extractor.track_time():
            try:
                doc.text = extractor.extract(doc.text)
                extractor.stat_update("extracted")
            except Exception:
                extractor.stat_update("clean_error")
                continue
        if doc.text:
            extractor.stat_update(StatHints.forwarded)
            yield doc
        else:
            extractor.stat_update(StatHints.dropped)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("warc_dir")
    ap.add_argument("--extractor", choices=["trafilatura", "resiliparse", "none"],
                    help="none: WarcReader only, to show what reading and decompressing cost", default="trafilatura")
    ap.add_argument("--timeout", type=float, default=None, help="per-document extraction timeout in s (default: DataTrove's, 1)")
    ap.add_argument("--no-sandbox", action="store_true", help="extract in this process, not in DataTrove's child process")
    ap.add_argument("--limit", type=int, default=-1, help="read at most this many records")
    args = ap.parse_args()
    if not os.path.isdir(args.warc_dir) or not any(f.endswith(".warc.gz") for f in os.listdir(args.warc_dir)):
        sys.exit(f"datatrove_warc.py: no .warc.gz files in {args.warc_dir} (make them with benchmarks/make_warc.py)")

    from loguru import logger

    logger.remove()  # DataTrove logs through loguru; keep stdout to the one JSON line
    logger.add(sys.stderr, level="WARNING")

    timeout = {} if args.timeout is None else {"timeout": args.timeout}
    reader = WarcReader(args.warc_dir, glob_pattern="*.warc.gz", limit=args.limit)
    extractor = {"trafilatura": lambda: Trafilatura(favour_precision=True, **timeout),
                 "resiliparse": lambda: Resiliparse(**timeout), "none": lambda: None}[args.extractor]()

    n_in = 0
    n_out = 0
    chars = 0

    def counted(docs):
        nonlocal n_in
        for d in docs:
            n_in += 1
            yield d

    began = time.perf_counter()
    docs = counted(reader.run(None, rank=0, world_size=1))
    if extractor is None:
        out = docs
    else:
        out = unsandboxed(extractor, docs) if args.no_sandbox else extractor.run(docs, rank=0, world_size=1)
    for doc in out:
        n_out += 1
        chars += len(doc.text)
    seconds = time.perf_counter() - began

    stats = {k: v.total for k, v in extractor.stats.stats.items()} if extractor is not None else {}
    print(json.dumps({
        "records": n_in,
        "documents": n_out,
        "seconds": round(seconds, 2),
        "docs_per_s": round(n_out / seconds, 1),
        "records_per_s": round(n_in / seconds, 1),
        "extractor": args.extractor,
        "sandbox": extractor is not None and not args.no_sandbox,
        "timeout_s": extractor.timeout if extractor is not None else None,
        "extractor_stats": stats,
        "mean_chars": round(chars / max(1, n_out)),
        "datatrove": version("datatrove"),
        "trafilatura": version("trafilatura"),
        "resiliparse": version("resiliparse"),
    }))


if __name__ == "__main__":
    main()
