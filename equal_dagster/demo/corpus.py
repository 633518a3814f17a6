"""The embedded demo's data: a seeded web corpus written as two crawls, and a math reference set.

Same seed, same bytes: every choice comes from one ``random.Random(seed)``, JSON is written with sorted keys,
gzip without a timestamp. Every generated row records its kind under ``meta.kind``, a field the pipeline
never reads, so that benchmarks can score what a selection policy picked. Relevant to the demo goal (grade
school math) are the ``math_problem`` documents (and near-duplicates of them).

Kinds: math_problem, math_explainer, code_qa, howto, faq, encyclopedia, news, shop, boilerplate, forum,
non_english, near_duplicate, recrawl (an exact copy of an earlier page, found again in the second crawl),
plus broken rows of several sorts that the corpus asset must quarantine.
"""

from __future__ import annotations

import gzip
import io
import json
import random
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from equal_dagster.demo import text_kinds as kinds
from equal_dagster.demo.math_problems import MathProblem, math_problem, recorded_questions

RELEVANT_KINDS = frozenset({"math_problem"})

# kind -> (weight in the demo corpus, writer)
WRITERS: dict[str, tuple[float, Callable[[random.Random], str]]] = {
    "math_problem": (12, kinds.math_worked_problems),
    "math_explainer": (3, kinds.math_explainer),
    "code_qa": (10, kinds.code_qa_thread),
    "howto": (10, kinds.howto_list),
    "faq": (8, kinds.faq_page),
    "encyclopedia": (12, kinds.encyclopedia_article),
    "news": (12, kinds.news_article),
    "shop": (10, kinds.shop_page),
    "boilerplate": (6, kinds.boilerplate_page),
    "forum": (10, kinds.forum_chatter),
}
NON_ENGLISH_WEIGHT = 4
# kinds only the selection suite's corpora use (demo/suite.py); their weight is the mix's
SUITE_WRITERS: dict[str, Callable[[random.Random], str]] = {
    "math_thread": kinds.math_thread,
    "math_chatter": kinds.math_chatter,
    "math_news": kinds.math_news,
    "trivia_quiz": kinds.trivia_quiz,
}


@dataclass(frozen=True)
class CorpusMix:
    """What a generated corpus is made of: the weight of each kind (``non_english`` included), and which kinds serve
    the math goal of the reference set (benchmarks score selection with them; the pipeline never sees them)."""

    name: str
    weights: tuple[tuple[str, float], ...]
    relevant: frozenset[str] = RELEVANT_KINDS
    about: str = ""

    def relevant_share(self) -> float:
        total = sum(w for _, w in self.weights)
        return sum(w for k, w in self.weights if k in self.relevant) / total


DEMO_MIX = CorpusMix("demo", tuple((k, w) for k, (w, _) in WRITERS.items()) + (("non_english", NON_ENGLISH_WEIGHT),),
                     about="the embedded demo's mix: worked math problems among ten other kinds")


def write_page(kind: str, rng: random.Random) -> tuple[str, dict]:
    """The text of one page of ``kind``, and its ``meta``."""
    if kind == "non_english":
        lang, text = kinds.non_english_page(rng)
        return text, {"kind": kind, "lang": lang}
    writer = WRITERS[kind][1] if kind in WRITERS else SUITE_WRITERS[kind]
    return writer(rng), {"kind": kind}
NEAR_DUPLICATE_SHARE = 0.05
RECRAWL_SHARE = 0.015
BROKEN_SHARE = 0.008

CRAWL_NAMES = ("crawl-2026-10", "crawl-2026-11")


@dataclass
class DemoCorpus:
    """Rows of each crawl (dicts, or raw bytes for broken lines) and what was generated."""

    crawls: dict[str, list[dict | bytes]] = field(default_factory=dict)
    kinds: Counter = field(default_factory=Counter)
    math_questions: set[str] = field(default_factory=set)


def _slug(text: str) -> str:
    words = "".join(c if c.isalnum() else " " for c in text.split("\n", 1)[0].lower()).split()
    return "-".join(words[:6]) or "page"


def _broken_rows(rng: random.Random, prefix: str, used_ids: list[str]) -> list[bytes]:
    n = rng.randint(0, 10**6)
    return [
        b'{"id": "%s-trunc-%d", "text": "This line was cut off in the middle of' % (prefix.encode(), n),
        b'["a", "json", "list", "not", "an", "object"]',
        b'"just a string on its own line"',
        json.dumps({"id": f"{prefix}-nobody-{n}", "body": "The text is under the wrong field.", "meta": {"kind": "broken"}}).encode(),
        json.dumps({"id": f"{prefix}-empty-{n}", "text": "  \n\t  ", "meta": {"kind": "broken"}}).encode(),
        b'{"id": "%s-latin1-%d", "text": "Caf\xe9 cr\xe8me, written in Latin-1 bytes", "meta": {"kind": "broken"}}' % (prefix.encode(), n),
        json.dumps({"id": f"{prefix}-number-{n}", "text": 12345, "meta": {"kind": "broken"}}).encode(),
        json.dumps({"id": rng.choice(used_ids), "text": f"A different page that reuses an existing id (version {n}).",
                    "meta": {"kind": "broken"}}).encode(),
    ]


def generate_demo_corpus(seed: int = 0, n_documents: int = 6000, mix: CorpusMix = DEMO_MIX) -> DemoCorpus:
    """About ``n_documents`` rows of ``mix`` in two crawls (55% / 45%), broken rows included."""
    with recorded_questions() as questions:
        corpus = _generate(seed, n_documents, mix)
    corpus.math_questions = questions
    return corpus


def _generate(seed: int, n_documents: int, mix: CorpusMix) -> DemoCorpus:
    rng = random.Random(seed)
    corpus = DemoCorpus()
    names = [k for k, _ in mix.weights]
    weights = [w for _, w in mix.weights]
    first_crawl_size = int(n_documents * 0.55)
    earlier: list[dict] = []
    for crawl_index, crawl in enumerate(CRAWL_NAMES):
        size = first_crawl_size if crawl_index == 0 else n_documents - first_crawl_size
        prefix = f"c{crawl_index + 1}"
        rows: list[dict | bytes] = []
        for i in range(size):
            doc_id = f"{prefix}-{i:06d}"
            roll = rng.random()
            if earlier and crawl_index == 1 and roll < RECRAWL_SHARE:
                source = rng.choice(earlier)
                row = {"id": doc_id, "text": source["text"],
                       "meta": {"kind": "recrawl", "source_kind": source["meta"]["kind"], "copy_of": source["id"]}}
                if "url" in source:
                    row["url"] = source["url"]
            elif earlier and roll < RECRAWL_SHARE + NEAR_DUPLICATE_SHARE:
                source = rng.choice(earlier)
                row = {"id": doc_id, "url": f"https://mirror{rng.randint(1, 9)}.example/{_slug(source['text'])}",
                       "text": kinds.near_duplicate(rng, source["text"]),
                       "meta": {"kind": "near_duplicate", "source_kind": source["meta"]["kind"], "copy_of": source["id"]}}
            else:
                text, meta = write_page(rng.choices(names, weights)[0], rng)
                row = {"id": doc_id, "url": f"https://{kinds.pick(rng, kinds.SITES)}/{_slug(text)}-{i}",
                       "text": text, "meta": meta}
            if "url" in row and rng.random() < 0.15:
                del row["url"]  # many crawls lack a URL for some rows
            rows.append(row)
            earlier.append(row)
            corpus.kinds[row["meta"]["kind"]] += 1
        ids = [r["id"] for r in rows if isinstance(r, dict)]
        for j in range(max(8, round(size * BROKEN_SHARE))):
            rows.insert(rng.randrange(len(rows) + 1), _broken_rows(rng, prefix, ids)[j % 8])
            corpus.kinds["broken"] += 1
        corpus.crawls[crawl] = rows
    return corpus


def _jsonl_bytes(rows: list[dict | bytes]) -> bytes:
    out = io.BytesIO()
    for row in rows:
        out.write(row if isinstance(row, bytes) else json.dumps(row, sort_keys=True, ensure_ascii=False).encode())
        out.write(b"\n")
    return out.getvalue()


def _write_gzip(path: Path, data: bytes) -> None:
    with open(path, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as f:
        f.write(data)


def _write_parquet(path: Path, rows: list[dict]) -> None:
    table = pa.Table.from_pylist([{"id": r["id"], "url": r.get("url"), "text": r["text"],
                                   "meta": json.dumps(r["meta"], sort_keys=True)} for r in rows])
    pq.write_table(table, path, compression="zstd")


def write_demo_crawls(crawl_dir: Path, seed: int = 0, n_documents: int = 6000, mix: CorpusMix = DEMO_MIX) -> DemoCorpus:
    """Write the two demo crawls under ``crawl_dir``: the first as plain and gzipped JSONL, the second as
    Parquet (clean rows) and JSONL (the rest, broken rows included)."""
    corpus = generate_demo_corpus(seed, n_documents, mix)
    first, second = (corpus.crawls[name] for name in CRAWL_NAMES)
    one, two = Path(crawl_dir) / CRAWL_NAMES[0], Path(crawl_dir) / CRAWL_NAMES[1]
    one.mkdir(parents=True, exist_ok=True)
    two.mkdir(parents=True, exist_ok=True)
    half = len(first) // 2
    (one / "part-00000.jsonl").write_bytes(_jsonl_bytes(first[:half]))
    _write_gzip(one / "part-00001.jsonl.gz", _jsonl_bytes(first[half:]))
    clean = [r for r in second[: len(second) // 2] if isinstance(r, dict)]
    rest = [r for r in second[: len(second) // 2] if isinstance(r, bytes)] + second[len(second) // 2:]
    _write_parquet(two / "part-00000.parquet", clean)
    (two / "part-00001.jsonl").write_bytes(_jsonl_bytes(rest))
    return corpus


def _distinct_problems(rng: random.Random, n: int, exclude: set[str]) -> Iterator[MathProblem]:
    """``n`` math problems drawn from ``rng`` whose questions are new (not in ``exclude``, not repeated)."""
    seen: set[str] = set(exclude)
    made = 0
    while made < n:
        problem = math_problem(rng)
        if problem.question in seen:
            continue
        seen.add(problem.question)
        made += 1
        yield problem


def _worked_answer(problem: MathProblem) -> str:
    return " ".join(problem.steps) + f" The answer is {problem.answer}."


def generate_reference_set(seed: int = 0, n: int = 120, exclude: set[str] = frozenset()) -> list[dict]:
    """``n`` math word problems with worked answers, none of whose questions is in ``exclude``."""
    rng = random.Random(f"reference-{seed}")
    return [{"id": f"ref-{i:04d}", "question": p.question, "answer": _worked_answer(p), "final_answer": p.answer,
             "template": p.template} for i, p in enumerate(_distinct_problems(rng, n, exclude))]


def _distractors(answer: str, rng: random.Random, k: int = 3) -> list[str]:
    """``k`` wrong answers that look like ``answer``: its first number moved by a little, the rest kept."""
    number = re.search(r"\d+", answer)
    value = int(number.group()) if number else 0
    start, end = number.span() if number else (0, 0)
    wrong: list[str] = []
    while len(wrong) < k:
        candidate = value + rng.choice([-1, 1]) * rng.randint(1, max(3, value // 4 + 1))
        text = answer[:start] + str(candidate) + answer[end:]
        if candidate >= 0 and text != answer and text not in wrong:
            wrong.append(text)
    return wrong


def generate_eval_set(seed: int = 0, n: int = 60, exclude: set[str] = frozenset()) -> list[dict]:
    """The demo's held-out evaluation task: ``n`` math word problems (none of whose questions is in ``exclude``: the
    corpus's and the reference set's), with the worked answer, and four choices of final answer (``gold``: the
    index of the right one) for multiple-choice accuracy."""
    rng = random.Random(f"evaluation-{seed}")
    rows = []
    for i, problem in enumerate(_distinct_problems(rng, n, exclude)):
        choices = _distractors(problem.answer, rng)
        gold = rng.randrange(len(choices) + 1)
        choices.insert(gold, problem.answer)
        rows.append({"id": f"eval-{i:04d}", "question": problem.question, "answer": _worked_answer(problem),
                     "final_answer": problem.answer, "choices": choices, "gold": gold})
    return rows


def write_reference_set(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(_jsonl_bytes(rows))


def write_demo_data(crawl_dir: Path, reference_path: Path, seed: int = 0, n_documents: int = 6000) -> DemoCorpus:
    """The demo crawls and the reference set (disjoint from every math question in the crawls)."""
    corpus = write_demo_crawls(crawl_dir, seed, n_documents)
    write_reference_set(reference_path, generate_reference_set(seed, exclude=corpus.math_questions))
    return corpus


def _generated_rows(crawl_dir: Path) -> Iterator[tuple[str, dict]]:
    """(id, meta) of every generated row readable in the crawl files (broken rows are skipped)."""
    for path in sorted(Path(crawl_dir).rglob("*")):
        if path.name.endswith(".parquet"):
            for row in pq.read_table(path, columns=["id", "meta"]).to_pylist():
                yield str(row["id"]), json.loads(row["meta"])
        elif path.name.endswith((".jsonl", ".jsonl.gz")):
            opener = gzip.open if path.name.endswith(".gz") else open
            with opener(path, "rb") as f:
                for line in f:
                    try:
                        row = json.loads(line)
                        yield str(row["id"]), dict(row["meta"])
                    except (ValueError, KeyError, TypeError):
                        continue


def kinds_by_doc_id(crawl_dir: Path) -> dict[str, str]:
    """The generator's ``meta.kind`` of every generated row, read back from the crawl files (benchmarks
    use it to score selection; the pipeline never does)."""
    return {row_id: meta["kind"] for row_id, meta in _generated_rows(crawl_dir)}


def relevant_doc_ids(crawl_dir: Path, relevant: frozenset[str] = RELEVANT_KINDS) -> set[str]:
    """Ids of the generated rows relevant to the goal: kinds in ``relevant`` (the demo's: :data:`RELEVANT_KINDS`),
    and near-duplicates or re-crawled copies of such rows (benchmarks use it to score selection; the pipeline never
    does)."""
    return {row_id for row_id, meta in _generated_rows(crawl_dir)
            if meta.get("kind") in relevant or meta.get("source_kind") in relevant}
