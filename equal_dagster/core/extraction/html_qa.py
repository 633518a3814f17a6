"""Q&A a web page marks up, read from its HTML: the ``rules`` backend's first pass on pages (rule set ``rules/v2``).

Rules, tried in this order; the first that yields pairs wins:

1. **schema.org in JSON-LD** (``<script type="application/ld+json">``): each ``Question`` of a ``FAQPage``'s
   ``mainEntity``, or the ``Question`` of a ``QAPage``, with its ``acceptedAnswer`` (else its highest-voted
   ``suggestedAnswer``). Answer HTML is reduced to its text.
2. **schema.org in microdata**: each element with ``itemtype`` ``.../Question``: its ``itemprop="name"`` and the
   ``itemprop="text"`` of its ``acceptedAnswer`` (else of its first ``suggestedAnswer``).
3. **The page's own structure**: the main content (``<main>``, ``role="main"``, ``<article>``, else the body;
   navigation, headers, footers, sidebars and tables of contents left out) read as a sequence of blocks:
   headings, definition terms (``<dt>``), paragraphs and code. A heading or term that asks a question is a
   question; its answer is the blocks after it up to the next heading (of any level) or, for a term, the next term.
   The question and answer rules of :mod:`.rules` (``faq_pairs``) then apply to those blocks.

Only reads: nothing in a page is executed, fetched or used as a path.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import lxml.etree
import lxml.html

from equal_dagster.core.extraction.results import QAPair

HEADINGS = {"h1": 1, "h2": 2, "h3": 3, "h4": 4, "h5": 5, "h6": 6}
LEAF_BLOCKS = {"p", "li", "dd", "td", "th", "caption", "figcaption", "address", "summary", "blockquote"}
CONTAINERS = {"html", "body", "div", "section", "article", "main", "ul", "ol", "dl", "table", "tbody", "thead",
              "tfoot", "tr", "details", "figure", "fieldset", "center", "form"}
BLOCK_TAGS = set(HEADINGS) | LEAF_BLOCKS | CONTAINERS | {"pre", "dt", "hr", "br"}
SKIPPED_TAGS = {"script", "style", "noscript", "nav", "footer", "header", "aside", "template", "head", "button",
                "select", "iframe", "svg", "object", "title"}
SKIPPED_ROLES = {"navigation", "banner", "contentinfo", "search", "complementary"}
SKIPPED_CLASSES = {"nav", "navbar", "navheader", "navfooter", "sidebar", "sphinxsidebar", "footer", "breadcrumb",
                   "breadcrumbs", "toc", "related", "headerlink", "contents", "menu", "skip-link"}
_PERMALINK = re.compile(r"[\s¶§]+$")
_SPACE = re.compile(r"[^\S\n]+")


class Block:
    """One block of a page: ``heading`` (with its level), ``term``, ``para``, ``code``; in plain text also
    ``question`` and ``rule`` (:func:`.rules.text_blocks`), with the indentation and item number of its line."""

    __slots__ = ("kind", "text", "level", "indent", "number")

    def __init__(self, kind: str, text: str, level: int = 0, indent: int = 0, number: str | None = None):
        self.kind, self.text, self.level, self.indent, self.number = kind, text, level, indent, number

    def __repr__(self) -> str:
        return f"Block({self.kind}, {self.text[:40]!r})"


def _clean(text: str) -> str:
    lines = [_SPACE.sub(" ", line).strip() for line in text.split("\n")]
    return " ".join(line for line in lines if line)


def _skipped(el: Any) -> bool:
    if el.tag.lower() in SKIPPED_TAGS or el.get("role", "").lower() in SKIPPED_ROLES:
        return True
    if el.get("hidden") is not None or el.get("aria-hidden") == "true":
        return True
    return not SKIPPED_CLASSES.isdisjoint(el.get("class", "").lower().split())


def _visible_text(el: Any) -> str:
    """The element's text without the parts a reader does not see (scripts, permalinks, hidden parts)."""
    parts = [el.text or ""]
    for child in el:
        if isinstance(child.tag, str) and not _skipped(child):
            parts.append(_visible_text(child))
        parts.append(child.tail or "")
    return "".join(parts)


def _has_block_inside(el: Any) -> bool:
    return any(isinstance(d.tag, str) and d.tag.lower() in BLOCK_TAGS and d.tag.lower() != "br" for d in el.iterdescendants())


def _walk(el: Any, out: list[Block]) -> None:
    run: list[str] = [el.text or ""]

    def flush() -> None:
        text = _clean("".join(run))
        if text:
            out.append(Block("para", text))
        run.clear()

    for child in el:
        if not isinstance(child.tag, str):  # a comment or processing instruction
            run.append(child.tail or "")
            continue
        tag = child.tag.lower()
        if _skipped(child):
            run.append(child.tail or "")
            continue
        if tag not in BLOCK_TAGS:
            run.append(_visible_text(child) + (child.tail or ""))
            continue
        flush()
        if tag in HEADINGS:
            text = _PERMALINK.sub("", _clean(_visible_text(child)))
            if text:
                out.append(Block("heading", text, HEADINGS[tag]))
        elif tag == "dt":
            text = _clean(_visible_text(child))
            if text:
                out.append(Block("term", text))
        elif tag == "pre":
            text = _visible_text(child).strip("\n")
            if text.strip():
                out.append(Block("code", text))
        elif tag in LEAF_BLOCKS and not _has_block_inside(child):
            text = _clean(_visible_text(child))
            if text:
                out.append(Block("para", text))
        elif tag not in ("hr", "br"):
            _walk(child, out)
        run.append(child.tail or "")
    flush()


def main_element(root: Any) -> Any:
    for path in ("//main", "//*[@role='main']", "//article", "//body"):
        found = root.xpath(path)
        if found:
            return found[0]
    return root


def page_blocks(root: Any) -> list[Block]:
    """The main content of a parsed page (:func:`parse_html`) as blocks (rule 3)."""
    if root is None:
        return []
    blocks: list[Block] = []
    _walk(main_element(root), blocks)
    return blocks


# The page is already text (decoded by core/web.py with the charset it declares): the parser must read these bytes
# as UTF-8 whatever a <meta charset> inside says, or every non-ASCII character would be decoded twice.
_UTF8_PARSER = lxml.html.HTMLParser(encoding="utf-8")


def parse_html(html: str) -> Any:
    """The page's tree, or None when there is nothing to parse."""
    try:
        return lxml.html.document_fromstring(html.encode("utf-8", "replace"), parser=_UTF8_PARSER)
    except (lxml.etree.ParserError, ValueError):
        return None


def _html_text(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        return ""
    if "<" not in value:
        return _clean(value)
    try:
        fragment = lxml.html.fragment_fromstring(value, create_parent="div")
    except (lxml.etree.ParserError, ValueError):
        return _clean(value)
    return "\n\n".join(b.text for b in _fragment_blocks(fragment)) or _clean(fragment.text_content())


def _fragment_blocks(fragment: Any) -> list[Block]:
    blocks: list[Block] = []
    _walk(fragment, blocks)
    return blocks


def _types(node: dict[str, Any]) -> set[str]:
    kind = node.get("@type", [])
    return {str(t).rsplit("/", 1)[-1] for t in (kind if isinstance(kind, list) else [kind])}


def _nodes(value: Any) -> Iterator[dict[str, Any]]:
    if isinstance(value, dict):
        yield value
        for child in value.values():
            yield from _nodes(child)
    elif isinstance(value, list):
        for child in value:
            yield from _nodes(child)


def _votes(answer: dict[str, Any]) -> float:
    try:
        return float(answer.get("upvoteCount") or 0)
    except (TypeError, ValueError):
        return 0.0


def _question_pair(node: dict[str, Any]) -> QAPair | None:
    question = _html_text(node.get("name")) or _html_text(node.get("text"))
    answer = node.get("acceptedAnswer")
    if isinstance(answer, list):
        answer = answer[0] if answer else None
    if not isinstance(answer, dict):
        suggested = [a for a in (node.get("suggestedAnswer") or []) if isinstance(a, dict)] \
            if isinstance(node.get("suggestedAnswer"), list) else [node.get("suggestedAnswer")]
        suggested = [a for a in suggested if isinstance(a, dict)]
        answer = max(suggested, key=_votes) if suggested else None
    text = _html_text(answer.get("text")) if isinstance(answer, dict) else ""
    return QAPair(question, text) if question and text else None


def json_ld_pairs(root: Any) -> list[QAPair]:
    """Rule 1: FAQPage and QAPage questions in JSON-LD."""
    pairs: list[QAPair] = []
    for script in root.xpath("//script[@type='application/ld+json']"):
        try:
            data = json.loads(script.text or "")
        except (json.JSONDecodeError, TypeError):
            continue
        for node in _nodes(data):
            if _types(node) & {"FAQPage", "QAPage"}:
                entities = node.get("mainEntity")
                for entity in entities if isinstance(entities, list) else [entities]:
                    if isinstance(entity, dict) and "Question" in _types(entity):
                        pair = _question_pair(entity)
                        if pair:
                            pairs.append(pair)
    return pairs


def _itemprop(el: Any, name: str) -> list[Any]:
    """Descendants with this itemprop that belong to ``el``'s item (not to an item nested inside it)."""
    found = []
    for d in el.iterdescendants():
        if isinstance(d.tag, str) and name in (d.get("itemprop") or "").split():
            owner = next((a for a in d.iterancestors() if a.get("itemscope") is not None), None)
            if owner is el:
                found.append(d)
    return found


def _prop_text(el: Any) -> str:
    content = el.get("content")
    return _clean(content) if content else "\n\n".join(b.text for b in _fragment_blocks(el)) or _clean(el.text_content())


def microdata_pairs(root: Any) -> list[QAPair]:
    """Rule 2: schema.org Question items in microdata."""
    pairs: list[QAPair] = []
    for item in root.xpath("//*[@itemscope][contains(@itemtype, 'schema.org/Question')]"):
        names = _itemprop(item, "name")
        answers = _itemprop(item, "acceptedAnswer") or _itemprop(item, "suggestedAnswer")
        if not names or not answers:
            continue
        texts = _itemprop(answers[0], "text")
        question, answer = _prop_text(names[0]), _prop_text(texts[0]) if texts else ""
        if question and answer:
            pairs.append(QAPair(question, answer))
    return pairs


def marked_up_pairs(root: Any) -> tuple[list[QAPair], str | None]:
    """Rules 1 and 2 on a parsed page (:func:`parse_html`): (pairs, rule name) or ([], None)."""
    if root is None:
        return [], None
    for rule, find in (("json_ld", json_ld_pairs), ("microdata", microdata_pairs)):
        pairs = find(root)
        if pairs:
            return pairs, rule
    return [], None
