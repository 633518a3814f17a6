"""Asset ``warmup_extractions``: EQUAL's warm-up, a seeded random sample of the corpus extracted as round 0."""

from typing import Optional

import dagster as dg
from pydantic import Field

from equal_dagster.assets.corpus import corpus
from equal_dagster.assets.metadata import check_result, markdown_table, store_snapshot
from equal_dagster.core.store import column_schema
from equal_dagster.core.checks import statuses_recorded
from equal_dagster.core.extraction import STATUSES, StoreResponseCache
from equal_dagster.core.rounds import WARMUP_ROUND_ID, RoundFailed
from equal_dagster.core.warmup import (
    WARMUP_FRACTION,
    WARMUP_MAX_BUDGET_SHARE,
    WARMUP_MAX_DOCUMENTS,
    WarmupReport,
    run_warmup,
)
from equal_dagster.resources.bandit import BanditResource
from equal_dagster.resources.compute import ComputeResource
from equal_dagster.resources.llm import ExtractionResource
from equal_dagster.resources.store import StoreResource


class WarmupConfig(dg.Config):
    fraction: float = Field(WARMUP_FRACTION, description="share of the corpus to extract (EQUAL: 5%)")
    max_documents: int = Field(WARMUP_MAX_DOCUMENTS, description="cap on the sample, whatever the corpus size")
    max_budget_share: float = Field(WARMUP_MAX_BUDGET_SHARE,
                                    description="cap on the sample as a share of the bandit's document budget")
    seed: int = Field(0, description="sampling seed: the same seed over the same corpus gives the same sample")
    strategy: Optional[str] = Field(None, description="equal | reinstruct; default: the llm resource's")
    refine: Optional[bool] = Field(None, description="EQUAL's refine pass; default: the llm resource's")


def extraction_metadata(report: WarmupReport, qa_preview: list[dict], qa_columns: dict[str, str]) -> dict:
    totals = report.run.totals()
    first = report.run.results[0] if report.run.results else None
    status_md = markdown_table(["status", "documents"], [(s, totals["status"][s]) for s in STATUSES])
    counters_md = markdown_table(["counter", "value"], sorted(totals["counters"].items()))
    preview_md = markdown_table(
        ["doc_id", "question", "answer"],
        [(row["doc_id"], row["question"][:120], row["answer"][:160]) for row in qa_preview],
    )
    return {
        "dagster/row_count": report.qa_pairs_written,
        "dagster/column_schema": dg.TableSchema(columns=[dg.TableColumn(n, t, description=d)
                                                         for n, t, d in column_schema("qa_pairs", qa_columns)]),
        "round_id": WARMUP_ROUND_ID,
        "corpus_documents": report.corpus_documents,
        "documents_sampled": report.sampled,
        "qa_pairs": report.qa_pairs_written,
        "backend": first.backend if first else "",
        "model": (first.model or "") if first else "",
        "strategy": first.strategy if first else "",
        "prompt_version": (first.prompt_version or "") if first else "",
        "calls": totals["calls"],
        "backend_calls": totals["backend_calls"],
        "cache_hits": totals["cache_hits"],
        "retries": totals["retries"],
        "tokens_in": totals["tokens_in"],
        "tokens_out": totals["tokens_out"],
        "parse_errors": totals["failures"]["parse_error"],
        "backend_errors": totals["failures"]["backend_error"],
        "timeouts": totals["failures"]["timeout"],
        "documents_by_status": dg.MetadataValue.md(status_md),
        "why_no_pairs": totals["why_no_pairs"],  # null when pairs were found
        "counters": dg.MetadataValue.md(counters_md),
        "documents_per_second": totals["documents_per_second"] or 0.0,
        "preview": dg.MetadataValue.md(preview_md),
    }


@dg.asset(
    deps=[corpus],
    group_name="extract",
    kinds={"duckdb", "python"},
    pool="duckdb",
    description=(
        "EQUAL's warm-up: a seeded random sample of the corpus (default 5%, at most a fifth of the budget) "
        "extracted with the configured backend and stored as round 0 (`extractions`, `qa_pairs`, `rounds`). Calls "
        "already paid for come from `llm_cache`; re-materializing replaces round 0."
    ),
    check_specs=[dg.AssetCheckSpec("every_document_has_a_status", asset="warmup_extractions", blocking=True,
                                   description="every sampled document has an extraction status")],
)
def warmup_extractions(
    context: dg.AssetExecutionContext, config: WarmupConfig, store: StoreResource, llm: ExtractionResource,
    bandit: BanditResource, compute: ComputeResource,
) -> dg.MaterializeResult:
    try:
        settings = bandit.round_settings()
    except ValueError as exc:
        raise dg.Failure(description=str(exc)) from exc
    with store.open_store() as db:
        extractor = llm.build_extractor(StoreResponseCache(db), log=context.log.info, strategy=config.strategy,
                                        refine=config.refine, ray=compute.ray_settings())
        try:
            report = run_warmup(db, extractor, fraction=config.fraction, max_documents=config.max_documents,
                                budget_documents=settings.budget.document_limit(db.document_count()),
                                max_budget_share=config.max_budget_share, seed=config.seed,
                                max_failure_share=settings.max_failure_share,
                                dagster_run_id=context.run_id, log=context.log.info)
        except (ValueError, RoundFailed) as exc:
            raise dg.Failure(description=str(exc)) from exc
        preview = db.qa_pairs(WARMUP_ROUND_ID).head(5).to_dicts()
        columns = db.column_types("qa_pairs")
        statuses = statuses_recorded(db, WARMUP_ROUND_ID, report.sampled)
        snapshot = store_snapshot(db)
    totals = report.run.totals()
    context.log.info(
        f"warm-up round {WARMUP_ROUND_ID}: {report.sampled:,} documents, {report.qa_pairs_written:,} QA pairs, "
        f"status {totals['status']}, {totals['backend_calls']:,} backend calls, {totals['cache_hits']:,} cache hits, "
        f"{totals['tokens_in']:,} tokens in / {totals['tokens_out']:,} out, counters {totals['counters']}"
    )
    return dg.MaterializeResult(metadata={**extraction_metadata(report, preview, columns), **snapshot},
                                check_results=[check_result("every_document_has_a_status", statuses, blocking=True)])
