"""Asset ``embedder``: EQUAL's contrastive warm-up, the embedder tuned on the warm-up's (document, QA pair)
couples; it becomes the embedder that `embeddings` uses from then on."""

import dagster as dg
from pydantic import Field

from equal_dagster.assets.extraction import warmup_extractions
from equal_dagster.assets.metadata import check_result, markdown_table
from equal_dagster.core.checks import embedder_not_worse
from equal_dagster.core.contrastive import ContrastiveParams, TrainingPair, render_qa, tune_embedder
from equal_dagster.core.rounds import WARMUP_ROUND_ID
from equal_dagster.resources.embedder import EmbedderResource
from equal_dagster.resources.store import StoreResource


class EmbedderConfig(dg.Config):
    temperature: float = Field(0.02, description="InfoNCE temperature (EQUAL: 0.02); the loss scale is 1/temperature")
    epochs: int = Field(2, description="training epochs (EQUAL: 2)")
    learning_rate: float = 2e-5
    batch_size: int = 32
    held_out_fraction: float = Field(0.2, description="share of warm-up documents kept out of training for the check")
    min_pairs: int = Field(50, description="fewer warm-up QA pairs than this: keep the base embedder")
    hard_negatives: bool = Field(True, description="add a QA pair of the nearest other document as a negative")
    keep_base_if_worse: bool = Field(True, description="keep the base embedder if the tuned one recalls less")
    seed: int = 0


@dg.asset(
    deps=[warmup_extractions],
    group_name="embed",
    kinds={"pytorch"},
    pool="duckdb",
    description=(
        "EQUAL's contrastive step: the base sentence-transformers embedder fine-tuned (InfoNCE, "
        "MultipleNegativesRankingLoss) so that a document lands near its own warm-up QA pairs; saved under "
        "$EQUAL_HOME/embedders/<id> and used by `embeddings` from then on. Reports recall@1/@10 on held-out pairs."
    ),
    check_specs=[dg.AssetCheckSpec("not_worse_than_base", asset="embedder", blocking=True,
                                   description="the embedder in use recalls held-out QA pairs at least as well as the base")],
)
def embedder(context: dg.AssetExecutionContext, config: EmbedderConfig, store: StoreResource,
             embedding_model: EmbedderResource) -> dg.MaterializeResult:
    with store.open_store(read_only=True) as db:
        rows = db.qa_pairs_with_documents([WARMUP_ROUND_ID])
    pairs = [TrainingPair(r["doc_id"], r["text"], render_qa(r["question"], r["answer"])) for r in rows.iter_rows(named=True)]
    params = ContrastiveParams(**config.model_dump())
    base = embedding_model.load_base()
    report = tune_embedder(base, pairs, params, embedding_model.embedders_dir, log=context.log.info)
    embedding_model.set_current(report.location, report.embedder_id, report.reason)
    context.log.info(f"embedder: {report.embedder_id} ({report.reason}); recall {report.recall}")
    recall_md = markdown_table(
        ["embedder", "recall@1", "recall@10", "hit@1", "hit@10"],
        [(name, values.get("@1", ""), values.get("@10", ""), values.get("hit@1", ""), values.get("hit@10", ""))
         for name, values in report.recall.items()],
    ) if report.recall else "no held-out check (no training)"
    check = check_result("not_worse_than_base", embedder_not_worse(report.recall, report.embedder_id == base.embedder_id),
                         blocking=True)
    return dg.MaterializeResult(check_results=[check], metadata={
        "embedder_id": report.embedder_id,
        "trained": report.trained,
        "reason": report.reason,
        "warmup_pairs": report.pairs,
        "train_pairs": report.train_pairs,
        "held_out_pairs": report.held_out_pairs,
        "held_out_documents": report.held_out_documents,
        "loss_per_epoch": dg.MetadataValue.json(report.loss_per_epoch),
        "held_out_recall": dg.MetadataValue.md(recall_md),
        "path": dg.MetadataValue.path(report.location),
        "seconds": round(report.seconds, 1),
    })
