"""Asset ``bandit_rounds``: one EQUAL bandit round per ``rounds`` partition (r0001, r0002, ...)."""

import json

import dagster as dg
from pydantic import Field

from equal_dagster.assets.clusters import clusters
from equal_dagster.assets.extraction import warmup_extractions
from equal_dagster.assets.metadata import check_result, markdown_table, png_markdown, store_snapshot
from equal_dagster.core.checks import reward_in_range, statuses_recorded, within_budget
from equal_dagster.core.estimate import estimate_cost, format_estimate
from equal_dagster.core.extraction import StoreResponseCache
from equal_dagster.core.reward import ReferenceSetError
from equal_dagster.core.rounds import RoundFailed, RoundRefused, RoundReport, play_round, round_history, round_no_of
from equal_dagster.partitions import rounds_partitions
from equal_dagster.resources.bandit import BanditResource
from equal_dagster.resources.compute import ComputeResource
from equal_dagster.resources.embedder import EmbedderResource
from equal_dagster.resources.llm import ExtractionResource
from equal_dagster.resources.store import StoreResource


def reward_plot(history: list[dict]) -> str:
    """Reward and QA yield per round (the warm-up as round 0), as an inline PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rounds = [h["round_no"] for h in history]
    figure, reward_axis = plt.subplots(figsize=(6.4, 3.2))
    reward_axis.plot(rounds, [h["reward"] if h["reward"] is not None else float("nan") for h in history],
                     marker="o", color="tab:blue", label="round reward (1 - W)")
    reward_axis.set_xlabel("round")
    reward_axis.set_ylabel("reward", color="tab:blue")
    reward_axis.set_ylim(0, 1)
    yield_axis = reward_axis.twinx()
    yield_axis.bar(rounds, [h["qa_yield"] for h in history], alpha=0.3, color="tab:orange", label="QA pairs / document")
    yield_axis.set_ylabel("QA pairs per document", color="tab:orange")
    reward_axis.set_title("Reward and QA yield per round")
    figure.tight_layout()
    markdown = png_markdown(figure, "reward and QA yield per round")
    plt.close(figure)
    return markdown


def _or_null(value):
    """A metadata value, or Dagster's null for "none" (not a sentinel such as -1 or NaN)."""
    return dg.MetadataValue.null() if value is None else value


def arms_table(report: RoundReport, top_terms: dict[int, list[str]]) -> str:
    rewards = {r.arm: r for r in report.rewards}
    rows = []
    for c in report.choices:
        r = rewards.get(c.arm)
        rows.append((c.arm, c.reason, "inf" if c.score is None else f"{c.score:.4f}", f"{c.pulls:g}",
                     "" if c.mean is None else f"{c.mean:.4f}", c.documents, "" if r is None else r.qa_pairs,
                     "" if r is None else f"{r.reward:.4f}", ", ".join(top_terms.get(c.arm, [])[:5])))
    if not report.choices:  # random / all: the arms the documents fell in
        rows = [(r.arm, report.policy, "", "", "", r.documents, r.qa_pairs, f"{r.reward:.4f}",
                 ", ".join(top_terms.get(r.arm, [])[:5])) for r in report.rewards]
    return markdown_table(["arm", "why", "score", "pulls", "mean reward", "documents", "QA pairs", "reward", "top terms"], rows)


class RoundConfig(dg.Config):
    replay: bool = Field(False, description="play this round again and replace it (only the latest round); without "
                                            "it, a round already played is refused")


@dg.asset(
    partitions_def=rounds_partitions,
    deps=[clusters, warmup_extractions],
    group_name="extract",
    kinds={"duckdb", "python"},
    pool="duckdb",
    description=(
        "One EQUAL bandit round: choose arms (clusters) by the policy's score, draw unextracted documents from them, "
        "extract QA pairs, reward each arm with 1 - W (optimal transport to the reference set), and write the round, "
        "its extractions and QA pairs at once. Rounds run in order (r0001, r0002, ...) until the budget is spent."
    ),
    check_specs=[
        dg.AssetCheckSpec("within_budget", asset="bandit_rounds", blocking=True,
                          description="the documents and tokens spent, the warm-up's included, stay within the budget"),
        dg.AssetCheckSpec("every_document_has_a_status", asset="bandit_rounds", blocking=True,
                          description="every document the round drew has an extraction status"),
        dg.AssetCheckSpec("reward_in_range", asset="bandit_rounds", blocking=True,
                          description="the round's reward (1 - W) is in [0, 1]"),
    ],
)
def bandit_rounds(context: dg.AssetExecutionContext, config: RoundConfig, store: StoreResource, llm: ExtractionResource,
                  embedding_model: EmbedderResource, bandit: BanditResource,
                  compute: ComputeResource) -> dg.MaterializeResult:
    try:
        round_no = round_no_of(context.partition_key)
        settings = bandit.round_settings()
        reference = bandit.load_reference()
    except (RoundRefused, ReferenceSetError, ValueError) as exc:
        raise dg.Failure(description=str(exc)) from exc
    embedder = embedding_model.load_current()
    with store.open_store() as db:
        extractor = llm.build_extractor(StoreResponseCache(db), log=context.log.info, ray=compute.ray_settings())
        try:
            report = play_round(db, round_no, extractor, embedder, reference, settings, dagster_run_id=context.run_id,
                                replay=config.replay, log=context.log.info)
        except (RoundRefused, RoundFailed) as exc:  # the refusal's class goes with it, for callers to act on
            raise dg.Failure(description=str(exc), metadata={"refusal": type(exc).__name__}) from exc
        history = round_history(db)
        qa_total = int(sum(h["qa_pairs"] for h in history))
        top_terms = {}
        if report.clustering_id:
            top_terms = {int(r["cluster_id"]): json.loads(r["top_terms"] or "[]")
                         for r in db.cluster_summaries(report.clustering_id).iter_rows(named=True)}
        preview = db.qa_pairs(report.round_id).head(5).to_dicts()
        # the first round says what the whole budget will cost (`equal estimate`), before more is spent
        estimate = (format_estimate(estimate_cost(db, llm.extraction_config(), settings.budget), llm.extraction_config(),
                                    settings.budget) if report.round_no == 1 else None)
        checks = [
            check_result("within_budget", within_budget(report.docs_spent_total,
                                                        settings.budget.document_limit(db.document_count()),
                                                        report.tokens_spent_total, settings.budget.tokens), blocking=True),
            check_result("every_document_has_a_status", statuses_recorded(db, report.round_id, report.documents),
                         blocking=True),
            check_result("reward_in_range", reward_in_range(report.round_reward), blocking=True),
        ]
        snapshot = store_snapshot(db)
    totals = report.run.totals()
    context.log.info(
        f"round {report.round_id} ({report.policy}): {report.documents:,} documents, {report.qa_pairs:,} QA pairs, "
        f"reward {report.round_reward:.4f}; spent {report.docs_spent_total:,} documents and "
        f"{report.tokens_spent_total:,} tokens so far; left: {report.docs_left if report.docs_left is not None else 'no limit'} "
        f"documents of budget, {report.candidates_left:,} unextracted candidates; status {totals['status']}"
    )
    if totals["why_no_pairs"]:
        context.log.warning(f"round {report.round_id} found no QA pairs: {totals['why_no_pairs']}")
    return dg.MaterializeResult(check_results=checks, metadata={
        "dagster/row_count": report.qa_pairs,
        **snapshot,
        "round_no": report.round_no,
        "policy": report.policy,
        "clustering_id": report.clustering_id,
        "documents": report.documents,
        "qa_pairs": report.qa_pairs,
        "round_reward": report.round_reward,
        "ot_distance": _or_null(report.round_distance),
        "arms": dg.MetadataValue.md(arms_table(report, top_terms)),
        "warm_start_arms": len(report.warm_start),
        "arms_per_round": report.shape.arms_per_round,
        "docs_per_arm": report.shape.docs_per_arm,
        "expected_rounds": _or_null(report.shape.expected_rounds),
        "round_shape": dg.MetadataValue.json(report.shape.as_json()),
        "documents_spent_total": report.docs_spent_total,
        "tokens_spent_total": report.tokens_spent_total,
        "qa_pairs_total": qa_total,
        "budget_left_documents": _or_null(report.docs_left),  # null: no such limit
        "budget_left_tokens": _or_null(report.tokens_left),
        "candidates_left": report.candidates_left,
        "budget_spent": report.budget_spent,
        "backend_calls": totals["backend_calls"],
        "cache_hits": totals["cache_hits"],
        "documents_by_status": dg.MetadataValue.json(totals["status"]),
        "why_no_pairs": totals["why_no_pairs"],  # null when pairs were found
        "budget_estimate": dg.MetadataValue.md(f"```\n{estimate}\n```") if estimate else None,  # round 1 only
        "notes": "; ".join(report.notes),
        "timings": dg.MetadataValue.json(report.timings),
        "reward_plot": dg.MetadataValue.md(reward_plot(history)),
        "preview": dg.MetadataValue.md(markdown_table(
            ["doc_id", "question", "answer"], [(p["doc_id"], p["question"][:120], p["answer"][:160]) for p in preview])),
    })
