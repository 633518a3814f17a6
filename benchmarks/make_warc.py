"""Build gzipped WARC files from real HTML pages, for the ingest benchmarks (ours and DataTrove's).

Every page becomes a `request` record followed by a `response` record (as a crawler writes them; the two are
linked by WARC-Concurrent-To): HTTP/1.1 200 with `Content-Type: text/html; charset=utf-8` and a target URI
such as https://docs.python.org/3.11/library/os.html. The page set is repeated until `--records` responses are
written; repeat k > 0 gets `?r=k` on its URIs, so every URI is distinct. Files hold about `--per-file` responses
each (request records come on top), as bench-00000.warc.gz, bench-00001.warc.gz, ...

Responses carry `WARC-Identified-Payload-Type: text/html`, as Common Crawl's do (`--no-payload-type` leaves it
out; DataTrove's WarcReader then sniffs every payload with libmagic).

    .venv/bin/python benchmarks/make_warc.py OUT_DIR [--records 20000] [--per-file 1000] [SOURCES ...]

Sources default to the pages of benchmarks/html_text.py (Python 3.11 docs, Debian FAQ, libffi, Valgrind).
"""

from __future__ import annotations

import argparse
import glob
import os
import sys
import time
from io import BytesIO
from pathlib import Path

try:
    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter
except ImportError as e:
    print(f"make_warc.py: warcio is needed ({e})", file=sys.stderr)
    sys.exit(2)

# (source, URI prefix): a folder (every *.html below, URI = prefix + relative path) or a glob (prefix + file name)
DEFAULT_SOURCES = [
    ("/tmp/debx/usr/share/doc/python3.11/html", "https://docs.python.org/3.11/"),
    ("/tmp/debx/usr/share/doc/debian/FAQ/*.en.html", "https://www.debian.org/doc/manuals/debian-faq/"),
    ("/usr/share/doc/libffi8/html/*.html", "https://sourceware.org/libffi/manual/"),
    ("/usr/share/doc/valgrind/html/*.html", "https://valgrind.org/docs/manual/"),
]


def collect(sources: list[tuple[str, str]]) -> list[tuple[str, bytes]]:
    pages: list[tuple[str, bytes]] = []
    missing = []
    for src, prefix in sources:
        if os.path.isdir(src):
            files = sorted(p for p in Path(src).rglob("*.html") if p.is_file() and not p.is_symlink())
            found = [(prefix + p.relative_to(src).as_posix(), p) for p in files]
        else:
            files = sorted(Path(f) for f in glob.glob(src) if os.path.isfile(f) and not os.path.islink(f))
            found = [(prefix + p.name, p) for p in files]
        if not found:
            missing.append(src)
        pages.extend((uri, p.read_bytes()) for uri, p in found)
    if missing:
        print("make_warc.py: no HTML pages at: " + ", ".join(missing)
              + "\n  (Python docs / Debian FAQ: dpkg-deb -x /tmp/python3.11-doc_3.11.2-6+deb12u8_all.deb /tmp/debx;"
              " dpkg-deb -x /tmp/debian-faq_11.1_all.deb /tmp/debx)", file=sys.stderr)
        sys.exit(2)
    return pages


def write_pair(writer: WARCWriter, uri: str, body: bytes, payload_type: bool) -> None:
    host = uri.split("/")[2]
    path = "/" + uri.split("/", 3)[3]
    req_headers = StatusAndHeaders(f"GET {path} HTTP/1.1", [
        ("Host", host),
        ("User-Agent", "equal-bench/1.0 (+https://example.invalid/bot)"),
        ("Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
        ("Accept-Encoding", "identity"),
        ("Connection", "close"),
    ], is_http_request=True)
    request = writer.create_warc_record(uri, "request", payload=BytesIO(b""), http_headers=req_headers)
    resp_headers = StatusAndHeaders("200 OK", [
        ("Content-Type", "text/html; charset=utf-8"),
        ("Content-Length", str(len(body))),
        ("Server", "nginx"),
        ("Connection", "close"),
    ], protocol="HTTP/1.1")
    warc_headers = {"WARC-Identified-Payload-Type": "text/html"} if payload_type else None
    response = writer.create_warc_record(uri, "response", payload=BytesIO(body), http_headers=resp_headers,
                                         warc_headers_dict=warc_headers)
    request.rec_headers.add_header("WARC-Concurrent-To", response.rec_headers.get_header("WARC-Record-ID"))
    writer.write_record(request)
    writer.write_record(response)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out_dir")
    ap.add_argument("sources", nargs="*", help="folders or globs of HTML pages (URI prefix https://example.org/<n>/)")
    ap.add_argument("--records", type=int, default=20000, help="response records to write (default 20000)")
    ap.add_argument("--per-file", type=int, default=1000, help="responses per .warc.gz file (default 1000)")
    ap.add_argument("--no-payload-type", action="store_true", help="leave out WARC-Identified-Payload-Type")
    ap.add_argument("--distinct", action="store_true",
                    help="make every repeat of a page a different document (its number in the first heading and "
                         "paragraph), so that nothing is deduplicated away")
    args = ap.parse_args()
    sources = [(s, f"https://example.org/{i}/") for i, s in enumerate(args.sources)] if args.sources else DEFAULT_SOURCES

    pages = collect(sources)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stale = sorted(out.glob("bench-*.warc.gz"))
    for f in stale:
        f.unlink()

    began = time.perf_counter()
    n_files = 0
    fh = writer = None
    html_bytes = 0
    for i in range(args.records):
        if i % args.per_file == 0:
            if fh:
                fh.close()
            fh = open(out / f"bench-{n_files:05d}.warc.gz", "wb")
            writer = WARCWriter(fh, gzip=True)
            n_files += 1
        rep, k = divmod(i, len(pages))
        uri, body = pages[k]
        if rep:
            uri = f"{uri}?r={rep}"
            if args.distinct:
                body = body.replace(b"</h1>", f" ({rep})</h1>".encode(), 1).replace(b"</p>", f" ({rep})</p>".encode(), 1)
        write_pair(writer, uri, body, not args.no_payload_type)
        html_bytes += len(body)
    if fh:
        fh.close()
    size = sum(f.stat().st_size for f in out.glob("bench-*.warc.gz"))
    print(f"wrote {args.records} responses (+ {args.records} requests) from {len(pages)} distinct pages "
          f"({html_bytes / 1e6:.1f} MB HTML) into {n_files} files in {out} ({size / 1e6:.1f} MB gzipped) "
          f"in {time.perf_counter() - began:.1f} s")


if __name__ == "__main__":
    main()
