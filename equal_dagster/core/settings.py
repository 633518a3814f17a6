"""Where things live: every path derives from ``EQUAL_HOME`` (default ``./.equal``) unless set on its own."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


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
    def store(self) -> Path:
        return self.home / "equal.duckdb"

    @property
    def dagster_home(self) -> Path:
        return self.home / "dagster"

    @property
    def reference_dir(self) -> Path:
        return self.home / "reference"
