"""`equal demo` end to end on a temporary home: data written, crawls materialized on a persistent instance."""

import json

import dagster as dg

from equal_dagster.cli import main
from equal_dagster.core.settings import EqualPaths
from equal_dagster.core.store import Store
from equal_dagster.demo.corpus import CRAWL_NAMES
from equal_dagster.demo.real_text import REAL_CRAWL


def test_equal_demo_materializes_the_demo_crawls(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("EQUAL_CRAWL_DIR", raising=False)
    # 1,050 rows rather than the default 6,000: the same stages, a sixth of the generated pages to embed, and
    # smaller rounds and fine-tunes (a 24-document warm-up, 11 rounds of at most 9 documents)
    assert main(["--home", str(tmp_path / "home"), "demo", "--documents", "1050"]) == 0
    captured = capsys.readouterr()
    out = captured.out
    # the console: the summary on stdout; on stderr the log file's path and warnings only (no Dagster events, no
    # trainer steps, no progress bars: they are in the log file)
    log = next((tmp_path / "home" / "logs").glob("*-demo.log"))
    assert captured.err.startswith(f"equal demo: the full log is {log}\n")
    assert all(line.startswith("warning: ") for line in captured.err.splitlines()[1:]), captured.err
    assert "it/s]" not in captured.err + out and "{'loss'" not in captured.err + out
    logged = log.read_text()
    assert "[STEP_START]" in logged and "loss" in logged and "fine_tuned_model: " in logged
    assert "| crawl | rows read | documents | duplicates | quarantined |" in out
    assert "warm-up (round 0):" in out and "| ok |" in out
    assert "| cluster | size | top terms | sample first lines |" in out
    paths = EqualPaths.from_env(tmp_path / "home")
    with Store.open(paths.store, read_only=True) as store:
        counts = {c.crawl_id: c for c in store.crawl_counts()}
    assert set(counts) == {*CRAWL_NAMES, REAL_CRAWL}  # the generated crawls, and the READMEs installed here
    assert counts[REAL_CRAWL].documents > 100 and "on the real crawl (real-readmes): " in out
    assert sum(c.documents for c in counts.values()) > 1000  # the 1,050 rows less duplicates and quarantined, + READMEs
    assert counts[CRAWL_NAMES[1]].quarantined["duplicate"] > 0  # re-crawled pages of the first crawl
    for reason in ("invalid_json", "not_an_object", "not_utf8", "missing_text", "empty_text", "id_conflict"):
        assert sum(c.quarantined.get(reason, 0) for c in counts.values()) > 0, reason
    # the runs live on the home's persistent instance, where `make ui` finds them
    instance = dg.DagsterInstance.from_config(str(paths.dagster_home))
    runs = instance.get_runs()
    assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)
    jobs = sorted(r.job_name for r in runs if r.job_name != "bandit_round")
    assert jobs == ["build_dataset", "cluster", "embed_crawl", "embed_crawl", "embed_crawl", "evaluate", "fine_tune",
                    "fine_tune", "ingest_crawl", "ingest_crawl", "ingest_crawl", "tune_embedder", "warmup"]
    assert sorted(instance.get_dynamic_partitions("crawls")) == sorted([*CRAWL_NAMES, REAL_CRAWL])

    # the warm-up: 5% of the corpus, at most a fifth of the budget (10%), through the rules backend, as round 0
    with Store.open(paths.store, read_only=True) as store:
        extractions = store.extractions("round-0")
        pairs = store.qa_pairs("round-0")
        rounds = store.rounds()
    total = sum(c.documents for c in counts.values())
    assert extractions.height == min(-(-total * 5 // 100), total * 10 // 100 // 5)
    assert "round shape, from the data: 1 arm(s) x " in out  # the defaults: 5% of the arms is fewer than one
    assert set(extractions["backend"]) == {"rules"} and set(extractions["prompt_version"]) == {"rules/v2"}
    assert pairs.height >= 5 and set(pairs["doc_id"]) <= set(extractions["doc_id"])  # 24 documents, 2% of the corpus
    assert f" documents sampled, {pairs.height} QA pairs extracted" in out  # what the console said is what was stored
    assert rounds["round_id"][0] == "round-0" and rounds["policy"][0] == "warmup"
    # every document embedded and in exactly one cluster
    with Store.open(paths.store, read_only=True) as store:
        clustering = store.current_clustering()
        current = json.loads((paths.home / "embedders" / "current.json").read_text())
        assert store.embedding_counts() == {current["embedder_id"]: total}
        assert clustering["embedder_id"] == current["embedder_id"]
        assert store.clusters(clustering["clustering_id"])["doc_id"].n_unique() == total

    # bandit rounds until the budget (10% of the corpus, the warm-up included) is spent
    assert "| round | arms chosen (why, score) | documents | QA pairs | reward | documents spent |" in out
    with Store.open(paths.store, read_only=True) as store:
        rounds = store.rounds()
        played = rounds.filter(rounds["round_no"] >= 1)
    assert int(rounds["docs_spent"].sum()) == total * 10 // 100
    assert played.height >= 5 and set(played["policy"]) == {"equal_ucb"}
    assert sum(r.job_name == "bandit_round" for r in runs) == played.height
    assert sorted(instance.get_dynamic_partitions("rounds")) == played["round_id"].to_list()
    qa_id = out.split("equal lineage ")[1].split()[0]
    assert main(["--home", str(tmp_path / "home"), "lineage", qa_id]) == 0
    assert "round       r00" in capsys.readouterr().out

    # the QA dataset, two tiny models trained on as many pairs each, and lm-eval scores for them and the base
    assert "| model | model_id | training pairs | train loss | gold-answer NLL (nats) | NLL per char | MC accuracy |" in out
    with Store.open(paths.store, read_only=True) as store:
        scored = set(store.eval_scores()["model_id"])
        models = store.models()
        kept = store.kept_pairs().height
    assert scored == {"base:base", "demo-equal_ucb", "demo-random"}
    examples = [json.loads(c)["examples"] for c in models["training_config"]]
    assert len(examples) == 2 and examples[0] == examples[1] > 0
    assert main(["--home", str(tmp_path / "home"), "export", "--format", "alpaca", "parquet", "--out",
                 str(tmp_path / "export")]) == 0
    assert f"{kept} pairs, dataset hash " in capsys.readouterr().out
    assert (tmp_path / "export" / "qa_dataset.alpaca.jsonl").read_text().count("\n") == kept
