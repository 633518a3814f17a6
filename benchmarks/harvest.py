"""Precision and recall of the ``rules`` harvest on hand-labelled real pages, per source kind.

Three labelled sets of real documentation (Debian and Python manuals and FAQs, man pages, READMEs; licences in
each set's LICENSES.md): tests/fixtures/realtext, the pages the rules were written against;
tests/fixtures/realtext_holdout, labelled apart and scored once the rules were written (its text FAQs then showed
that the rules did not read POD, which they learned afterwards); tests/fixtures/realtext_holdout2, text FAQs
labelled apart after that and scored once. Scoring: tests/fixtures/realtext/score.py.

    .venv/bin/python benchmarks/harvest.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures"
sys.path.insert(0, str(FIXTURES / "realtext"))

from score import score_fixture  # noqa: E402


def main() -> None:
    print("| set | kind | pages | labelled entries | pairs harvested | correct | precision | recall | recall (entries "
          "asking with '?') | answer reaches its end |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name in ("realtext", "realtext_holdout", "realtext_holdout2"):
        began = time.perf_counter()
        scores = score_fixture(FIXTURES / name / "labels.json")
        seconds = time.perf_counter() - began
        for kind, score in scores.items():
            f = score.figures()

            def cell(value):
                return "—" if value is None else f"{value:.3f}"

            print(f"| {name} | {kind} | {f['pages']} | {f['entries']} | {f['harvested']} | {f['correct']} | "
                  f"{cell(f['precision'])} | {cell(f['recall'])} | {cell(f['recall_with_mark'])} | {cell(f['complete'])} |")
        pages = sum(s.pages for s in scores.values())
        print(f"| {name} | (all, {pages / seconds:,.0f} pages/s: main text and harvest) | {pages} | | | | | | | |")
    print(f"\n(command: .venv/bin/python benchmarks/{Path(__file__).name})")


if __name__ == "__main__":
    main()
