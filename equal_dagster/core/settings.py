"""Where things live: every path derives from ``EQUAL_HOME`` (default ``./.equal``) unless set on its own."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from equal_dagster.core.store import LakeLocation


@dataclass(frozen=True)
class EqualPaths:
    home: Path
    crawl_dir: Path

    @classmethod
    def from_env(cls, home: str | Path | None = None) -> EqualPaths:
        home_path = Path(home or os.environ.get("EQUAL_HOME") or ".equal").expanduser().absolute()
        crawl_dir = os.environ.get("EQUAL_CRAWL_DIR") if home is None else None
        return cls(home_path, Path(crawl_dir).expanduser().absolute() if crawl_dir else home_path / "crawls")

    @property
    def store(self) -> Path | LakeLocation:
        """The store: ``EQUAL_STORE`` when set (a DuckLake store, ``ducklake:...``, or another DuckDB file), else the
        home's DuckDB file."""
        from equal_dagster.core.store import store_location

        return store_location(self.home / "equal.duckdb")

    @property
    def writers(self) -> int:
        """How many runs may write to the store at once (the Dagster pool ``duckdb``): one for a DuckDB file (it
        admits one writing process), ``EQUAL_STORE_WRITERS`` (default 4) for a DuckLake store."""
        from equal_dagster.core.store import LakeLocation, lake_writers

        return lake_writers() if isinstance(self.store, LakeLocation) else 1

    @property
    def dagster_home(self) -> Path:
        return self.home / "dagster"

    @property
    def reference_dir(self) -> Path:
        return self.home / "reference"
