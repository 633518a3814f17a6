"""`equal demo`: write the demo data into EQUAL_HOME and materialize the pipeline through Dagster's API on
the home's persistent instance, so that the runs show up afterwards in `make ui`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from equal_dagster.assets.metadata import markdown_table
from equal_dagster.core.settings import EqualPaths
from equal_dagster.core.store import Store
from equal_dagster.definitions import build_definitions
from equal_dagster.demo.corpus import CRAWL_NAMES, write_demo_data
from equal_dagster.headless import play_rounds
from equal_dagster.instance import persistent_instance
from equal_dagster.partitions import crawls_partitions
from equal_dagster.resources.bandit import BanditResource
from equal_dagster.resources.llm import ExtractionResource

# The demo's bandit: about 25 clusters, so 2 arms x 15 documents a round (EQUAL: 50 of 1,000 arms x 10), within a
# budget of 10% of the corpus, the warm-up's 5% included: about ten rounds.
DEMO_ARMS_PER_ROUND = 2
DEMO_DOCS_PER_ARM = 15
DEMO_BUDGET = "10%"


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


def _arms_cell(arms_markdown: str) -> str:
    """"arm (why score)" for each arm of the round's arms table."""
    cells = []
    for line in arms_markdown.splitlines()[2:]:
        parts = [p.strip() for p in line.strip("|").split("|")]
        cells.append(f"{parts[0]} ({parts[1]} {parts[2]})")
    return ", ".join(cells)


def run_demo(
    paths: EqualPaths, *, seed: int = 0, n_documents: int = 6000, say: Callable[[str], None] = print
) -> tuple[list[CrawlSummary], WarmupSummary]:
    say(f"EQUAL_HOME: {paths.home}")
    reference = paths.reference_dir / "reference.jsonl"
    generated = write_demo_data(paths.crawl_dir, reference, seed=seed, n_documents=n_documents)
    say(f"wrote {sum(generated.kinds.values()):,} demo rows of {len(generated.kinds)} kinds as {len(CRAWL_NAMES)} "
        f"crawls in {paths.crawl_dir}, and the reference set {reference}")

    instance = persistent_instance(paths)
    bandit = BanditResource(reference=str(reference), arms_per_round=DEMO_ARMS_PER_ROUND, docs_per_arm=DEMO_DOCS_PER_ARM,
                            budget=DEMO_BUDGET, seed=seed)
    defs = build_definitions(paths, llm=ExtractionResource(backend="rules"), bandit=bandit)  # no model needed
    known = set(instance.get_dynamic_partitions(crawls_partitions.name))
    instance.add_dynamic_partitions(crawls_partitions.name, [c for c in CRAWL_NAMES if c not in known])
    ingest = defs.resolve_job_def("ingest_crawl")
    summaries = []
    for crawl in CRAWL_NAMES:
        say(f"materializing corpus[{crawl}] ...")
        result = ingest.execute_in_process(partition_key=crawl, instance=instance)
        metadata = {k: v.value for k, v in result.asset_materializations_for_node("corpus")[0].metadata.items()}
        summaries.append(CrawlSummary(crawl, metadata["rows_read"], metadata["documents_kept"],
                                      metadata["duplicates"], metadata["quarantined"], result.run_id))
    say("")
    say(markdown_table(
        ["crawl", "rows read", "documents", "duplicates", "quarantined", "Dagster run"],
        [(s.crawl_id, s.rows_read, s.documents_kept, s.duplicates, s.quarantined, s.run_id[:8]) for s in summaries],
    ))
    say("")
    say("materializing warmup_extractions (5% of the corpus, rules backend) ...")
    result = defs.resolve_job_def("warmup").execute_in_process(instance=instance)
    metadata = {k: v.value for k, v in result.asset_materializations_for_node("warmup_extractions")[0].metadata.items()}
    warmup = WarmupSummary(metadata["documents_sampled"], metadata["qa_pairs"], metadata["documents_by_status"], result.run_id)
    say(f"warm-up (round 0): {warmup.documents_sampled:,} of {metadata['corpus_documents']:,} documents sampled, "
        f"{warmup.qa_pairs:,} QA pairs extracted")
    say(warmup.status_table)
    say("")
    say("materializing embedder (contrastive warm-up of all-MiniLM-L6-v2 on the warm-up pairs, about a minute) ...")
    result = defs.resolve_job_def("tune_embedder").execute_in_process(instance=instance)
    tuned = {k: v.value for k, v in result.asset_materializations_for_node("embedder")[0].metadata.items()}
    say(f"embedder: {tuned['embedder_id']} ({tuned['reason']}); held-out recall from a document to its QA pairs:")
    say(tuned["held_out_recall"])
    say("")
    embed = defs.resolve_job_def("embed_crawl")
    for crawl in CRAWL_NAMES:
        say(f"materializing embeddings[{crawl}] (on CPU: about half a minute each) ...")
        embed.execute_in_process(partition_key=crawl, instance=instance)
    say("materializing clusters (PCA, then HDBSCAN) ...")
    result = defs.resolve_job_def("cluster").execute_in_process(instance=instance)
    clusters = {k: v.value for k, v in result.asset_materializations_for_node("clusters")[0].metadata.items()}
    say(f"clusters {clusters['clustering_id']}: {clusters['dagster/row_count']:,} documents in {clusters['clusters']} "
        f"clusters (the bandit's arms), assignments {clusters['assignments']}; the largest:")
    say("\n".join(clusters["clusters_table"].splitlines()[:12]))
    say("")
    say(f"playing bandit rounds (equal_ucb, {DEMO_ARMS_PER_ROUND} arms x {DEMO_DOCS_PER_ARM} documents) until the budget "
        f"({DEMO_BUDGET} of the corpus, warm-up included) is spent ...")
    played = play_rounds(defs, instance, paths.store, None, say=lambda message: None)
    say(markdown_table(
        ["round", "arms chosen (why, score)", "documents", "QA pairs", "reward", "documents spent"],
        [(f"r{m['round_no']:04d}", _arms_cell(m["arms"]), m["documents"], m["qa_pairs"], f"{m['round_reward']:.3f}",
          m["documents_spent_total"]) for m in played],
    ))
    with Store.open(paths.store, read_only=True) as store:
        pairs = store.qa_pairs_of_rounds([f"r{played[-1]['round_no']:04d}"]) if played else None
    if pairs is not None and pairs.height:
        say(f"trace a QA pair back to its file, cluster and round: equal lineage {pairs['qa_id'][0]}")
    say("")
    say(f"store: {paths.store}")
    say("see the runs, assets and their metadata: make ui  (then open http://127.0.0.1:3000)")
    return summaries, warmup
