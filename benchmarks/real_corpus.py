"""A corpus of real text for the selection benchmark (``benchmarks/selection.py --corpora realdocs``).

Built from the two labelled real-text sets in tests/fixtures (Debian and Python documentation, man pages, READMEs
of Python packages, and the FAQs of some 30 free-software projects; licences in their LICENSES.md), so that it is
the same on every machine. The goal is Python programming: the reference set is the Python FAQ's own entries
(question and answer, 175 of them), which are left out of the corpus.

The corpus (about 3,000 documents):

- **one document per labelled FAQ entry of every other FAQ** (as a Q&A page holds one question: ``## question``
  then the answer, the text between the entry's labelled answer start and end on its page). Relevant: the
  entries of Python projects' FAQs (Django, SQLAlchemy, Jinja, lxml, docutils, chardet, requests,
  charset_normalizer, README FAQ sections). On another topic (many pairs far from the goal): the Debian FAQ,
  git, zlib, Valgrind, SQLite, Cargo, Perl's FAQs and the rest;
- **chunks of the documentation pages that are not FAQs** (about 1,500 characters, cut at paragraph ends): the
  Python library reference and the READMEs of Python packages (on topic, relevant, but almost no pairs: the
  ``rules`` backend takes only the Q&A a document carries), and man pages and the libffi manual (off topic).

Relevance is the source's topic, known from where each document came from; the pipeline never sees it.
"""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

from equal_dagster.core.corpus import normalize_text

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures"
SETS = ("realtext", "realtext_holdout")
PYTHON_FAQS = ("django", "sqlalchemy", "jinja2", "lxml", "docutils", "chardet", "requests", "charset_normalizer")
CHUNK_CHARS = 1500
ABOUT = ("real text: one document per FAQ entry of some 30 projects (Python ones relevant) and chunks of manuals, "
         "man pages and READMEs; reference: the Python FAQ")


def _visible(path: Path) -> str:
    raw = gzip.open(path).read().decode("utf-8", errors="replace")
    if ".html" in path.name:
        import lxml.html

        raw = lxml.html.document_fromstring(raw.encode()).body.text_content()
    return re.sub(r"\s+", " ", raw).strip()


def _entry_answer(text: str, entry: dict, after: int) -> tuple[str, int] | None:
    """The answer's text (from its start to its end words), searched after position ``after``."""
    question = text.find(entry["question"][:40], after)
    start = text.find(entry["answer_start"], question if question >= 0 else after)
    if start < 0:
        return None
    end = text.find(entry["answer_end"], start)
    if end < 0:
        return None
    end += len(entry["answer_end"])
    return text[start:end], end


def _is_relevant_page(file: str) -> bool:
    name = file.split("/", 1)[1]
    return (name.startswith(PYTHON_FAQS) or file.startswith("doc_text/readme-") or name.startswith("python-")
            or file.startswith("doc_html/python-"))


def _chunks(text: str) -> list[str]:
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]
    chunks, current = [], ""
    for paragraph in paragraphs:
        if current and len(current) + len(paragraph) > CHUNK_CHARS:
            chunks.append(current)
            current = ""
        current = f"{current}\n\n{paragraph}" if current else paragraph
    if current:
        chunks.append(current)
    return [c for c in chunks if len(c) >= 200]


def _page_text(path: Path) -> str:
    raw = gzip.open(path).read().decode("utf-8", errors="replace")
    if ".html" in path.name:
        from equal_dagster.core.web import WebRecordError, page_row

        try:
            raw = page_row(raw)["text"]
        except WebRecordError:
            return ""
    return normalize_text(raw)


def write_real_corpus(crawl_dir: Path, reference_path: Path) -> tuple[set[str], dict[str, int]]:
    """Write the corpus as one crawl (``realdocs/``) and the reference set; returns the relevant document ids and
    the documents per part."""
    rows: list[dict] = []
    reference: list[dict] = []
    relevant: set[str] = set()
    parts: dict[str, int] = {}
    for name in SETS:
        for page in json.loads((FIXTURES / name / "labels.json").read_text()):
            path = FIXTURES / name / "pages" / page["file"]
            stem = page["file"].split("/", 1)[1].removesuffix(".gz")
            if page["entries"] and page["kind"].startswith("faq"):
                text, after = _visible(path), 0
                for i, entry in enumerate(page["entries"]):
                    found = _entry_answer(text, entry, after)
                    if found is None:
                        continue
                    answer, after = found
                    if stem.startswith("python-"):
                        reference.append({"question": entry["question"], "answer": answer})
                        continue
                    doc_id = f"{name}:{stem}:{i}"
                    rows.append({"id": doc_id, "text": f"## {entry['question']}\n\n{answer}"})
                    part = "faq entries, relevant" if _is_relevant_page(page["file"]) else "faq entries, other topics"
                    parts[part] = parts.get(part, 0) + 1
                    if _is_relevant_page(page["file"]):
                        relevant.add(doc_id)
            elif not page["kind"].startswith("faq"):
                for i, chunk in enumerate(_chunks(_page_text(path))):
                    doc_id = f"{name}:{stem}:c{i}"
                    rows.append({"id": doc_id, "text": chunk})
                    part = "doc chunks, relevant" if _is_relevant_page(page["file"]) else "doc chunks, other topics"
                    parts[part] = parts.get(part, 0) + 1
                    if _is_relevant_page(page["file"]):
                        relevant.add(doc_id)
    folder = Path(crawl_dir) / "realdocs"
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "docs.jsonl", "w", encoding="utf-8") as f:
        f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    Path(reference_path).parent.mkdir(parents=True, exist_ok=True)
    with open(reference_path, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in reference)
    return relevant, parts
