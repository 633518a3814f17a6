"""Helpers that turn results into metadata the Dagster UI shows."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import dagster as dg

from equal_dagster.core.checks import Outcome


def _cell(value: Any) -> str:
    text = f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value)
    return text.replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A markdown table; cells have pipes escaped and line breaks folded, so any text is safe in one."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def store_snapshot(db: Any) -> dict[str, Any]:
    """``store_snapshot``: the DuckLake snapshot the asset's writes made, to open the store as it was then
    (``Store.open(location, read_only=True, snapshot=n)``); nothing on a DuckDB file, which keeps no snapshots."""
    snapshot = db.snapshot_id()
    return {} if snapshot is None else {"store_snapshot": snapshot}


def check_result(name: str, outcome: Outcome, *, blocking: bool = False) -> dg.AssetCheckResult:
    """A rule's outcome (:mod:`equal_dagster.core.checks`) as Dagster shows it; a failed blocking rule is an ERROR
    (the assets downstream do not run), any other a WARN."""
    severity = dg.AssetCheckSeverity.ERROR if blocking else dg.AssetCheckSeverity.WARN
    return dg.AssetCheckResult(check_name=name, passed=outcome.passed, severity=severity,
                               description=outcome.message, metadata={"why": outcome.message, **outcome.metadata})


def png_markdown(figure: Any, alt: str = "plot") -> str:
    """A matplotlib figure as a markdown image (an inline PNG), which the Dagster UI shows in the metadata panel."""
    import base64
    import io

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    return f"![{alt}](data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()})"
