"""Web pages in: WARC and WET records and HTML files, read into the rows the crawl ingestion resolves.

A web crawl arrives as WARC files (the HTTP responses a crawler saved; gzipped or not), as WET files (Common
Crawl's plain text of each page: ``conversion`` records), or as a folder of HTML files. Each page becomes one row
with the page's main text, its URL, its record id (the document's id), its title, its language and its raw HTML
(kept for the ``rules`` backend, which harvests the Q&A a page marks up). Rules, per record, in order:

1. Only ``response`` records (WARC) and ``conversion`` records (WET) hold pages. Other records (``request``,
   ``warcinfo``, ``metadata``, ``revisit``...) are counted by type, not quarantined: they are the crawler's
   bookkeeping, not documents.
2. A record shorter than its ``Content-Length`` (a file cut off mid-record) -> ``unreadable_file``, and reading
   stops there; a block over ``max_doc_bytes`` -> ``too_large``.
3. A response whose HTTP status is not 2xx -> ``http_status``; whose ``Content-Type`` is not HTML (an image, a
   PDF) -> ``not_html``; whose content encoding cannot be undone -> ``undecodable``.
4. Bytes to text: the charset of the HTTP header, else of the page's ``<meta>``, else detected from the bytes
   (resiliparse's detector); a page in Latin-1 or Shift-JIS is decoded, not dropped.
5. HTML to main text: resiliparse's ``extract_plain_text`` with its main-content heuristics and formatting kept
   (paragraphs and line breaks; chosen over trafilatura by measurement, see docs/benchmarks.md). A page with
   no main text -> ``no_main_text``.

The language of every document (web or not) is identified by :func:`detect_language` (resiliparse's
``detect_fast``, whose model ships inside the package: no download), and an optional filter quarantines
documents in other languages with ``wrong_language`` (the ingestion applies it).
"""

from __future__ import annotations

import gzip
import re
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from resiliparse.extract.html2text import extract_plain_text
from resiliparse.parse.encoding import bytes_to_str, detect_encoding
from resiliparse.parse.html import HTMLTree
from resiliparse.parse.lang import detect_fast

WARC_SUFFIXES = (".warc", ".warc.gz", ".wet", ".wet.gz")  # Common Crawl names its WET files *.warc.wet.gz
HTML_SUFFIXES = (".html", ".htm", ".xhtml", ".html.gz", ".htm.gz")
WEB_SUFFIXES = WARC_SUFFIXES + HTML_SUFFIXES

# Quarantine reasons of web records (the others are the ingestion's: too_large, unreadable_file).
HTTP_STATUS = "http_status"
NOT_HTML = "not_html"
UNDECODABLE = "undecodable"
NO_MAIN_TEXT = "no_main_text"

PAGE_RECORDS = ("response", "conversion")
HTML_TYPES = ("text/html", "application/xhtml+xml")
LANGUAGE_MIN_CHARS = 20  # shorter texts get no language ("" stored): too little to tell
LANGUAGE_SAMPLE_CHARS = 4000

_META_CHARSET = re.compile(rb"<meta[^>]+charset\s*=\s*[\"']?\s*([a-zA-Z0-9_.:-]+)", re.IGNORECASE)


class WebRecordError(Exception):
    """A record that is not a page: carries the quarantine reason and its detail."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason, self.detail = reason, detail


def detect_language(text: str) -> str:
    """ISO 639-1 code of the text's language ("" when the text is too short to tell)."""
    if len(text) < LANGUAGE_MIN_CHARS:
        return ""
    return detect_fast(text[:LANGUAGE_SAMPLE_CHARS])[0]


def decode_html(body: bytes, charset: str | None = None) -> tuple[str, str]:
    """The page's text and the encoding it was read with (rule 4)."""
    encoding = charset
    if not encoding:
        meta = _META_CHARSET.search(body[:4096])
        encoding = meta.group(1).decode("ascii") if meta else None
    if encoding:
        try:
            return body.decode(encoding), encoding.lower()
        except (LookupError, UnicodeDecodeError):
            pass
    try:
        return body.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        detected = detect_encoding(body)
        return bytes_to_str(body, detected), detected


def page_row(html: str) -> dict[str, Any]:
    """Rule 5: the main text and title of one HTML page, with the HTML kept."""
    tree = HTMLTree.parse(html)
    text = extract_plain_text(tree, main_content=True, preserve_formatting=True, list_bullets=True)
    if not text.strip():
        raise WebRecordError(NO_MAIN_TEXT, "the page has no main text (only navigation, scripts or markup)")
    return {"text": text, "title": (tree.title or "").strip() or None, "html": html}


def _http_parts(block: bytes) -> tuple[int, dict[str, str], bytes]:
    """Status, headers (lower-case names) and body of an HTTP response block."""
    head, sep, body = block.partition(b"\r\n\r\n")
    if not sep:
        head, sep, body = block.partition(b"\n\n")
    lines = head.decode("latin-1").splitlines()
    if not lines or not lines[0].upper().startswith("HTTP/"):
        raise WebRecordError(HTTP_STATUS, "the response record holds no HTTP status line")
    try:
        status = int(lines[0].split()[1])
    except (IndexError, ValueError):
        raise WebRecordError(HTTP_STATUS, f"unreadable HTTP status line {lines[0][:80]!r}") from None
    headers = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if colon:
            headers[name.strip().lower()] = value.strip()
    return status, headers, body


def _dechunk(body: bytes) -> bytes:
    out, pos = bytearray(), 0
    while pos < len(body):
        end = body.find(b"\r\n", pos)
        if end < 0:
            break
        size = int(body[pos:end].split(b";")[0] or b"0", 16)
        if size == 0:
            break
        out += body[end + 2 : end + 2 + size]
        pos = end + 2 + size + 2
    return bytes(out)


def _undo_encodings(headers: dict[str, str], body: bytes) -> bytes:
    try:
        if "chunked" in headers.get("transfer-encoding", "").lower():
            body = _dechunk(body)
        coding = headers.get("content-encoding", "").lower().strip()
        if coding in ("gzip", "x-gzip"):
            body = gzip.decompress(body)
        elif coding == "deflate":
            body = zlib.decompress(body, -zlib.MAX_WBITS if body[:1] != b"\x78" else zlib.MAX_WBITS)
        elif coding not in ("", "identity", "none"):
            raise WebRecordError(UNDECODABLE, f"content encoding {coding!r} is not supported")
    except (ValueError, OSError, EOFError, zlib.error) as exc:
        raise WebRecordError(UNDECODABLE, f"the HTTP body cannot be decoded: {type(exc).__name__}: {exc}") from None
    return body


def response_row(block: bytes) -> dict[str, Any]:
    """Rules 3-5 for a WARC ``response`` record's block (HTTP headers and body)."""
    status, headers, body = _http_parts(block)
    if not 200 <= status < 300:
        raise WebRecordError(HTTP_STATUS, f"HTTP {status}")
    content_type = headers.get("content-type", "")
    mime = content_type.split(";")[0].strip().lower()
    if mime and mime not in HTML_TYPES:
        raise WebRecordError(NOT_HTML, f"Content-Type {mime}")
    charset = re.search(r"charset\s*=\s*[\"']?([^\s;\"']+)", content_type, re.IGNORECASE)
    html, encoding = decode_html(_undo_encodings(headers, body), charset.group(1) if charset else None)
    return {**page_row(html), "encoding": encoding}


class WebRow:
    """One record of a WARC/WET file: its 1-based number, and either the row (text, url, id, title, html) or a
    quarantine reason. ``record_type`` names a record that is not a page (rule 1): neither row nor reason."""

    __slots__ = ("number", "record", "reason", "detail", "excerpt", "n_bytes", "record_type")

    def __init__(self, number: int, record: dict[str, Any] | None = None, reason: str | None = None,
                 detail: str = "", excerpt: str = "", n_bytes: int = 0, record_type: str | None = None):
        self.number, self.record, self.reason, self.detail = number, record, reason, detail
        self.excerpt, self.n_bytes, self.record_type = excerpt, n_bytes, record_type


def read_warc(path: Path, max_bytes: int, progress: Callable[[int], None]) -> Iterator[WebRow]:
    """The records of a WARC or WET file (rules 1-5), in file order; ``unreadable_file`` ends the file."""
    from fastwarc.warc import ArchiveIterator, WarcRecordType

    number = 0
    with open(path, "rb") as stream:
        try:
            for rec in ArchiveIterator(stream, record_types=WarcRecordType.any_type, parse_http=False):
                number += 1
                kind = str(rec.record_type)
                progress(stream.tell())
                if kind not in PAGE_RECORDS:
                    rec.reader.consume()
                    yield WebRow(number, record_type=kind)
                    continue
                url = rec.headers.get("WARC-Target-URI") or None
                rid = rec.record_id or None
                excerpt = f"{kind} {url or rid or ''}"[:300]
                if rec.content_length > max_bytes:
                    rec.reader.consume()
                    yield WebRow(number, reason="too_large", excerpt=excerpt, n_bytes=rec.content_length,
                                 detail=f"record is {rec.content_length} bytes, over the limit of {max_bytes} (max_doc_bytes)")
                    continue
                block = rec.reader.read()
                if len(block) < rec.content_length:
                    yield WebRow(number, reason="unreadable_file", excerpt=excerpt,
                                 detail=f"record {number} is cut off: {len(block)} of {rec.content_length} bytes")
                    return
                try:
                    if kind == "conversion":
                        text, _ = decode_html(block, "utf-8")
                        record: dict[str, Any] = {"text": text}
                    else:
                        record = response_row(block)
                except WebRecordError as exc:
                    yield WebRow(number, reason=exc.reason, detail=exc.detail, excerpt=excerpt, n_bytes=len(block))
                    continue
                record.update(url=url, id=rid)
                yield WebRow(number, record, excerpt=excerpt, n_bytes=len(block))
        except (OSError, ValueError) as exc:
            yield WebRow(number + 1, reason="unreadable_file",
                         detail=f"reading stopped after record {number}: {type(exc).__name__}: {exc}")


def read_html_file(path: Path, max_bytes: int) -> WebRow:
    """One HTML file as one page (rules 4 and 5); its URL is left empty, its id derived by the ingestion."""
    try:
        with (gzip.open if path.name.endswith(".gz") else open)(path, "rb") as f:
            body = f.read(max_bytes + 1)
    except (OSError, EOFError, zlib.error) as exc:
        return WebRow(1, reason="unreadable_file", detail=f"{type(exc).__name__}: {exc}")
    if len(body) > max_bytes:
        return WebRow(1, reason="too_large", detail=f"the page is over the limit of {max_bytes} bytes (max_doc_bytes)")
    html, encoding = decode_html(body)
    try:
        record = {**page_row(html), "encoding": encoding}
    except WebRecordError as exc:
        return WebRow(1, reason=exc.reason, detail=exc.detail, excerpt=html[:300], n_bytes=len(body))
    return WebRow(1, record, n_bytes=len(body))
