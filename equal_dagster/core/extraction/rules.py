"""The ``rules`` backend: QA pairs from documents that already carry question/answer structure. No model.

Rules (rule set ``rules/v1``), tried in this order; the first that yields pairs wins:

1. **Labelled blocks.** A line that starts with a question label (``Problem``, ``Exercise``, ``Example``,
   ``Question``, ``Q``, optionally numbered, then ``.``, ``:`` or ``)``) opens a question; a line that starts
   with an answer label (``Solution``, ``Answer``, ``A``, ``Accepted answer``, ``Best answer``, ``Answer (12 votes)
   by name:``, ``name replied:``) opens an answer. A question followed by one or more answer blocks is a pair;
   consecutive answer blocks (``Solution: ... Answer: 42``) make one answer. This covers worked problems
   (problem/solution, "Example ... Solution"), Q:/A: lists, and question-and-answer threads.
2. **Threads without a question label.** An answer block with no question before it takes the document's
   first line as its question when that line asks one (ends with ``?``; a leading ``[tag]`` is dropped).
3. **FAQ headings.** A heading or short line that asks a question (capitalized, at most 200 characters, ends
   with ``?``) directly followed by an answer paragraph of at least three words that asks nothing back.

Where a block ends: a question is its first paragraph, without "Asked by ..." lines; an answer is its first
paragraph plus any code blocks (fenced or indented) right after it. Text after that (comment counts, "Hope this
helps", page footers) is left out. A document that matches no rule yields ``no_qa``, which is a valid result.
Everything here only reads the text: nothing from a document is executed or used as a path.
"""

from __future__ import annotations

import re

from equal_dagster.core.extraction.html_qa import Block, marked_up_pairs, page_blocks, parse_html
from equal_dagster.core.extraction.results import QAPair

RULES_VERSION = "rules/v2"
# The rules that read a page's own markup (html_qa): trusted to stand in for a model call on a web page. The text
# rules ("labelled", "text_faq") are not: a model reads that text better.
PAGE_RULES = ("json_ld", "microdata", "html_faq")

_QUESTION_LABEL = re.compile(
    r"^(?:#{1,6}\s*)?(?:problem|exercise|example|question|(?-i:Q))(?:\s*#?\d+)?\s*[.:)]\s*(?P<rest>.*)$", re.IGNORECASE
)
_ANSWER_LABEL = re.compile(
    r"^(?:#{1,6}\s*)?(?:"
    r"(?:solution|answer|(?-i:A))(?:\s*\([^)\n]{0,40}\))?(?:\s+by\s+[^:\n]{1,40})?\s*[.:)]"
    r"|(?:accepted|best|top)\s+answer(?:\s*\([^)\n]{0,40}\))?(?:\s+by\s+[^:\n]{1,40})?\s*[.:)]?"
    r"|[A-Z][\w.-]{0,30}\s+(?:replied|answered|wrote)\s*:"
    r")\s*(?P<rest>.*)$",
    re.IGNORECASE,
)
_ASKED_BY = re.compile(r"^(asked|posted)\s+by\b", re.IGNORECASE)
_TAG_PREFIX = re.compile(r"^\[[^\]\n]{1,30}\]\s*")
_HEADING = re.compile(r"^#{1,6}\s*")
MAX_QUESTION_LINE = 200


def _paragraphs(lines: list[str]) -> list[list[str]]:
    """Blank-line separated paragraphs; a fenced code block is kept whole."""
    paragraphs: list[list[str]] = []
    current: list[str] = []
    in_fence = False
    for line in lines:
        if line.strip().startswith("```"):
            in_fence = not in_fence
        if not line.strip() and not in_fence:
            if current:
                paragraphs.append(current)
                current = []
            continue
        current.append(line)
    if current:
        paragraphs.append(current)
    return paragraphs


def _is_code(paragraph: list[str]) -> bool:
    """A paragraph that is only code: one fenced block, or indented lines."""
    fenced = paragraph[0].strip().startswith("```") and paragraph[-1].strip() == "```" and len(paragraph) > 1
    return fenced or all(line.startswith(("    ", "\t")) for line in paragraph)


def _question_text(lines: list[str]) -> str:
    paragraphs = _paragraphs(lines)
    if not paragraphs:
        return ""
    kept = [line for line in paragraphs[0] if not _ASKED_BY.match(line.strip())]
    return "\n".join(kept).strip()


def _answer_text(lines: list[str]) -> str:
    paragraphs = _paragraphs(lines)
    if not paragraphs:
        return ""
    taken = [paragraphs[0]]
    for paragraph in paragraphs[1:]:
        if not _is_code(paragraph):
            break
        taken.append(paragraph)
    if all(_is_code(p) for p in taken) and len(paragraphs) > len(taken):
        taken.append(paragraphs[len(taken)])  # code first, then its explanation
    return "\n\n".join("\n".join(p) for p in taken).strip()


def _segments(text: str) -> tuple[list[str], list[tuple[str, list[str], str]]]:
    """The lines before the first label, and the labelled blocks: (``question`` | ``answer``, lines after the
    label, the label line)."""
    preamble: list[str] = []
    blocks: list[tuple[str, list[str], str]] = []
    in_fence = False
    for line in text.split("\n"):
        stripped = line.strip()
        if stripped.startswith("```"):
            in_fence = not in_fence
        answer = None if in_fence else _ANSWER_LABEL.match(stripped)
        question = None if in_fence or answer else _QUESTION_LABEL.match(stripped)
        if answer or question:
            rest = (answer or question)["rest"]
            blocks.append(("answer" if answer else "question", [rest] if rest else [], stripped))
        elif blocks:
            blocks[-1][1].append(line)
        else:
            preamble.append(line)
    return preamble, blocks


def _title_question(preamble: list[str]) -> str:
    for line in preamble:
        if line.strip():
            title = _TAG_PREFIX.sub("", _HEADING.sub("", line.strip()))
            return title if title.endswith("?") and len(title) <= MAX_QUESTION_LINE else ""
    return ""


def _labelled_pairs(text: str) -> list[QAPair]:
    preamble, blocks = _segments(text)
    pairs: list[QAPair] = []
    question: str | None = None
    answers: list[str] = []
    labelled_answer_seen = False

    def close() -> None:
        if question and answers:
            pairs.append(QAPair(question, "\n".join(answers)))

    for kind, lines, label_line in blocks:
        if kind == "question":
            close()
            question, answers = _question_text(lines), []
        else:
            if question is None and not labelled_answer_seen:
                question = _title_question(preamble)  # rule 2: a thread whose title asks the question
            labelled_answer_seen = True
            if answers:  # a later block ("Answer: 42" after the solution) keeps its label
                lines = [label_line, *lines[1:]] if lines else [label_line]
            answer = _answer_text(lines)
            if answer:
                answers.append(answer)
    close()
    return pairs


_NUMBERING = re.compile(r"^(?:(?:q(?:uestion)?\s*\d*\s*[.:)]|\(?\d+(?:\.\d+)*[.)]?|[-*\u2022])\s+)", re.IGNORECASE)
_ITEM_NUMBER = re.compile(r"^(\d+(?:\.\d+)*)[.)]?\s+\S")
_QUESTION_END = re.compile(r"\?[!\"'\u201d)]*$")
_SECTION_LINE = re.compile(r"^(?:\d+(?:\.\d+)*\.?\s+[A-Z][^.?!:;]{0,78}|[A-Z][A-Z0-9 ,&/'-]{3,78})$")
_UNDERLINE = re.compile(r"^(=+|-+|~+|\^+|\*+|#+)$")
_RULE_LINE = re.compile(r"^\s*([-=_~*])\1{9,}\s*$")
MAX_QUESTION_CHARS = 300
MIN_NUMBERED_QUESTIONS = 3  # numbered questions that make a numbered list a FAQ (its statements are entries too)


def question_of(line: str) -> str | None:
    """The question a heading, term or line asks (numbering and labels removed), or None: it must end with a
    question mark, start with a capital letter, have two words or more, and be at most 300 characters."""
    text = _NUMBERING.sub("", _HEADING.sub("", line.strip())).strip()
    if not _QUESTION_END.search(text) or len(text) > MAX_QUESTION_CHARS or len(text.split()) < 2:
        return None
    return text if text[:1].isupper() else None


def _question_lines(paragraph: list[str]) -> int:
    """How many lines of the paragraph's head make its question: the first line, or the first two or three when
    a numbered or labelled question wraps ("1.2. How do I ... / ... this?"). 0: the head asks nothing."""
    def indent(line: str) -> int:
        return len(line) - len(line.lstrip())

    for n in (1, 2, 3):
        # a wrapped question: numbered or labelled, or (a rendered man page) its answer indented deeper than it
        hanging = len(paragraph) > n and indent(paragraph[n]) > indent(paragraph[0]) and \
            all(indent(line) == indent(paragraph[0]) for line in paragraph[:n])
        if n > 1 and not (_NUMBERING.match(paragraph[0].strip()) or hanging):
            return 0
        head = " ".join(line.strip() for line in paragraph[:n])
        if n <= len(paragraph) and len(head) <= MAX_QUESTION_CHARS and question_of(head):
            return n
    return 0


def _split_rules(lines: list[str]) -> list[str]:
    """A horizontal rule (a line of ten or more -, =, _, ~ or *) stands apart as its own paragraph."""
    out: list[str] = []
    for line in lines:
        if not _RULE_LINE.match(line):
            out.append(line)
        elif out and out[-1].strip() and not _RULE_LINE.match(out[-1]) and len(line.strip()) >= len(out[-1].strip()) - 2:
            out += [line, ""]  # the underline of a reStructuredText or Markdown heading
        else:
            out += ["", line, ""]
    return out


_POD_COMMAND = re.compile(r"^=(?P<command>head[1-6]|item|over|back|cut|pod|begin|end|for|encoding)\b(?P<text>.*)$")
_CAPS_HEAD = re.compile(r"^[A-Z][A-Z0-9 ,&/'-]{3,78}$")


def _section_heads(paragraphs: list[list[str]]) -> list[list[str]]:
    """An all-capitals section line at column 0 heading a paragraph (a man page's ``CONFIGURATION`` right above
    its first entry) stands apart from the lines under it."""
    out: list[list[str]] = []
    for paragraph in paragraphs:
        if len(paragraph) > 1 and _CAPS_HEAD.match(paragraph[0]) and paragraph[1][:1].isspace():
            out += [paragraph[:1], paragraph[1:]]
        else:
            out.append(paragraph)
    return out


def text_blocks(text: str) -> list[Block]:
    """Plain text (or markdown, reStructuredText, Perl's POD, a rendered man page) as blocks: a ``#`` heading, an
    underlined line or a POD ``=head`` is a heading (a POD ``=item``, a term); a short numbered or all-capitals line standing alone is a section heading; a horizontal
    rule is a ``rule``; a paragraph whose head asks a question is split into that ``question`` and the rest. Each
    block keeps its indentation and its item number ("1.2"), which mark where an entry of a FAQ ends."""
    blocks: list[Block] = []
    for paragraph in _section_heads(_paragraphs(_split_rules(text.split("\n")))):
        first = paragraph[0].strip()
        indent = len(paragraph[0]) - len(paragraph[0].lstrip())
        number = _ITEM_NUMBER.match(first)
        asked = 0 if paragraph[0].strip().startswith("```") else _question_lines(paragraph)
        pod = _POD_COMMAND.match(first)
        if pod:  # Perl's POD: =head2 is a heading, =item a term, the other commands (=over, =back, =cut) nothing
            if pod["command"].startswith("head"):
                blocks.append(Block("heading", pod["text"].strip(), int(pod["command"][-1])))
            elif pod["command"] == "item" and pod["text"].strip(" *"):
                blocks.append(Block("term", pod["text"].strip(" *")))
            if paragraph[1:]:
                blocks.append(Block("para", "\n".join(paragraph[1:]).strip()))
        elif _RULE_LINE.match(paragraph[0]):
            blocks.append(Block("rule", first))
        elif len(paragraph) == 2 and _UNDERLINE.match(paragraph[1].strip()) and len(paragraph[1].strip()) >= len(first) - 2:
            blocks.append(Block("heading", first, 2))
        elif first.startswith("#"):
            blocks.append(Block("heading", _HEADING.sub("", first), first.count("#", 0, 6)))
            if paragraph[1:]:
                blocks.append(Block("para", "\n".join(paragraph[1:]).strip()))
        elif asked:
            blocks.append(Block("question", " ".join(line.strip() for line in paragraph[:asked]), 0, indent,
                                number.group(1) if number else None))
            if paragraph[asked:]:
                blocks.append(Block("para", "\n".join(line.rstrip() for line in paragraph[asked:])))
        elif len(paragraph) == 1 and _SECTION_LINE.match(first) and not number:
            blocks.append(Block("heading", first, 2))
        else:
            blocks.append(Block("para", "\n".join(line.rstrip() for line in paragraph).strip("\n"), 0, indent,
                                number.group(1) if number else None))
    return blocks


_PASSING_QUESTION = re.compile(r"\?\s+[A-Z]")  # "...help? Contact us.": a question, then a new sentence
_FOOTER = re.compile(r"^(?:©|\(c\)|copyright\b|all rights reserved|back to top|last (?:updated|modified)\b|"
                     r"contact us\b|still (?:need help|have questions)|(?:previous|next|up|home)\s*(?:\||$))", re.IGNORECASE)


def _is_footer(block: Block) -> bool:
    """A page's footer line after the last entry: a copyright or contact line, or a short line that asks in
    passing ("Still need help? Contact us.")."""
    if block.kind != "para" or "\n" in block.text or len(block.text.split()) > 15:
        return False
    return bool(_FOOTER.match(block.text) or (_PASSING_QUESTION.search(block.text) and "://" not in block.text))


def _same_item_level(block: Block, question: Block) -> bool:
    """A block that opens the next item of the question's numbered list (same depth, not indented deeper)."""
    return (question.number is not None and block.number is not None and block.indent <= question.indent + 1
            and block.number.count(".") == question.number.count("."))


def _numbered_entries(blocks: list[Block]) -> None:
    """A numbered list with three numbered questions or more is a FAQ: its other items at the same level
    (statements such as "4. compress() returns Z_BUF_ERROR.") are entries too, and become questions."""
    numbered = [b for b in blocks if b.kind == "question" and b.number]
    if len(numbered) < MIN_NUMBERED_QUESTIONS:
        return
    for block in blocks:
        if block.kind == "para" and block.number and "\n" not in block.text.strip() \
                and any(_same_item_level(block, q) for q in numbered) and len(block.text) <= MAX_QUESTION_CHARS:
            block.kind = "question"


def faq_pairs(blocks: list[Block], *, plain_questions: bool) -> list[QAPair]:
    """FAQ entries: a heading or term that asks a question (and, with ``plain_questions``, a question at the
    head of its paragraph, or an item of a numbered FAQ), followed by its answer: the blocks after it up to the
    next heading, term, question, horizontal rule, footer line or item of the same numbered list. An answer that
    is itself only a question is no answer."""
    starts = ("heading", "term", "question") if plain_questions else ("heading", "term")
    pairs: list[QAPair] = []
    for i, block in enumerate(blocks):
        if block.kind not in starts:
            continue
        question = question_of(block.text) or (_NUMBERING.sub("", block.text.strip()).strip() if block.kind == "question" else None)
        if not question:
            continue
        answer: list[str] = []
        for after in blocks[i + 1:]:
            if after.kind in ("heading", "term", "rule") or (after.kind == "question" and plain_questions) \
                    or (answer and _is_footer(after)) or _same_item_level(after, block):
                break
            answer.append(after.text)
        if answer and not (len(answer) == 1 and _QUESTION_END.search(answer[0])):
            pairs.append(QAPair(question, _dedent("\n\n".join(answer))))
    return pairs


def _dedent(answer: str) -> str:
    """The answer moved left by its first line's indentation (a text FAQ indents its answers); deeper lines, such
    as code, keep what they have beyond it."""
    first = answer.split("\n", 1)[0]
    base = len(first) - len(first.lstrip())
    if not base:
        return answer
    return "\n".join(line[min(base, len(line) - len(line.lstrip())):] for line in answer.split("\n")).strip()


def _text_faq_pairs(text: str) -> list[QAPair]:
    """FAQ entries of plain text. A line asking a question at the head of a paragraph counts when the text has
    at least two of them (a FAQ), or when it is numbered or labelled; a single unlabelled question line in running
    prose is more often rhetorical than an entry."""
    blocks = text_blocks(text)
    _numbered_entries(blocks)
    asked = [b for b in blocks if b.kind == "question"]
    numbered = any(_NUMBERING.match(b.text) for b in asked)
    return faq_pairs(blocks, plain_questions=len(asked) >= 2 or numbered)


def harvest(text: str, html: str | None = None) -> tuple[list[QAPair], str | None]:
    """The QA pairs the document's own structure holds, and the rule that found them (None: no pairs). A web
    page's markup comes first (:mod:`.html_qa`: JSON-LD, microdata, then its headings and terms), then the rules
    on its text."""
    found: list[QAPair] = []
    rule = None
    if html:
        root = parse_html(html)  # once: the markup rules and the page's blocks read the same tree
        found, rule = marked_up_pairs(root)
        if not found:
            found, rule = faq_pairs(page_blocks(root), plain_questions=False), "html_faq"
    if not found:
        found, rule = _labelled_pairs(text), "labelled"
    if not found:
        found, rule = _text_faq_pairs(text), "text_faq"
    unique: dict[tuple[str, str], QAPair] = {}
    for pair in found:
        if pair.question.strip() and pair.answer.strip():
            unique.setdefault((pair.question, pair.answer), pair)
    return list(unique.values()), (rule if unique else None)


def extract_structured_pairs(text: str, html: str | None = None) -> list[QAPair]:
    """The QA pairs the document's own structure holds (see the module docstring for the rules)."""
    return harvest(text, html)[0]
