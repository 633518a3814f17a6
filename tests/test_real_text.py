"""Real pages in: WARC/WET/HTML ingestion, and the rules harvest measured on hand-labelled real pages
(tests/fixtures/realtext: Debian and Python documentation, man pages, READMEs; licences in its LICENSES.md)."""

from __future__ import annotations

import gzip
import io
import json
import sys
from datetime import datetime
from pathlib import Path

import pytest
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from equal_dagster.core.corpus import CrawlFormat, ingest_crawl
from equal_dagster.core.extraction import Document, RuleExtractor
from equal_dagster.core.extraction.rules import harvest
from equal_dagster.core.store import Store

REALTEXT = Path(__file__).parent / "fixtures" / "realtext"
sys.path.insert(0, str(REALTEXT))
from score import score_fixture  # noqa: E402


@pytest.fixture(scope="module")
def scores():
    return {kind: score.figures() for kind, score in score_fixture().items()}


@pytest.mark.parametrize("kind", ["faq_html", "faq_text"])
def test_harvest_is_precise_and_finds_most_entries_of_real_faqs(scores, kind):
    figures = scores[kind]
    assert figures["entries"] >= 100
    assert figures["precision"] >= 0.95, figures
    assert figures["recall"] >= 0.8, figures


def test_harvest_on_held_out_html_faqs_it_was_not_tuned_on():
    """tests/fixtures/realtext_holdout: pages labelled apart, scored once the rules were written (figures in
    docs/benchmarks.md; its text FAQs, in POD among others, fall short and are reported, not asserted)."""
    held_out = score_fixture(REALTEXT.parent / "realtext_holdout" / "labels.json")["faq_html"].figures()
    assert held_out["entries"] >= 100 and held_out["precision"] >= 0.95 and held_out["recall"] >= 0.8, held_out


def test_harvest_on_held_out_text_faqs_stays_precise():
    """tests/fixtures/realtext_holdout2: text FAQs in 5 formats labelled after the rules were written (recall 0.75
    there, short of 0.8 because 42 of 143 entries state a problem instead of asking: docs/benchmarks.md)."""
    held_out = score_fixture(REALTEXT.parent / "realtext_holdout2" / "labels.json")["faq_text"].figures()
    assert held_out["entries"] >= 100 and held_out["precision"] >= 0.95 and held_out["recall_with_mark"] >= 0.9, held_out


def test_harvest_stays_quiet_on_real_pages_without_a_faq(scores):
    harvested = sum(scores[k]["harvested"] for k in ("doc_html", "doc_text"))
    correct = sum(scores[k]["correct"] for k in ("doc_html", "doc_text"))
    assert scores["doc_html"]["pages"] + scores["doc_text"]["pages"] >= 150
    assert harvested - correct <= 1  # at most one wrong pair on 170 pages of manuals and READMEs


def _real_entry() -> dict:
    page = next(p for p in json.loads((REALTEXT / "labels.json").read_text()) if p["file"].startswith("faq_html/python-general"))
    return page["entries"][0]


def test_schema_org_faq_in_json_ld_and_microdata():
    entry = _real_entry()
    question, answer = entry["question"], entry["answer_start"] + " ... " + entry["answer_end"]
    ld = {"@context": "https://schema.org", "@type": "FAQPage", "mainEntity": [
        {"@type": "Question", "name": question, "acceptedAnswer": {"@type": "Answer", "text": f"<p>{answer}</p>"}}]}
    page = f'<html><head><script type="application/ld+json">{json.dumps(ld)}</script></head><body><p>x</p></body></html>'
    pairs, rule = harvest("x", page)
    assert rule == "json_ld" and [(p.question, p.answer) for p in pairs] == [(question, answer)]
    qa_page = {"@type": "QAPage", "mainEntity": {"@type": "Question", "name": question, "suggestedAnswer": [
        {"@type": "Answer", "text": "a low-voted answer", "upvoteCount": 1},
        {"@type": "Answer", "text": answer, "upvoteCount": 7}]}}
    page = f'<script type="application/ld+json">{json.dumps(qa_page)}</script>'
    assert [(p.question, p.answer) for p in harvest("x", page)[0]] == [(question, answer)]
    micro = (f'<div itemscope itemtype="https://schema.org/Question"><h3 itemprop="name">{question}</h3>'
             f'<div itemprop="acceptedAnswer" itemscope itemtype="https://schema.org/Answer">'
             f'<div itemprop="text"><p>{answer}</p></div></div></div>')
    pairs, rule = harvest("x", f"<html><body>{micro}</body></html>")
    assert rule == "microdata" and [(p.question, p.answer) for p in pairs] == [(question, answer)]


def test_a_short_answer_keeps_its_explanation_and_never_takes_the_next_entry():
    page = ("<html><body><main><h2>Setup</h2><h3>Can I run it offline?</h3><p>Yes.</p><p>Every model ships in its "
            "package.</p><h3>Does it need a GPU?</h3><p>No, a CPU is enough.</p></main>"
            "<footer><p>Still need help? Contact us.</p></footer></body></html>")
    pairs, rule = harvest("", page)
    assert rule == "html_faq"
    assert [(p.question, p.answer) for p in pairs] == [
        ("Can I run it offline?", "Yes.\n\nEvery model ships in its package."),
        ("Does it need a GPU?", "No, a CPU is enough.")]
    definitions = "<dl><dt>Is it free?</dt><dd>Yes, under the MIT licence.</dd><dt>Who wrote it?</dt><dd>Its authors.</dd></dl>"
    assert [(p.question, p.answer) for p in harvest("", definitions)[0]] == [
        ("Is it free?", "Yes, under the MIT licence."), ("Who wrote it?", "Its authors.")]


def _http(status: str, content_type: str, extra=()) -> StatusAndHeaders:
    return StatusAndHeaders(status, [("Content-Type", content_type), *extra], protocol="HTTP/1.1")


def _write_warc(path: Path, pages: list[tuple[str, bytes]], *, truncate_last: bool = False) -> dict[str, int]:
    """A crawl as a crawler writes it: each page a request and a response record, plus the odd records real
    crawls hold. Returns how many records of each kind were written."""
    buffer = io.BytesIO()
    writer = WARCWriter(buffer, gzip=True)
    writer.write_record(writer.create_warcinfo_record("test.warc.gz", {"software": "pytest"}))
    for url, body in pages:
        writer.write_record(writer.create_warc_record(url, "request", payload=io.BytesIO(b"GET / HTTP/1.1\r\n\r\n")))
        writer.write_record(writer.create_warc_record(url, "response", payload=io.BytesIO(body),
                                                      http_headers=_http("200 OK", "text/html; charset=utf-8")))
    odd = [
        ("https://example.org/missing", b"<html><body>Not found</body></html>", _http("404 Not Found", "text/html")),
        ("https://example.org/logo.png", b"\x89PNG\r\n\x1a\n....", _http("200 OK", "image/png")),
        ("https://example.org/empty", b"<html><head><script>var a = 1;</script></head><body></body></html>",
         _http("200 OK", "text/html")),
        ("https://example.org/latin1", "<html><head><title>Café</title></head><body><p>Grüße aus Köln: die Straße "
         "ist schön und die Menschen sind freundlich.</p></body></html>".encode("latin-1"),
         _http("200 OK", "text/html; charset=iso-8859-1")),
        ("https://example.org/gzipped", gzip.compress(b"<html><body><p>A page sent with gzip content encoding, "
                                                      b"as servers often do.</p></body></html>"),
         _http("200 OK", "text/html", [("Content-Encoding", "gzip")])),
    ]
    for url, body, headers in odd:
        writer.write_record(writer.create_warc_record(url, "response", payload=io.BytesIO(body), http_headers=headers))
    data = buffer.getvalue()
    path.write_bytes(data[:-40] if truncate_last else data)
    return {"responses": len(pages) + len(odd), "requests": len(pages), "warcinfo": 1}


def test_warc_of_real_pages_every_record_is_a_document_or_a_reason(tmp_path):
    html_pages = sorted((REALTEXT / "pages" / "faq_html").glob("python-*.html.gz"))[:4] + \
        sorted((REALTEXT / "pages" / "doc_html").glob("*.html.gz"))[:6]
    pages = [(f"https://docs.example.org/{p.name[:-3]}", gzip.open(p).read()) for p in html_pages]
    crawl = tmp_path / "crawls" / "web"
    crawl.mkdir(parents=True)
    written = _write_warc(crawl / "part-0.warc.gz", pages)
    (crawl / "page.html").write_bytes(gzip.open(sorted((REALTEXT / "pages" / "doc_html").glob("*.html.gz"))[6]).read())
    with Store.open(tmp_path / "s.duckdb") as store:
        report = ingest_crawl(store, "web", crawl, tmp_path / "crawls")
        docs = store.conn.execute("SELECT doc_id, url, title, language, text FROM documents ORDER BY url").pl()
        quarantine = dict(store.conn.execute("SELECT detail, reason FROM quarantine").fetchall())
        html = store.page_html(docs["doc_id"].to_list())
    assert report.records_skipped == {"request": written["requests"], "warcinfo": 1}
    assert report.rows_read == written["responses"] + 1
    assert report.documents_kept + report.duplicates + sum(report.quarantined.values()) == report.rows_read
    assert quarantine == {"HTTP 404": "http_status", "Content-Type image/png": "not_html",
                          "the page has no main text (only navigation, scripts or markup)": "no_main_text"}
    by_url = {row["url"]: row for row in docs.iter_rows(named=True)}
    assert "Grüße aus Köln" in by_url["https://example.org/latin1"]["text"]
    assert by_url["https://example.org/latin1"]["title"] == "Café" and by_url["https://example.org/latin1"]["language"] == "de"
    assert "gzip content encoding" in by_url["https://example.org/gzipped"]["text"]
    faq = by_url[pages[0][0]]
    assert faq["doc_id"].startswith("<urn:uuid:") and faq["language"] == "en" and "Python" in faq["title"]
    assert set(html) == set(docs["doc_id"]) and "<html" in html[faq["doc_id"]].lower()
    # the rules backend reads the page's markup: the page's question headings become pairs
    run = RuleExtractor().extract([Document(faq["doc_id"], faq["text"], html[faq["doc_id"]])])
    assert run.results[0].status == "ok" and len(run.results[0].qa_pairs) >= 3
    assert run.counters["rule_html_faq"] == 1


def test_a_cut_off_warc_keeps_its_records_before_the_cut_and_a_language_filter_says_why(tmp_path):
    crawl = tmp_path / "crawls" / "cut"
    crawl.mkdir(parents=True)
    page = gzip.open(sorted((REALTEXT / "pages" / "faq_html").glob("python-*.html.gz"))[0]).read()
    _write_warc(crawl / "cut.warc.gz", [("https://docs.example.org/faq", page)], truncate_last=True)
    fmt = CrawlFormat(languages=("en",))
    with Store.open(tmp_path / "s.duckdb") as store:
        report = ingest_crawl(store, "cut", crawl, tmp_path / "crawls", fmt)
        reasons = store.conn.execute("SELECT reason, detail FROM quarantine ORDER BY line_no").fetchall()
    assert report.documents_kept == 1  # the English FAQ page, before the cut
    assert ("wrong_language", "language 'de', not one of en") in reasons
    assert reasons[-1][0] == "unreadable_file" and "cut off" in reasons[-1][1]


def test_a_run_on_real_pages_without_qa_says_why_it_found_no_pairs(tmp_path, capsys, monkeypatch):
    """`equal run` over a WARC of real manual pages and a JSONL of real man pages and READMEs (none of which
    carries Q&A) with the rules backend: the run ends, and its summary says why it found nothing."""
    from equal_dagster.cli import main
    from equal_dagster.demo.corpus import generate_reference_set, write_reference_set
    from score import page_input

    monkeypatch.setenv("EQUAL_LLM_BACKEND", "rules")
    crawl = tmp_path / "crawls" / "manuals"
    crawl.mkdir(parents=True)
    html_pages, rows = [], []
    for path in sorted((REALTEXT / "pages").glob("doc_*/*.gz"))[::2]:  # every other page: 86 are plenty here
        text, html = page_input(path)
        if harvest(text, html)[0]:
            continue  # the few manual pages that do carry a FAQ entry
        if html is None:
            rows.append({"id": path.name, "text": text})
        else:
            html_pages.append((f"https://docs.example.org/{path.name[:-3]}", html.encode()))
    _write_warc(crawl / "manuals.warc.gz", html_pages)
    with gzip.open(crawl / "man.jsonl.gz", "wt") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    reference = tmp_path / "reference.jsonl"
    write_reference_set(reference, generate_reference_set(0, n=60))
    assert main(["run", "--crawl-dir", str(tmp_path / "crawls"), "--reference", str(reference), "--budget", "10%",
                 "--no-tune", "--home", str(tmp_path / "home")]) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    assert summary["corpus_documents"] >= 80 and summary["qa_pairs"] == 0
    assert summary["why_no_pairs"].startswith("rules found no question/answer structure in the ")
    assert "configure an LLM backend" in summary["why_no_pairs"]
    assert "equal run: no QA pairs: rules found no question/answer structure" in captured.err


def test_a_page_that_carries_its_qa_costs_no_llm_call():
    from doubles import InstantBackend

    from equal_dagster.core.extraction import InMemoryResponseCache, LLMExtractor
    from equal_dagster.core.extraction.ledger import extraction_rows

    faq = gzip.open(sorted((REALTEXT / "pages" / "faq_html").glob("python-general*.html.gz"))[0]).read().decode()
    backend = InstantBackend()
    documents = [Document("faq", "General Python FAQ", faq), Document("prose", "DOC=prose A page of prose."),
                 Document("page", "DOC=page", "<html><body><p>A page with no questions.</p></body></html>")]
    run = LLMExtractor(backend, InMemoryResponseCache()).extract(documents)
    assert backend.requests == 2  # the prose and the page without Q&A went to the model; the FAQ page did not
    faq_result = run.results[0]
    assert faq_result.backend == "rules" and faq_result.status == "ok" and len(faq_result.qa_pairs) >= 20
    assert faq_result.calls == [] and run.counters["harvested_without_llm"] == 1
    assert [r.doc_id for r in run.results] == ["faq", "prose", "page"]
    ledger = extraction_rows(run.results, "r0001", None, datetime.now()).to_dicts()
    assert ledger[0]["calls"] == "[]" and ledger[0]["tokens_in"] == ledger[0]["tokens_out"] == 0
    assert ledger[0]["backend"] == "rules" and ledger[1]["tokens_in"] > 0


def test_a_page_in_latin1_and_an_answer_with_a_url_keep_their_text():
    """Review findings: a page decoded from its <meta> charset is not decoded twice; a URL with a query string in
    an answer is not a footer."""
    from equal_dagster.core.web import decode_html

    body = ('<html><head><meta charset="iso-8859-1"></head><body><h2>Wie geht es dem Bär?</h2>'
            "<p>Dem Bär geht es gut, danke schön.</p></body></html>").encode("latin-1")
    html, encoding = decode_html(body)
    assert encoding == "iso-8859-1"
    assert [(p.question, p.answer) for p in harvest("", html)[0]] == [("Wie geht es dem Bär?",
                                                                      "Dem Bär geht es gut, danke schön.")]
    page = ("<h3>How do I search here?</h3><p>Go to https://example.com/search?q=term and type.</p>"
            "<h3>Is it free to use?</h3><p>Yes, it is free for everyone.</p>")
    assert [p.question for p in harvest("", page)[0]] == ["How do I search here?", "Is it free to use?"]
