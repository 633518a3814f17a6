"""HTML main-text extraction: trafilatura against resiliparse, on real documentation pages, by measurement.

Pages (defaults; pass other folders as arguments):
  * Python 3.11 docs (Sphinx), every *.html under /tmp/debx/usr/share/doc/python3.11/html
    (`dpkg-deb -x /tmp/python3.11-doc_3.11.2-6+deb12u8_all.deb /tmp/debx`);
  * Debian FAQ (DocBook XSL), /tmp/debx/usr/share/doc/debian/FAQ/*.en.html
    (`dpkg-deb -x /tmp/debian-faq_11.1_all.deb /tmp/debx`);
  * libffi manual (Texinfo makeinfo), /usr/share/doc/libffi8/html/*.html;
  * Valgrind manual (DocBook XSL, own navigation tables), /usr/share/doc/valgrind/html/*.html.

Gold main text, by page family (found from each family's markup; the family is recognised by markup, not path):
  * sphinx:   the element `div[@role="main"]` (else `div.body`);
  * docbook:  `<body>` less its navigation: `div.navheader`, `div.navfooter` (Debian FAQ) and
              `table[@summary="Navigation header|footer"]` (Valgrind). What is left is `div.chapter`, `div.book`,
              `div.appendix`, `div.set` ..., including the chapter's own table of contents;
  * texinfo:  `<body>` less `div.header` (the "Next: / Previous: / Up:" line); what is left is the one
              sectioning `div` (`div.section`, `div.chapter`, `div.top` ...);
  * other:    `<body>`.
  `script`, `style`, `noscript` and `template` never count as text.

Quality, per page, on bags of words (`\\w+` tokens, lowercased, multiset intersection), then averaged over the
pages whose gold text has at least one word (and again over "prose pages", where less than half the gold words
are link text: the index, contents and module-index pages are mostly links): precision = common / extracted, recall = common / gold, F1. A page
where the extractor returned nothing (None or only whitespace) scores 0 / 0 / 0 and also counts in "empty".

Question headings (FAQ pages: Python docs faq/*.html and the Debian FAQ): every h1-h6 in the gold element whose
text (less the Sphinx "¶") ends in "?". Two figures, as token sequences (leading section numbers like "1.1." are
dropped from the heading):
  * "present": the heading's words appear, in order and contiguous, somewhere in the extracted text. Lenient: the
    Debian FAQ chapters repeat every question in their table of contents, so a question can be "present" while
    its heading was dropped;
  * "in place": some such occurrence is followed, within the next 40 words, by the first 5 words of the text that
    follows the heading in the page (the start of its answer).

Timing: only the extraction call, on pages already read and decoded to str (resiliparse: HTMLTree.parse plus
extract_plain_text; trafilatura: extract). One untimed warm-up call per configuration. Every configuration runs
over the same pages in the same process.

    .venv/bin/python benchmarks/html_text.py [FOLDER_OR_GLOB ...] [--repeat 1]

Needs trafilatura and resiliparse importable (trafilatura 2.x imports jusText, which needs `lxml_html_clean`
with lxml >= 5.2; the script says so when it is missing).
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import shlex
import sys
import time
from collections import Counter
from importlib.metadata import version
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_SOURCES = [
    "/tmp/debx/usr/share/doc/python3.11/html",
    "/tmp/debx/usr/share/doc/debian/FAQ/*.en.html",
    "/usr/share/doc/libffi8/html/*.html",
    "/usr/share/doc/valgrind/html/*.html",
]
SETUP_HINT = {
    "/tmp/debx/usr/share/doc/python3.11/html": "dpkg-deb -x /tmp/python3.11-doc_3.11.2-6+deb12u8_all.deb /tmp/debx",
    "/tmp/debx/usr/share/doc/debian/FAQ/*.en.html": "dpkg-deb -x /tmp/debian-faq_11.1_all.deb /tmp/debx",
    "/usr/share/doc/libffi8/html/*.html": "apt-get install libffi-dev (or the libffi8 docs)",
    "/usr/share/doc/valgrind/html/*.html": "apt-get install valgrind",
}

WORD = re.compile(r"\w+")
BLOCK_TAGS = {
    "address", "article", "aside", "blockquote", "br", "caption", "dd", "div", "dl", "dt", "figcaption", "figure",
    "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr", "li", "main", "nav", "ol", "p", "pre",
    "section", "table", "tbody", "td", "tfoot", "th", "thead", "tr", "ul", "body", "html",
}
SKIP_TAGS = {"script", "style", "noscript", "template"}
HEADINGS = ("h1", "h2", "h3", "h4", "h5", "h6")


def die(message: str) -> None:
    print(f"html_text.py: {message}", file=sys.stderr)
    sys.exit(2)


try:
    import lxml.html
    from lxml import etree
except ImportError as e:  # pragma: no cover
    die(f"lxml is needed ({e})")
try:
    import trafilatura
except ImportError as e:
    hint = " (trafilatura imports jusText, which needs `pip install lxml_html_clean` with lxml >= 5.2)" if "clean" in str(e) else ""
    die(f"cannot import trafilatura: {e}{hint}")
try:
    from resiliparse.extract.html2text import extract_plain_text
    from resiliparse.parse.html import HTMLTree
except ImportError as e:
    die(f"cannot import resiliparse: {e}")


# ----------------------------------------------------------------------------------------------- pages and gold
@dataclass
class Question:
    words: list[str]
    answer_start: list[str]


@dataclass
class Page:
    path: str
    source: str  # which argument it came from (a folder or a glob)
    family: str
    html: str
    gold_words: Counter
    is_faq: bool
    link_share: float  # share of the gold words that are link text (index and contents pages: near 1)
    questions: list[Question] = field(default_factory=list)


def classes(el) -> set[str]:
    return set((el.get("class") or "").split())


def text_of(el) -> str:
    """The text under `el` with block boundaries as newlines, scripts and styles left out."""
    parts: list[str] = []

    def walk(node) -> None:
        tag = node.tag if isinstance(node.tag, str) else ""
        if tag in SKIP_TAGS:
            return
        block = tag in BLOCK_TAGS
        if block:
            parts.append("\n")
        if isinstance(node.tag, str) and node.text:
            parts.append(node.text)
        for child in node:
            walk(child)
            if child.tail:
                parts.append(child.tail)
        if block:
            parts.append("\n")

    walk(el)
    return "".join(parts)


def words(text: str) -> list[str]:
    return WORD.findall(text.lower())


def gold_element(root) -> tuple[str, object]:
    main = root.xpath('//div[@role="main"]')
    if main:
        return "sphinx", main[0]
    body_div = root.xpath('//div[contains(concat(" ", normalize-space(@class), " "), " body ")]')
    if body_div and root.xpath('//div[contains(@class, "sphinxsidebar")]'):
        return "sphinx", body_div[0]
    body = root.find("body")
    if body is None:
        body = root
    generator = " ".join(root.xpath('//meta[@name="generator"]/@content')).lower()
    if "makeinfo" in generator or "texinfo" in generator or root.xpath('//div[@class="header"]/p[contains(., "Next:") or contains(., "Up:")]'):
        for el in body.xpath('.//div[@class="header"]'):
            el.getparent().remove(el)
        return "texinfo", body
    nav = body.xpath('.//div[@class="navheader" or @class="navfooter"] | .//table[starts-with(@summary, "Navigation")]')
    if "docbook" in generator or nav:
        for el in nav:
            el.getparent().remove(el)
        return "docbook", body
    return "other", body


def heading_words(el) -> list[str]:
    ws = words(text_of(el).replace("¶", " "))
    while ws and ws[0].isdigit():  # "1.1. What is this FAQ?" -> what is this faq
        ws.pop(0)
    return ws


def answer_start(heading, n: int = 5) -> list[str]:
    out: list[str] = []
    for t in heading.xpath("following::text()"):
        parent = t.getparent()
        if parent is not None and parent.tag in SKIP_TAGS:
            continue
        out.extend(words(t))
        if len(out) >= n:
            break
    return out[:n]


def load_page(path: str, source: str) -> Page | None:
    raw = Path(path).read_bytes()
    html = raw.decode("utf-8", errors="replace")
    try:
        root = lxml.html.document_fromstring(raw, parser=lxml.html.HTMLParser(encoding="utf-8"))
    except (etree.ParserError, ValueError):
        return None
    family, el = gold_element(root)
    is_faq = ("/faq/" in path.replace(os.sep, "/") and "python" in path) or "/debian/FAQ/" in path
    questions = []
    if is_faq:
        for h in el.iter(*HEADINGS):
            if text_of(h).replace("¶", "").strip().endswith("?"):
                hw = heading_words(h)
                if hw:
                    questions.append(Question(hw, answer_start(h)))
    gold = Counter(words(text_of(el)))
    link_words = sum(len(words(text_of(a))) for a in el.iter("a"))
    link_share = min(1.0, link_words / max(1, sum(gold.values())))
    return Page(path, source, family, html, gold, is_faq, link_share, questions)


def collect(sources: list[str]) -> list[Page]:
    missing = []
    files: list[tuple[str, str]] = []
    for src in sources:
        if os.path.isdir(src):
            found = sorted(str(p) for p in Path(src).rglob("*.html"))
        else:
            found = sorted(glob.glob(src))
        if not found:
            missing.append(src)
        files.extend((f, src) for f in found if os.path.isfile(f) and not os.path.islink(f))
    if missing:
        lines = [f"  {m}" + (f"   (make it: {SETUP_HINT[m]})" if m in SETUP_HINT else "") for m in missing]
        die("no HTML pages found at:\n" + "\n".join(lines))
    pages = [p for p in (load_page(f, s) for f, s in files) if p is not None]
    return pages


# -------------------------------------------------------------------------------------------------- extractors
def trafilatura_recall(html: str) -> str | None:
    return trafilatura.extract(html, include_comments=False, include_tables=True, favor_recall=True)


def trafilatura_default(html: str) -> str | None:
    return trafilatura.extract(html)


def resiliparse_main(html: str) -> str | None:
    return extract_plain_text(HTMLTree.parse(html), main_content=True)


def resiliparse_all(html: str) -> str | None:
    return extract_plain_text(HTMLTree.parse(html), main_content=False)


CONFIGS = [
    ("trafilatura favor_recall, tables, no comments", trafilatura_recall),
    ("trafilatura defaults", trafilatura_default),
    ("resiliparse main_content=True", resiliparse_main),
    ("resiliparse main_content=False", resiliparse_all),
]


# ------------------------------------------------------------------------------------------------------ scoring
def prf(gold: Counter, got: Counter) -> tuple[float, float, float]:
    common = sum((gold & got).values())
    n_got, n_gold = sum(got.values()), sum(gold.values())
    if not common:
        return 0.0, 0.0, 0.0
    p, r = common / n_got, common / n_gold
    return p, r, 2 * p * r / (p + r)


def find_seq(hay: list[str], needle: list[str]) -> list[int]:
    if not needle or len(needle) > len(hay):
        return []
    first, k = needle[0], len(needle)
    return [i for i, w in enumerate(hay) if w == first and hay[i:i + k] == needle]


def question_kept(tokens: list[str], q: Question) -> tuple[bool, bool]:
    at = find_seq(tokens, q.words)
    if not at:
        return False, False
    if not q.answer_start:
        return True, True
    for i in at:
        after = tokens[i + len(q.words): i + len(q.words) + 40]
        if find_seq(after, q.answer_start):
            return True, True
    return True, False


@dataclass
class Result:
    name: str
    seconds: float = 0.0
    pages: int = 0
    empty: int = 0
    p: list[float] = field(default_factory=list)
    r: list[float] = field(default_factory=list)
    f: list[float] = field(default_factory=list)
    f_prose: list[float] = field(default_factory=list)  # pages whose gold is less than half link text
    by_family: dict = field(default_factory=dict)  # family -> list of (p, r, f, empty)
    q_total: int = 0
    q_present: int = 0
    q_in_place: int = 0
    q_by_source: dict = field(default_factory=dict)  # "python faq" / "debian faq" -> [total, present, in place]


def run_config(name: str, fn, pages: list[Page], repeat: int) -> Result:
    res = Result(name)
    fn(pages[0].html)  # warm-up, untimed
    outputs: list[str | None] = [None] * len(pages)
    clock = time.perf_counter
    total = 0.0
    for _ in range(repeat):
        for i, page in enumerate(pages):
            t0 = clock()
            out = fn(page.html)
            total += clock() - t0
            outputs[i] = out
    res.seconds = total / repeat
    res.pages = len(pages)
    for page, out in zip(pages, outputs):
        text = out or ""
        empty = not text.strip()
        res.empty += empty
        tokens = words(text)
        if sum(page.gold_words.values()):
            p, r, f = prf(page.gold_words, Counter(tokens))
            res.p.append(p)
            res.r.append(r)
            res.f.append(f)
            if page.link_share < 0.5:
                res.f_prose.append(f)
            res.by_family.setdefault(page.family, []).append((p, r, f, empty))
        if page.questions:
            key = "Debian FAQ" if "/debian/FAQ/" in page.path else "Python faq/"
            acc = res.q_by_source.setdefault(key, [0, 0, 0])
            for q in page.questions:
                present, in_place = question_kept(tokens, q)
                res.q_total += 1
                res.q_present += present
                res.q_in_place += in_place
                acc[0] += 1
                acc[1] += present
                acc[2] += in_place
    return res


def mean(xs: list[float]) -> float:
    return sum(xs) / len(xs) if xs else float("nan")


def pct(a: int, b: int) -> str:
    return f"{100 * a / b:.1f}%" if b else "n/a"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("sources", nargs="*", help="folders (all *.html below) or globs; default: the four doc sets")
    ap.add_argument("--repeat", type=int, default=1, help="time each configuration over the pages this many times")
    args = ap.parse_args()
    sources = args.sources or DEFAULT_SOURCES

    t0 = time.perf_counter()
    pages = collect(sources)
    load_s = time.perf_counter() - t0
    n_bytes = sum(len(p.html.encode()) for p in pages)
    fams = Counter(p.family for p in pages)
    n_q = sum(len(p.questions) for p in pages)
    no_gold = sum(1 for p in pages if not sum(p.gold_words.values()))

    env = f"PYTHONPATH={shlex.quote(os.environ['PYTHONPATH'])} " if os.environ.get("PYTHONPATH") else ""
    print(f"command: {env}{shlex.join([os.path.relpath(sys.executable)] + sys.argv)}")
    print(f"python {sys.version.split()[0]}, trafilatura {trafilatura.__version__}, resiliparse {version('resiliparse')}, "
          f"lxml {'.'.join(map(str, etree.LXML_VERSION))}")
    print(f"pages: {len(pages)} ({n_bytes / 1e6:.1f} MB HTML, mean {n_bytes / len(pages) / 1e3:.0f} kB), by family: "
          + ", ".join(f"{k} {v}" for k, v in sorted(fams.items())) + f"; gold with no words (left out of P/R/F1): {no_gold}; "
          f"question headings on FAQ pages: {n_q}; loading and gold took {load_s:.1f} s (untimed below)")
    for src in sources:
        print(f"  source {src}: {sum(1 for p in pages if p.source == src)} pages")
    print()

    results = []
    for name, fn in CONFIGS:
        print(f"  running {name} ...", file=sys.stderr, flush=True)
        results.append(run_config(name, fn, pages, args.repeat))

    n_prose = sum(1 for p in pages if p.link_share < 0.5 and sum(p.gold_words.values()))
    print("| extractor | pages/s | MB/s | precision | recall | F1 | F1, " + str(n_prose) + " prose pages | empty | question headings present | question headings in place |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(f"| {r.name} | {r.pages / r.seconds:,.1f} | {n_bytes / 1e6 / r.seconds:.2f} | {mean(r.p):.3f} | {mean(r.r):.3f} | {mean(r.f):.3f} | {mean(r.f_prose):.3f} "
              f"| {pct(r.empty, r.pages)} | {pct(r.q_present, r.q_total)} | {pct(r.q_in_place, r.q_total)} |")
    print()
    print(f"prose pages: gold text less than half link text ({len(pages) - n_prose} link-list pages left out: "
          + ", ".join(sorted({re.sub(r"-[A-Z_]+\.html$", "-*.html", os.path.basename(p.path)) for p in pages if p.link_share >= 0.5})) + ")")
    print()
    print("F1 (precision / recall; empty pages) by page family:")
    print()
    fam_names = sorted(fams)
    print("| extractor | " + " | ".join(f"{f} ({fams[f]})" for f in fam_names) + " |")
    print("|---|" + "---:|" * len(fam_names))
    for r in results:
        cells = []
        for f in fam_names:
            rows = r.by_family.get(f, [])
            cells.append(f"{mean([x[2] for x in rows]):.3f} ({mean([x[0] for x in rows]):.2f} / {mean([x[1] for x in rows]):.2f}; {sum(x[3] for x in rows)} empty)")
        print(f"| {r.name} | " + " | ".join(cells) + " |")
    print()
    print("Question headings (present / in place), by FAQ source:")
    print()
    srcs = sorted({k for r in results for k in r.q_by_source})
    print("| extractor | " + " | ".join(f"{s} ({results[0].q_by_source.get(s, [0])[0]} questions)" for s in srcs) + " |")
    print("|---|" + "---:|" * len(srcs))
    for r in results:
        print(f"| {r.name} | " + " | ".join(
            f"{pct(r.q_by_source[s][1], r.q_by_source[s][0])} / {pct(r.q_by_source[s][2], r.q_by_source[s][0])}" for s in srcs) + " |")


if __name__ == "__main__":
    main()
