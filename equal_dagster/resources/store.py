"""The store as a Dagster resource: dagster-duckdb's DuckDBResource, handing out :class:`Store` objects."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from dagster_duckdb import DuckDBResource

from equal_dagster.core.settings import EqualPaths
from equal_dagster.core.store import LAKE_SCHEME, Store

# How long a writer waits while another process (another Dagster instance, a script) holds the file. Writers of this
# instance never meet: they share the duckdb pool.
WRITER_WAIT_S = 120.0


class StoreResource(DuckDBResource):
    """The DuckDB file of DESIGN.md. Writers share the ``duckdb`` concurrency pool and wait up to
    :data:`WRITER_WAIT_S` for a file another process holds; readers open the file read-only. A store that cannot be
    opened (busy, not a DuckDB file, in a folder that cannot be written) fails with one line that says why."""

    @contextlib.contextmanager
    def open_store(self, *, read_only: bool = False) -> Iterator[Store]:
        if read_only:
            with Store.open(self.database, read_only=True) as store:
                yield store
            return
        with Store.open(self.database, wait_s=WRITER_WAIT_S) as store:
            yield store

    def files_dir(self) -> Path:
        """Where files that go with the store are written (the exported datasets): beside a DuckDB file; for a
        DuckLake store (``database`` = ``ducklake:...``), in the EQUAL home."""
        if self.database.startswith(LAKE_SCHEME):
            return EqualPaths.from_env().home
        return Path(self.database).parent
