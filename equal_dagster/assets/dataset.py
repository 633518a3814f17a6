"""Asset ``qa_dataset``: every harvested QA pair scored (InstructMining), filtered, de-duplicated, decontaminated,
selected and exported."""

from typing import Optional

import dagster as dg
from pydantic import Field

from equal_dagster.assets.extraction import warmup_extractions
from equal_dagster.assets.metadata import markdown_table, png_markdown, store_snapshot
from equal_dagster.assets.rounds import bandit_rounds
from equal_dagster.core.export import FORMATS
from equal_dagster.core.qa_dataset import DatasetParams, build_qa_dataset
from equal_dagster.resources.embedder import EmbedderResource
from equal_dagster.resources.evaluator import EvaluatorResource
from equal_dagster.resources.store import StoreResource


class QADatasetConfig(dg.Config):
    top_k: Optional[int] = Field(None, description="keep the k best-scored pairs (after the filters)")
    threshold: Optional[float] = Field(None, description="keep pairs scoring at least this")
    formats: list[str] = Field(default_factory=lambda: list(FORMATS), description="chat | alpaca | sharegpt | parquet")
    reinstruct_filter: bool = Field(True, description="REInstruct's post-filter rules")
    near_duplicate_threshold: float = Field(0.8, description="MinHash estimated Jaccard at which a pair is a near duplicate")
    ngram: int = Field(13, description="decontamination: word n-gram size shared with an evaluation item")
    reward_model: Optional[str] = Field(None, description="folder of a reward model (InstructMining's Rew)")
    perplexity_model: Optional[str] = Field(None, description="folder of a reference causal LM (perplexity)")
    unieval_model: Optional[str] = Field(None, description="folder of a UniEval dialogue model (naturalness, "
                                                          "coherence, understandability)")
    length_tokenizer: Optional[str] = Field(None, description="count lengths (the rule's Len) in this tokenizer's "
                                                             "tokens, such as the base model's (default: words)")
    rule: str = Field("rew_len_knn", description="InstructMining's fit that gives the quality score: rew_len_knn "
                      "(reward, response length, kNN-6 distance) or rew_unieval (reward and UniEval's scores; needs "
                      "unieval_model)")
    system_prompt: Optional[str] = Field(None, description="a system message for the chat and ShareGPT exports")


def score_histogram(scores: list[float]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6.4, 3.0))
    axis.hist(scores, bins=30, color="tab:green")
    axis.set_xlabel("quality score (InstructMining, higher is better)")
    axis.set_ylabel("QA pairs")
    figure.tight_layout()
    markdown = png_markdown(figure, "quality score histogram")
    plt.close(figure)
    return markdown


@dg.asset(
    deps=[warmup_extractions, bandit_rounds],
    group_name="dataset",
    kinds={"duckdb", "parquet"},
    pool="duckdb",
    description=(
        "Every QA pair scored with InstructMining's indicators and rule, then REInstruct's post-filter, exact and "
        "near-duplicate removal, n-gram decontamination against the evaluation data, and top-k / threshold selection; "
        "scores and reasons go back into `qa_pairs`, the kept pairs to JSONL (chat, Alpaca, ShareGPT) and Parquet."
    ),
)
def qa_dataset(context: dg.AssetExecutionContext, config: QADatasetConfig, store: StoreResource,
               embedding_model: EmbedderResource, evaluator: EvaluatorResource) -> dg.MaterializeResult:
    try:
        params = DatasetParams(
            top_k=config.top_k, threshold=config.threshold, near_duplicate_threshold=config.near_duplicate_threshold,
            ngram=config.ngram, reinstruct_filter=config.reinstruct_filter, reward_model=config.reward_model,
            perplexity_model=config.perplexity_model, unieval_model=config.unieval_model,
            length_tokenizer=config.length_tokenizer, rule=config.rule, formats=tuple(config.formats), system_prompt=config.system_prompt,
        )
        evaluation_texts = evaluator.evaluation_texts()
    except ValueError as exc:
        raise dg.Failure(description=str(exc)) from exc
    out_dir = store.files_dir() / "datasets"
    with store.open_store() as db:
        try:
            report = build_qa_dataset(db, embedding_model.load_current(), evaluation_texts, params, out_dir,
                                      log=context.log.info)
        except ValueError as exc:
            raise dg.Failure(description=str(exc)) from exc
        snapshot = store_snapshot(db)
    reasons = markdown_table(["kept or dropped", "QA pairs"],
                             [("kept", report.kept)] + sorted(report.dropped.items(), key=lambda kv: -kv[1]))
    return dg.MaterializeResult(metadata={
        "dagster/row_count": report.kept,
        **snapshot,
        "pairs_scored": report.pairs,
        "pairs_kept": report.kept,
        "by_reason": dg.MetadataValue.md(reasons),
        "dataset_hash": report.dataset_hash,
        "files": dg.MetadataValue.json(report.files),
        "evaluation_texts_guarded": len(evaluation_texts),
        "quality_rule": config.rule,
        "indicators_missing": "; ".join(report.missing_indicators),
        "score_histogram": dg.MetadataValue.md(score_histogram(report.scores) if report.scores else "no score"),
        "best_pairs": dg.MetadataValue.md(markdown_table(
            ["qa_id", "round", "score", "question", "answer"],
            [(p["qa_id"], p["round_id"], f"{p['quality_score']:.4f}" if p["quality_score"] is not None else "",
              p["question"][:100], p["answer"][:140]) for p in report.kept_preview])),
        "seconds": report.seconds,
    })
