"""The store as a Dagster resource: dagster-duckdb's DuckDBResource, handing out :class:`Store` objects."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from dagster_duckdb import DuckDBResource

from equal_dagster.core.store import Store


class StoreResource(DuckDBResource):
    """The DuckDB file of DESIGN.md. Writers go through DuckDBResource's connection (with its retries on a
    locked file) and share the ``duckdb`` concurrency pool; readers open the file read-only."""

    @contextlib.contextmanager
    def open_store(self, *, read_only: bool = False) -> Iterator[Store]:
        if read_only:
            with Store.open(self.database, read_only=True) as store:
                yield store
            return
        Path(self.database).parent.mkdir(parents=True, exist_ok=True)
        with self.get_connection() as conn:
            try:
                yield Store(conn, path=self.database)
            finally:
                conn.close()  # DuckDBResource.get_connection closes only when the body succeeds
