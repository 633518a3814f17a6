"""Asset ``corpus``: one crawl's files in, its documents and quarantine rows out (EQUAL's input corpus)."""

import dagster as dg

from equal_dagster.core.corpus import IngestError, IngestReport, ingest_crawl
from equal_dagster.assets.metadata import check_result, markdown_table, store_snapshot
from equal_dagster.core.store import column_schema
from equal_dagster.core.checks import no_id_conflict, quarantine_share
from equal_dagster.partitions import crawls_partitions
from equal_dagster.resources.crawls import CrawlFolder
from equal_dagster.resources.store import StoreResource

def _log_progress(context: dg.AssetExecutionContext):
    def log(report: IngestReport, done: int, total: int) -> None:
        share = f"{100 * done / total:.0f}%" if total else "-"
        context.log.info(
            f"{report.rows_read:,} rows read ({done / 1e6:.1f} / {total / 1e6:.1f} MB, {share}), "
            f"{report.documents_kept:,} documents kept, {report.rows_per_second:,.0f} rows/s"
        )

    return log

def _reason_table(report: IngestReport) -> str:
    """The quarantine's rows per reason (duplicates are not quarantined: kept once, counted in `duplicates`)."""
    return markdown_table(["reason", "rows"], sorted(report.quarantined.items()))

@dg.asset(
    partitions_def=crawls_partitions,
    group_name="ingest",
    kinds={"duckdb", "polars"},
    pool="duckdb",
    description=(
        "Documents of one crawl: text normalized, exact duplicates kept once, and every row that cannot "
        "become a document in `quarantine` with its reason. Re-materializing replaces the crawl's rows."
    ),
    check_specs=[
        dg.AssetCheckSpec("quarantine_share", asset="corpus", description="under half of the crawl's rows quarantined "
                          "(duplicates aside): more is a wrong format or field name"),
        dg.AssetCheckSpec("no_id_conflict", asset="corpus", description="no id names two different texts"),
    ],
)
def corpus(context: dg.AssetExecutionContext, store: StoreResource, crawl_folder: CrawlFolder) -> dg.MaterializeResult:
    crawl_id = context.partition_key
    crawl_path = crawl_folder.crawl_path(crawl_id)
    context.log.info(f"ingesting crawl {crawl_id} from {crawl_path}")
    with store.open_store() as db:
        try:
            report = ingest_crawl(db, crawl_id, crawl_path, crawl_folder.root(), crawl_folder.crawl_format(),
                                  memory_limit=crawl_folder.ingest_memory_limit(), progress=_log_progress(context))
        except IngestError as exc:
            raise dg.Failure(description=str(exc)) from exc
        preview = db.sample_documents(crawl_id, 5)
        languages = db.language_counts(crawl_id)
        columns = db.column_types("documents")
        snapshot = store_snapshot(db)

    quarantined = sum(report.quarantined.values())
    context.log.info(
        f"crawl {crawl_id}: {report.rows_read:,} rows read, {report.documents_kept:,} kept, "
        f"{report.duplicates:,} duplicates, {quarantined:,} quarantined {dict(report.quarantined)}, "
        f"{report.blank_lines:,} blank lines, {report.skipped_files} marker files skipped, "
        f"{sum(report.records_skipped.values()):,} WARC records that are not pages {dict(report.records_skipped)}, "
        f"{report.rows_per_second:,.0f} rows/s"
    )
    preview_md = markdown_table(
        ["doc_id", "url", "chars", "text"],
        [(row["doc_id"], row["url"] or "", row["n_chars"], row["text"][:160]) for row in preview.iter_rows(named=True)],
    )
    return dg.MaterializeResult(
        check_results=[check_result("quarantine_share", quarantine_share(report.rows_read, report.quarantined)),
                       check_result("no_id_conflict", no_id_conflict(report.quarantined))],
        metadata={
            "dagster/row_count": report.documents_kept,
            "dagster/column_schema": dg.TableSchema(
                columns=[dg.TableColumn(name, sql_type, description=description)
                         for name, sql_type, description in column_schema("documents", columns)]
            ),
            **snapshot,
            "rows_read": report.rows_read,
            "documents_kept": report.documents_kept,
            "duplicates": report.duplicates,
            "quarantined": quarantined,
            "quarantined_by_reason": dg.MetadataValue.md(_reason_table(report)),
            "blank_lines": report.blank_lines,
            "files": report.files,
            "marker_files_skipped": report.skipped_files,
            "records_skipped": dg.MetadataValue.json(dict(report.records_skipped)),  # WARC: request, warcinfo...
            "languages": dg.MetadataValue.json(languages),  # documents per language ("" : too short to tell)
            "rows_per_second": round(report.rows_per_second, 1),
            "preview": dg.MetadataValue.md(preview_md),
        }
    )
