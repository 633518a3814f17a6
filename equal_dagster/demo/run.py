"""`equal demo`: write the demo data into EQUAL_HOME and materialize the pipeline through Dagster's API on
the home's persistent instance, so that the runs show up afterwards in `make ui`."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from dataclasses import dataclass

from equal_dagster.assets.metadata import markdown_table
from equal_dagster.core.rounds import round_key, round_records
from equal_dagster.core.settings import EqualPaths
from equal_dagster.core.store import Store
from equal_dagster.definitions import build_definitions
from equal_dagster.demo.corpus import CRAWL_NAMES, DemoCorpus, generate_eval_set, write_demo_data
from equal_dagster.demo.real_text import REAL_CRAWL, write_real_crawl
from equal_dagster.demo.tiny_model import build_tiny_causal_lm
from equal_dagster.headless import Stage, execute_job, materialization_metadata, play_rounds, run_stages_before_rounds
from equal_dagster.instance import persistent_instance, release_dead_runs
from equal_dagster.resources.bandit import BanditResource
from equal_dagster.resources.evaluator import EvaluatorResource
from equal_dagster.resources.llm import ExtractionResource
from equal_dagster.resources.trainer import TrainerResource

# The demo's model: a tiny Llama (64 hidden units, 2 layers) built from a config with a tokenizer trained on the demo
# corpus, fully fine-tuned (LoRA on a randomly initialised model this small learns too slowly to show anything).
DEMO_TRAINING = {"method": "full", "learning_rate": 3e-3, "epochs": 24, "batch_size": 8, "max_length": 256}
DEMO_EVAL_ITEMS = 60


@dataclass
class CrawlSummary:
    crawl_id: str
    rows_read: int
    documents_kept: int
    duplicates: int
    quarantined: int
    run_id: str


@dataclass
class WarmupSummary:
    documents_sampled: int
    qa_pairs: int
    status_table: str
    run_id: str


def _arm_cell(arm: dict) -> str:
    score = "" if arm["score"] is None else f" {arm['score']:.3f}"
    return f"{arm['arm']} ({arm['reason']}{score})"


def rounds_table(store: Store) -> str:
    """One line per bandit round, from the store: arms chosen (why, score), documents, QA pairs, reward, spend."""
    rows, spent = [], 0
    for record in round_records(store.rounds()):
        spent += record.docs_spent
        if record.round_no < 1:
            continue
        reward = record.summary.get("reward")
        rows.append((record.round_id, ", ".join(_arm_cell(a) for a in record.arms), record.docs_spent,
                     record.summary.get("qa_pairs", ""), f"{reward:.3f}" if reward is not None else "", spent))
    return markdown_table(["round", "arms chosen (why, score)", "documents", "QA pairs", "reward", "documents spent"], rows)


def write_eval_data(path: Path, generated: DemoCorpus, reference: Path, seed: int) -> int:
    """The held-out evaluation task: math problems in neither the corpus nor the reference set."""
    reference_questions = {json.loads(line)["question"] for line in reference.read_text().splitlines() if line.strip()}
    rows = generate_eval_set(seed, DEMO_EVAL_ITEMS, exclude=generated.math_questions | reference_questions)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))
    return len(rows)


def train_and_evaluate(defs, instance, paths: EqualPaths, generated: DemoCorpus, reference: Path, seed: int,
                       say: Callable[[str], None]) -> str:
    """qa_dataset, then three tiny models compared on the held-out task: the base (untrained), one trained on the pairs
    of the equal_ucb rounds, one on as many pairs of the warm-up (a uniform random sample of documents)."""
    evaluator, trainer = defs.resources["evaluator"], defs.resources["trainer"]
    n_eval = write_eval_data(Path(evaluator.eval_data), generated, reference, seed)
    base = Path(trainer.base_model)
    if not (base / "config.json").exists():
        texts = [row["text"] for rows in generated.crawls.values() for row in rows if isinstance(row, dict)]
        build_tiny_causal_lm(base, texts, seed=seed)
    say("materializing qa_dataset (InstructMining scores, filters, decontamination, exports) ...")
    dataset = materialization_metadata(execute_job(defs, "build_dataset", instance, say=say), "qa_dataset")
    say(f"qa_dataset: {dataset['pairs_kept']:,} of {dataset['pairs_scored']:,} pairs kept")
    say(dataset["by_reason"])
    with Store.open(paths.store, read_only=True) as store:
        kept = store.kept_pairs()
    from_rounds = kept.filter(kept["round_id"] != "round-0").height
    from_warmup = kept.filter(kept["round_id"] == "round-0").height
    n_pairs = min(from_rounds, from_warmup)
    say(f"fine-tuning the tiny model twice on {n_pairs} pairs each ({trainer.method}, {trainer.epochs:g} epochs): "
        "the equal_ucb rounds' best pairs, and the warm-up's (random documents) ...")
    trained = {}
    for label, source in (("equal_ucb", "rounds"), ("random", "warmup")):
        config = {"pairs_from": source, "max_pairs": n_pairs, "model_name": f"demo-{label}"}
        result = execute_job(defs, "fine_tune", instance, run_config={"ops": {"fine_tuned_model": {"config": config}}},
                             say=say)
        trained[label] = materialization_metadata(result, "fine_tuned_model")
    say(f"evaluating base and fine-tuned models with lm-eval on {n_eval} held-out problems ...")
    execute_job(defs, "evaluate", instance, say=say, run_config={"ops": {"eval_scores": {
        "config": {"model_ids": [m["model_id"] for m in trained.values()], "include_base": True}}}})
    with Store.open(paths.store, read_only=True) as store:
        scores = store.eval_scores()
    value = {(r["model_id"], r["metric"]): r["value"] for r in scores.iter_rows(named=True)}
    rows = [("base (untrained)", "base:base", 0, "")] + [
        (f"trained on {label} pairs", m["model_id"], m["examples"], f"{m['train_loss']:.3f}") for label, m in trained.items()]
    return markdown_table(
        ["model", "model_id", "training pairs", "train loss", "gold-answer NLL (nats)", "NLL per char", "MC accuracy"],
        [(name, model_id, n, loss, f"{value.get((model_id, 'nll'), float('nan')):.2f}",
          f"{value.get((model_id, 'nll_per_char'), float('nan')):.4f}", f"{value.get((model_id, 'acc'), float('nan')):.3f}")
         for name, model_id, n, loss in rows])


def run_demo(
    paths: EqualPaths, *, seed: int = 0, n_documents: int = 6000, say: Callable[[str], None] = print
) -> tuple[list[CrawlSummary], WarmupSummary]:
    say(f"EQUAL_HOME: {paths.home}")
    reference = paths.reference_dir / "reference.jsonl"
    generated = write_demo_data(paths.crawl_dir, reference, seed=seed, n_documents=n_documents)
    say(f"wrote {sum(generated.kinds.values()):,} demo rows of {len(generated.kinds)} kinds as {len(CRAWL_NAMES)} "
        f"crawls in {paths.crawl_dir}, and the reference set {reference}")
    readmes = write_real_crawl(paths.crawl_dir)
    say(f"and a real crawl, {REAL_CRAWL}: the READMEs of the {readmes} Python packages installed here (text no one "
        "here wrote)")
    crawls = [*CRAWL_NAMES, REAL_CRAWL]

    instance = persistent_instance(paths)
    release_dead_runs(instance, say)  # a demo killed earlier in this home must not hold the store
    bandit = BanditResource(reference=str(reference), seed=seed)  # the defaults: a user's first run
    trainer = TrainerResource(base_model=str(paths.home / "models" / "base"), models_dir=str(paths.home / "models"),
                              seed=seed, **DEMO_TRAINING)
    evaluator = EvaluatorResource(eval_data=str(paths.home / "evaluation" / "eval.jsonl"),
                                  tasks_dir=str(paths.home / "eval_tasks"), task_prefix="demo_math")
    defs = build_definitions(paths, llm=ExtractionResource(backend="rules"), bandit=bandit, trainer=trainer,
                             evaluator=evaluator)  # no model needed for extraction
    summaries: list[CrawlSummary] = []
    warmups: list[WarmupSummary] = []
    announcements = {
        "ingest": "materializing corpus[{crawl}] ...",
        "warm-up": f"materializing warmup_extractions (5% of the corpus, at most a fifth of the budget ({bandit.budget}), "
                   "rules backend) ...",
        "embedder": "materializing embedder (contrastive warm-up of all-MiniLM-L6-v2 on the warm-up pairs, about a "
                    "minute) ...",
        "embeddings": "materializing embeddings[{crawl}] (on CPU: about half a minute each) ...",
        "clusters": "materializing clusters (faiss k-means, one arm per 5 warm-up documents) ...",
    }

    def report(stage: Stage, crawl: str | None, result) -> None:
        """What the demo shows of each stage."""
        if stage.job == "ingest_crawl":
            metadata = materialization_metadata(result, "corpus")
            summaries.append(CrawlSummary(crawl, metadata["rows_read"], metadata["documents_kept"],
                                          metadata["duplicates"], metadata["quarantined"], result.run_id))
            if crawl == crawls[-1]:
                say("")
                say(markdown_table(
                    ["crawl", "rows read", "documents", "duplicates", "quarantined", "Dagster run"],
                    [(s.crawl_id, s.rows_read, s.documents_kept, s.duplicates, s.quarantined, s.run_id[:8])
                     for s in summaries]))
                say("")
        elif stage.job == "warmup":
            metadata = materialization_metadata(result, "warmup_extractions")
            warmup = WarmupSummary(metadata["documents_sampled"], metadata["qa_pairs"], metadata["documents_by_status"],
                                   result.run_id)
            warmups.append(warmup)
            say(f"warm-up (round 0): {warmup.documents_sampled:,} of {metadata['corpus_documents']:,} documents "
                f"sampled, {warmup.qa_pairs:,} QA pairs extracted")
            say(warmup.status_table)
            say("")
        elif stage.job == "tune_embedder":
            tuned = materialization_metadata(result, "embedder")
            say(f"embedder: {tuned['embedder_id']} ({tuned['reason']}); held-out recall from a document to its QA "
                "pairs:")
            say(tuned["held_out_recall"])
            say("")
        elif stage.job == "cluster":
            clusters = materialization_metadata(result, "clusters")
            say(f"clusters {clusters['clustering_id']}: {clusters['dagster/row_count']:,} documents in "
                f"{clusters['clusters']} clusters (the bandit's arms), assignments {clusters['assignments']}; the "
                "largest:")
            say("\n".join(clusters["clusters_table"].splitlines()[:12]))
            say("")

    run_stages_before_rounds(defs, instance, crawls, seed, recluster=False, say=say, on_result=report,
                             announce=lambda stage, crawl: announcements[stage.name].format(crawl=crawl))
    with Store.open(paths.store, read_only=True) as store:
        already = store.last_round_no()
    if already:  # a second `equal demo` in the same home: the rounds stand (they cannot be played again)
        say(f"bandit rounds already played in this home (r0001 to {round_key(already)}); `equal rounds N --budget 15%` "
            "plays more")
    else:
        say(f"playing bandit rounds ({bandit.policy}) until the budget ({bandit.budget} of the corpus, warm-up "
            "included) is spent ...")
        played = play_rounds(defs, instance, paths.store, None, say=lambda message: None)
        if played:
            shape = played[0]["round_shape"]
            say(f"round shape, from the data: {shape['arms_per_round']} arm(s) x {shape['docs_per_arm']} documents "
                f"a round ({shape['reason']})")
    with Store.open(paths.store, read_only=True) as store:
        say(rounds_table(store))
        real = store.crawl_harvest(REAL_CRAWL)
        last = store.last_round_no()
        # a pair of the latest round that found one (the last round can be short and find none)
        pairs = next((found for found in (store.qa_pairs_of_rounds([round_key(n)]) for n in range(last or 0, 0, -1))
                      if found.height), None)
    say(f"on the real crawl ({REAL_CRAWL}): {real['extracted']} of its {real['documents']} documents were drawn, "
        f"{real['qa_pairs']} QA pairs came from {real['with_pairs']} of them (the rules backend harvests only the Q&A a "
        "page carries, such as a README's FAQ section; an LLM backend writes pairs from the rest)")
    if pairs is not None and pairs.height:
        say(f"trace a QA pair back to its file, cluster and round: equal lineage {pairs['qa_id'][0]}")
    say("")
    say(train_and_evaluate(defs, instance, paths, generated, reference, seed, say))
    say("")
    say(f"store: {paths.store}")
    say("see the runs, assets and their metadata: make ui  (then open http://127.0.0.1:3000)")
    return summaries, warmups[-1]
