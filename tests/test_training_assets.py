"""qa_dataset -> fine_tuned_model -> eval_scores materialized in process from the Definitions, on a small store and a
tiny local model; lineage then reaches the models and their scores."""

import json

import dagster as dg

from equal_dagster.cli import main
from equal_dagster.core.extraction import Document
from equal_dagster.core.extraction.extractor import RuleExtractor
from equal_dagster.core.lineage import format_lineage, qa_lineage
from equal_dagster.core.rounds import write_extraction_round
from equal_dagster.core.store import Store
from equal_dagster.definitions import build_definitions
from equal_dagster.demo.corpus import generate_eval_set, generate_reference_set
from equal_dagster.demo.tiny_model import build_tiny_causal_lm
from equal_dagster.resources.evaluator import EvaluatorResource
from equal_dagster.resources.llm import ExtractionResource
from equal_dagster.resources.trainer import TrainerResource


def stale_status(defs, instance) -> dict[str, str]:
    """What the UI shows for the assets after bandit_rounds: FRESH or STALE (Dagster's data versions)."""
    from dagster._core.definitions.data_version import CachingStaleStatusResolver
    from dagster._core.loader import LoadingContextForTest

    resolver = CachingStaleStatusResolver(instance, defs.resolve_asset_graph(), LoadingContextForTest(instance))
    return {key: resolver.get_status(dg.AssetKey(key)).value for key in ("qa_dataset", "fine_tuned_model", "eval_scores")}


def metadata(result, node):
    return {k: v.value for k, v in result.asset_materializations_for_node(node)[0].metadata.items()}


def test_dataset_model_and_scores_through_dagster(paths, capsys):
    problems = generate_reference_set(1, n=60)
    evaluation = generate_eval_set(0, n=12, exclude={p["question"] for p in problems})
    documents = [Document(f"doc-{i:03d}", f"Problem: {p['question']}\nSolution: {p['answer']}") for i, p in enumerate(problems)]
    # one planted evaluation question, to be caught by decontamination
    documents.append(Document("leak", f"Problem: {evaluation[0]['question']}\nSolution: {evaluation[0]['answer']}"))
    with Store.open(paths.store) as store:
        run = RuleExtractor().extract(documents[:20])
        write_extraction_round(store, "round-0", 0, "warmup", run, seed=0, dagster_run_id="warmup-run")
        run = RuleExtractor().extract(documents[20:])
        write_extraction_round(store, "r0001", 1, "equal_ucb", run, seed=0, dagster_run_id="round-run")
    eval_file = paths.home / "evaluation" / "eval.jsonl"
    eval_file.parent.mkdir(parents=True)
    eval_file.write_text("".join(json.dumps(r) + "\n" for r in evaluation))
    base = build_tiny_causal_lm(paths.home / "models" / "base", [p["question"] + " " + p["answer"] for p in problems])
    trainer = TrainerResource(base_model=str(base), models_dir=str(paths.home / "models"), method="full",
                              learning_rate=3e-3, epochs=4, batch_size=8, max_length=256)
    evaluator = EvaluatorResource(eval_data=str(eval_file), tasks_dir=str(paths.home / "eval_tasks"), task_prefix="demo")
    defs = build_definitions(paths, llm=ExtractionResource(), trainer=trainer, evaluator=evaluator)
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("rounds", ["r0001"])  # the round written above, as bandit_rounds records it
        instance.report_runless_asset_event(dg.AssetMaterialization("bandit_rounds", partition="r0001",
                                                                    tags={"dagster/data_version": "r0001"}))
        built = defs.resolve_job_def("build_dataset").execute_in_process(instance=instance)
        dataset = metadata(built, "qa_dataset")
        # the planted question, and one whose templated ending shares 13 words with an evaluation question
        assert dataset["pairs_scored"] == 61 and "| contaminated | 2 |" in dataset["by_reason"]
        assert "data:image/png;base64," in dataset["score_histogram"]
        tuned = defs.resolve_job_def("fine_tune").execute_in_process(
            instance=instance, run_config={"ops": {"fine_tuned_model": {"config": {"pairs_from": "rounds"}}}})
        model = metadata(tuned, "fine_tuned_model")
        assert model["examples"] == 40 and model["last_logged_loss"] < model["first_logged_loss"]
        scored = defs.resolve_job_def("evaluate").execute_in_process(instance=instance)
        scores = metadata(scored, "eval_scores")
        # a round that lands after the dataset was built makes Dagster show qa_dataset stale (in the UI); the model
        # follows once qa_dataset is rebuilt, its scores once the model is (Dagster marks the assets whose own inputs
        # changed)
        assert stale_status(defs, instance) == {"qa_dataset": "FRESH", "fine_tuned_model": "FRESH", "eval_scores": "FRESH"}
        instance.add_dynamic_partitions("rounds", ["r0002"])
        instance.report_runless_asset_event(dg.AssetMaterialization("bandit_rounds", partition="r0002",
                                                                    tags={"dagster/data_version": "r0002"}))
        assert stale_status(defs, instance)["qa_dataset"] == "STALE"
        defs.resolve_job_def("build_dataset").execute_in_process(instance=instance)
        assert stale_status(defs, instance) == {"qa_dataset": "FRESH", "fine_tuned_model": "STALE", "eval_scores": "FRESH"}
    # the data rules ran as asset checks beside each asset, and hold
    checks = {c.check_name: c for r in (built, tuned, scored) for c in r.get_asset_check_evaluations()}
    assert set(checks) == {"no_contaminated_pair", "no_duplicate_pair", "drop_share_per_reason", "loss_fell",
                           "scored_on_the_same_items"}
    assert all(c.passed for c in checks.values()), {n: c.description for n, c in checks.items()}
    assert scores["models"] == ["base:base", model["model_id"]]
    assert f"| {model['model_id']} - base:base |" in scores["scores"] and "| demo_nll | nll |" in scores["scores"]
    assert "data:image/png;base64," in model["loss_curve"]  # the loss as a plot
    with Store.open(paths.store, read_only=True) as store:
        rows = store.eval_scores()
        models = store.models()
        kept_round_pair = store.kept_pairs().filter(store.kept_pairs()["round_id"] == "r0001")["qa_id"][0]
        chain = qa_lineage(store, kept_round_pair)
        leak = store.qa_pairs().filter(store.qa_pairs()["doc_id"] == "leak").to_dicts()[0]
    assert models["model_id"].to_list() == [model["model_id"]] and models["dataset_hash"][0] == model["dataset_hash"]
    card = json.loads((paths.home / "models" / model["model_id"] / "training.json").read_text())
    assert card["report"]["dataset_hash"] == model["dataset_hash"]  # the card and the models row name one dataset
    assert set(rows["model_id"]) == {"base:base", model["model_id"]}
    assert {("demo_nll", "nll"), ("demo_mc", "acc")} <= set(zip(rows["task"], rows["metric"]))
    nll = {m: rows.filter((rows["model_id"] == m) & (rows["metric"] == "nll"))["value"][0] for m in set(rows["model_id"])}
    assert nll[model["model_id"]] < nll["base:base"]  # trained on worked answers: the gold answers are likelier
    assert leak["kept"] is False and leak["drop_reason"] == "contaminated"
    assert chain["quality"]["kept"] is True and chain["models"][0]["model_id"] == model["model_id"]
    assert "demo_nll/nll" in chain["models"][0]["eval_scores"]

    # a round played after the dataset was built: the export says its pairs are not in it (qa_dataset is stale)
    with Store.open(paths.store) as store:
        write_extraction_round(store, "r0002", 2, "equal_ucb", RuleExtractor().extract(documents[:3]), seed=0,
                               dagster_run_id="late-run")
    assert main(["--home", str(paths.home), "export", "--format", "alpaca", "--out", str(paths.home / "export"),
                 "--json"]) == 0
    captured = capsys.readouterr()
    assert "3 QA pairs harvested since qa_dataset was last built are not scored" in captured.err
    exported = json.loads(captured.out)  # --json: the files, the count and the dataset's hash
    assert exported["pairs"] > 0 and exported["files"]["alpaca"].endswith("qa_dataset.alpaca.jsonl")
    assert len(exported["dataset_hash"]) == 64
    assert f"model       {model['model_id']}" in format_lineage(chain)


def test_eval_table_compares_each_model_with_the_base_and_equal_ucb_with_random():
    from equal_dagster.assets.training import score_rows

    results = {"base:b": {("t", "acc"): 0.50}, "demo-equal_ucb": {("t", "acc"): 0.70}, "demo-random": {("t", "acc"): 0.55}}
    header, rows = score_rows(results, "base:b")
    assert header[-3:] == ["demo-equal_ucb - base:b", "demo-random - base:b", "demo-equal_ucb - demo-random"]
    assert rows == [["t", "acc", "0.5000", "0.7000", "0.5500", "+0.2000", "+0.0500", "+0.1500"]]
