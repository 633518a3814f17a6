import hashlib
import json
from collections import Counter
from pathlib import Path

from equal_dagster.demo.corpus import CRAWL_NAMES, RELEVANT_KINDS, kinds_by_doc_id, write_demo_data


def digest(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes_and_another_seed_differs(tmp_path):
    write_demo_data(tmp_path / "a" / "crawls", tmp_path / "a" / "ref.jsonl", seed=3, n_documents=800)
    write_demo_data(tmp_path / "b" / "crawls", tmp_path / "b" / "ref.jsonl", seed=3, n_documents=800)
    write_demo_data(tmp_path / "c" / "crawls", tmp_path / "c" / "ref.jsonl", seed=4, n_documents=800)
    assert digest(tmp_path / "a") == digest(tmp_path / "b")
    assert digest(tmp_path / "a") != digest(tmp_path / "c")


def test_demo_corpus_is_large_varied_and_labelled(tmp_path):
    corpus = write_demo_data(tmp_path / "crawls", tmp_path / "ref.jsonl")
    assert sorted(p.name for p in (tmp_path / "crawls").iterdir()) == list(CRAWL_NAMES)
    assert sum(corpus.kinds.values()) >= 5000
    content_kinds = {k for k in corpus.kinds if k not in {"broken", "near_duplicate", "recrawl"}}
    assert len(content_kinds) >= 10, corpus.kinds
    assert {"broken", "near_duplicate", "non_english", "boilerplate"} <= set(corpus.kinds)
    # the kind labels can be read back from the files (benchmarks do), for every parseable row
    kinds = kinds_by_doc_id(tmp_path / "crawls")
    assert len(kinds) >= 5000 and RELEVANT_KINDS <= set(kinds.values())
    # varied wording: math pages use many templates, and few pages of a kind share their first line
    math_texts = [json.loads(line)["text"] for line in (tmp_path / "crawls" / CRAWL_NAMES[0] / "part-00000.jsonl").open(errors="replace")
                  if '"math_problem"' in line]
    assert len({t.split("\n")[0] for t in math_texts}) >= 5
    assert len(set(math_texts)) > 0.95 * len(math_texts)


def test_reference_set_is_disjoint_from_the_corpus(tmp_path):
    corpus = write_demo_data(tmp_path / "crawls", tmp_path / "ref.jsonl")
    reference = [json.loads(line) for line in (tmp_path / "ref.jsonl").open()]
    assert len(reference) >= 100
    assert all(r["question"] and "The answer is" in r["answer"] for r in reference)
    assert not {r["question"] for r in reference} & corpus.math_questions
    corpus_text = "\n".join(p.read_text(errors="replace") for p in (tmp_path / "crawls").rglob("*.jsonl"))
    assert not any(r["question"] in corpus_text for r in reference)
    assert len(Counter(r["template"] for r in reference)) >= 10
