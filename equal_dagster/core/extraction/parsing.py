"""Turning a model's raw response into validated data.

Rules (applied in this order):

1. An empty or blank response is a ``parse_error``.
2. Code fences (```json ... ```) are looked into first; otherwise the first JSON object or array found anywhere in
   the text is used, so chatter before and after the JSON is tolerated.
3. The JSON is validated against the prompt's output schema (jsonschema). For ``qa_pairs``, a bare list of pairs
   is accepted as the list; a pair whose question or answer is missing, not a string or blank is dropped and
   counted, and the response is a ``parse_error`` only when it had pairs and none survived.
4. ``{"qa_pairs": []}`` is a valid answer: ``no_qa``.

Nothing in a response is evaluated or executed: it is only decoded with :func:`json.JSONDecoder.raw_decode`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

import jsonschema

from equal_dagster.core.extraction.results import QAPair

MAX_QUESTION_CHARS = 4_000
MAX_ANSWER_CHARS = 32_000

SCHEMAS: dict[str, dict[str, Any]] = {
    "qa_pairs": {
        "type": "object",
        "properties": {
            "qa_pairs": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"question": {"type": "string"}, "answer": {"type": "string"}},
                    "required": ["question", "answer"],
                    "additionalProperties": False,
                },
            }
        },
        "required": ["qa_pairs"],
        "additionalProperties": False,
    },
    "instruction": {
        "type": "object",
        "properties": {"instruction": {"type": "string"}},
        "required": ["instruction"],
        "additionalProperties": False,
    },
    "answer": {
        "type": "object",
        "properties": {"answer": {"type": "string"}},
        "required": ["answer"],
        "additionalProperties": False,
    },
}

# What is checked on the way in: lenient about extra keys (models add them), strict about the ones we use.
_LENIENT = {
    "qa_pairs": {"type": "object", "required": ["qa_pairs"], "properties": {"qa_pairs": {"type": "array"}}},
    "instruction": {"type": "object", "required": ["instruction"], "properties": {"instruction": {"type": "string"}}},
    "answer": {"type": "object", "required": ["answer"], "properties": {"answer": {"type": "string"}}},
}

# Built once: jsonschema.validate() checks the schema itself on every call, which cost 2 ms a response.
_VALIDATORS = {name: jsonschema.Draft202012Validator(schema) for name, schema in _LENIENT.items()}

_FENCE = re.compile(r"```[ \t]*(?:json|JSON)?[ \t]*\n?(.*?)```", re.DOTALL)
_DECODER = json.JSONDecoder()


@dataclass
class ParsedResponse:
    status: str  # ok | no_qa | parse_error
    value: Any = None  # list[QAPair] for qa_pairs, str for instruction / answer
    error: str | None = None
    dropped_items: int = 0
    notes: list[str] = field(default_factory=list)


def find_json(raw: str) -> Any:
    """The JSON value in ``raw``: inside a code fence if there is one, else the first object or array that
    decodes. Raises ValueError when there is none."""
    candidates = [m.group(1) for m in _FENCE.finditer(raw)] + [raw]
    for text in candidates:
        for start, char in enumerate(text):
            if char not in "{[":
                continue
            try:
                value, _ = _DECODER.raw_decode(text, start)
            except json.JSONDecodeError:
                continue
            if isinstance(value, (dict, list)):
                return value
    raise ValueError("no JSON object in the response")


def _excerpt(raw: str, limit: int = 200) -> str:
    raw = " ".join(raw.split())
    return raw if len(raw) <= limit else raw[:limit] + "…"


def parse_response(raw: str | None, output: str) -> ParsedResponse:
    """Parse ``raw`` as the ``output`` schema (one of :data:`SCHEMAS`)."""
    if output not in SCHEMAS:
        raise ValueError(f"unknown output schema {output!r}")
    if raw is None or not raw.strip():
        return ParsedResponse("parse_error", error="empty response")
    try:
        value = find_json(raw)
    except ValueError as exc:
        return ParsedResponse("parse_error", error=f"{exc}: {_excerpt(raw)!r}")
    if output == "qa_pairs" and isinstance(value, list):
        value = {"qa_pairs": value}
    error = jsonschema.exceptions.best_match(_VALIDATORS[output].iter_errors(value))
    if error is not None:
        return ParsedResponse("parse_error", error=f"response does not match the {output} schema: {error.message}")
    if output == "qa_pairs":
        return _qa_pairs(value["qa_pairs"])
    text = value[output].strip()
    if not text:
        return ParsedResponse("parse_error", error=f"empty {output}")
    return ParsedResponse("ok", value=text)


def _qa_pairs(items: list[Any]) -> ParsedResponse:
    pairs: list[QAPair] = []
    dropped = 0
    seen: set[tuple[str, str]] = set()
    for item in items:
        question = item.get("question") if isinstance(item, dict) else None
        answer = item.get("answer") if isinstance(item, dict) else None
        if not isinstance(question, str) or not isinstance(answer, str) or not question.strip() or not answer.strip():
            dropped += 1
            continue
        pair = QAPair(question.strip()[:MAX_QUESTION_CHARS], answer.strip()[:MAX_ANSWER_CHARS])
        if (pair.question, pair.answer) in seen:
            continue
        seen.add((pair.question, pair.answer))
        pairs.append(pair)
    if pairs:
        notes = [f"{dropped} malformed pair(s) dropped"] if dropped else []
        return ParsedResponse("ok", value=pairs, dropped_items=dropped, notes=notes)
    if dropped:
        return ParsedResponse("parse_error", error=f"all {dropped} pair(s) lack a question or an answer", dropped_items=dropped)
    return ParsedResponse("no_qa", value=[])
