"""`equal run` (headless, one JSON summary) and `equal rounds` on a small demo corpus."""

import json
import os

from equal_dagster.cli import main
from equal_dagster.core.store import Store
from equal_dagster.demo.corpus import generate_reference_set, write_demo_crawls, write_reference_set


def test_equal_run_prints_one_json_summary_and_equal_rounds_goes_on(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("EQUAL_LLM_BACKEND", "rules")
    crawls, reference, home = tmp_path / "crawls", tmp_path / "reference.jsonl", tmp_path / "home"
    corpus = write_demo_crawls(crawls, seed=0, n_documents=500)  # 4 rounds of 10 documents after a 9-document warm-up
    good_crawls = sorted(p.name for p in crawls.iterdir())
    bad = os.path.join(os.fsencode(crawls), b"crawl-caf\xe9")  # a folder name that is not UTF-8: skipped, said so
    os.mkdir(bad)
    with open(os.path.join(bad, b"part.jsonl"), "w") as f:
        f.write('{"text": "a page"}\n')
    write_reference_set(reference, generate_reference_set(0, n=100, exclude=corpus.math_questions))
    arguments = ["run", "--crawl-dir", str(crawls), "--reference", str(reference), "--policy", "equal_ucb",
                 "--budget", "10%", "--seed", "3", "--no-tune", "--arms-per-round", "1", "--docs-per-arm", "10"]
    assert main(arguments + ["--home", str(home)]) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out)  # stdout holds the JSON alone
    documents = summary["corpus_documents"]
    assert summary["documents_extracted"] == documents * 10 // 100  # the budget, the warm-up's included
    assert summary["policy"] == "equal_ucb" and summary["seed"] == 3 and summary["crawls"] == good_crawls
    assert list(summary["skipped_crawls"]) == ["crawl-caf\\xe9"] and "not a crawl name" in captured.err
    assert summary["rounds"] >= 2 and summary["per_round"][0]["round_id"] == "round-0"
    assert summary["qa_pairs"] > 0 and 0 < summary["ot_distance_to_reference"] < 1
    assert summary["ot_embedder"] == "all-MiniLM-L6-v2"
    assert all(0 <= r["reward"] <= 1 for r in summary["per_round"][1:])
    with Store.open(home / "equal.duckdb", read_only=True) as store:
        assert store.rounds()["round_id"].to_list()[: summary["rounds"] + 1][-1] == f"r{summary['rounds']:04d}"
        assert json.loads(store.rounds()["config"][1])["bandit"]["seed"] == 3

    # the console: a short summary; every Dagster event in the command's log file, whose path it printed once
    logs = sorted((home / "logs").glob("*-run.log"))
    assert len(logs) == 1 and captured.err.count(str(logs[0])) == 1
    assert " - dagster - " not in captured.err and "STEP_START" not in captured.err and "Loading weights" not in captured.err
    logged = logs[0].read_text()
    assert "DEBUG" in logged and "STEP_START" in logged and "ingesting crawl" in logged

    # a home that already holds rounds is not reused: the user's mistake, said before any run is launched
    runs_before = len(os.listdir(home / "dagster" / "history" / "runs"))
    assert main(arguments + ["--home", str(home)]) == 2
    assert "already holds bandit rounds" in capsys.readouterr().err
    assert len(os.listdir(home / "dagster" / "history" / "runs")) == runs_before

    # `equal rounds` goes on with the last round's settings: refused while the budget is spent, then raised
    assert main(["--home", str(home), "rounds", "1"]) == 2
    assert "is spent" in capsys.readouterr().err
    assert main(["--home", str(home), "rounds", "1", "--budget", "10x"]) == 2  # a typo: one line, no run launched
    err = capsys.readouterr().err.strip()
    assert err.startswith("equal rounds: ") and "10x" in err and err.count("\n") == 0, err
    assert main(["--home", str(home), "lineage", "qa-nope", "--json"]) == 2
    error = json.loads(capsys.readouterr().out)
    assert error["qa_id"] == "qa-nope" and error["exit_code"] == 2 and "qa-nope" in error["error"]
    assert main(["--home", str(home), "rounds", "1", "--budget", "20%"]) == 0
    out = capsys.readouterr().out
    assert out.count(" documents, ") == 1 and f"r{summary['rounds'] + 1:04d}:" in out
    assert main(["--home", str(home), "rounds", "1", "--json"]) == 0  # machine-readable: one object per round
    (played,) = json.loads(capsys.readouterr().out)
    assert played["round_id"] == f"r{summary['rounds'] + 2:04d}" and played["documents"] > 0
    with Store.open(home / "equal.duckdb", read_only=True) as store:
        last = store.rounds().to_dicts()[-1]
    assert last["round_no"] == summary["rounds"] + 2 and json.loads(last["config"])["budget"]["share"] == 0.2
    assert json.loads(last["config"])["bandit"]["docs_per_arm"] == 10  # kept from the rounds before


def test_equal_run_takes_the_crawls_the_sensor_takes_a_file_directly_in_the_folder_included(tmp_path):
    """A crawl file in the crawl folder itself is one crawl for the new-crawl sensor; `equal run` plans the same."""
    from conftest import write_jsonl
    from equal_dagster.core.crawls import scan_crawl_folder
    from equal_dagster.headless import plan_run

    crawls, reference = tmp_path / "crawls", tmp_path / "reference.jsonl"
    write_jsonl(crawls / "pages.jsonl", [{"id": "a", "text": "one page of text"}])
    write_jsonl(crawls / "c2" / "part.jsonl", [{"id": "b", "text": "another page"}])
    write_reference_set(reference, generate_reference_set(0, n=20))
    plan = plan_run(crawls, reference, policy="equal_ucb", budget="10%", seed=0, home=tmp_path / "home",
                    say=lambda line: None)
    assert sorted(plan.crawls) == sorted(scan_crawl_folder(crawls, set(), settle_seconds=0).new) == ["c2", "pages.jsonl"]
