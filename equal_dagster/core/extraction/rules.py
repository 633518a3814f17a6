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

from equal_dagster.core.extraction.results import QAPair

RULES_VERSION = "rules/v1"

_QUESTION_LABEL = re.compile(
    r"^(?:#{1,6}\s*)?(?:problem|exercise|example|question|q)(?:\s*#?\d+)?\s*[.:)]\s*(?P<rest>.*)$", re.IGNORECASE
)
_ANSWER_LABEL = re.compile(
    r"^(?:#{1,6}\s*)?(?:"
    r"(?:solution|answer|a)(?:\s*\([^)\n]{0,40}\))?(?:\s+by\s+[^:\n]{1,40})?\s*[.:)]"
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


def _faq_pairs(text: str) -> list[QAPair]:
    pairs: list[QAPair] = []
    paragraphs = _paragraphs(text.split("\n"))
    for index, paragraph in enumerate(paragraphs):
        heading = _HEADING.sub("", paragraph[0].strip())
        if not (heading.endswith("?") and len(heading) <= MAX_QUESTION_LINE and heading[:1].isupper()):
            continue
        body = paragraph[1:]
        if not body and paragraph[0].lstrip().startswith("#") and index + 1 < len(paragraphs):
            body = paragraphs[index + 1]  # "### Question?" then a blank line, then the answer
        answer = "\n".join(body).strip()
        if len(answer.split()) >= 3 and not answer.endswith("?"):
            pairs.append(QAPair(heading, answer))
    return pairs


def extract_structured_pairs(text: str) -> list[QAPair]:
    """The QA pairs the document's own structure holds (see the module docstring for the rules)."""
    pairs = _labelled_pairs(text) or _faq_pairs(text)
    unique: dict[tuple[str, str], QAPair] = {}
    for pair in pairs:
        if pair.question.strip() and pair.answer.strip():
            unique.setdefault((pair.question, pair.answer), pair)
    return list(unique.values())
