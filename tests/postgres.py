"""A throwaway Postgres for the DuckLake store's tests: started from the machine's binaries in a temporary folder,
listening on 127.0.0.1 only, on a free port, stopped at the end of the session.

The binaries are looked up on the PATH, then where Debian's ``postgresql`` package puts them
(/usr/lib/postgresql/<version>/bin; ``make test`` installs it with apt when missing). Tests that need Postgres skip,
saying why, only when no binaries are found. Postgres refuses to run as root: under root the server runs as the
``postgres`` user (or ``nobody``), in a folder given to that user.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pytest

from equal_dagster.core.store import LakeLocation, _load_extension


def postgres_bin() -> Path | None:
    """The folder holding initdb and pg_ctl, or None."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl", path=str(Path(found).parent)):
        return Path(found).parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                      key=lambda p: int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0)
    return Path(versions[-1]).parent if versions else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _server_user() -> pwd.struct_passwd | None:
    """Who runs the server: None (this user) unless this user is root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise RuntimeError("running as root and no 'postgres' or 'nobody' user to run Postgres as")


@dataclass
class Postgres:
    bin: Path
    folder: Path
    port: int
    user: pwd.struct_passwd | None
    superuser: str = "equal"
    _admin: duckdb.DuckDBPyConnection | None = None

    def _run(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        kwargs = {"user": self.user.pw_uid, "group": self.user.pw_gid} if self.user else {}
        return subprocess.run([str(self.bin / args[0]), *args[1:]], cwd=self.folder, capture_output=True, text=True,
                              check=check, timeout=timeout, **kwargs)

    def start(self) -> None:
        self._run("initdb", "-D", str(self.folder / "data"), "-U", self.superuser, "--auth=trust", "-E", "UTF8",
                  "--no-sync")
        options = (f"-h 127.0.0.1 -p {self.port} -k {self.folder} -c fsync=off -c synchronous_commit=off "
                   "-c full_page_writes=off -c max_connections=200")
        self._run("pg_ctl", "-D", str(self.folder / "data"), "-o", options, "-l", str(self.folder / "log"), "-w", "start")

    def stop(self) -> None:
        if self._admin is not None:
            self._admin.close()
        self._run("pg_ctl", "-D", str(self.folder / "data"), "-m", "immediate", "-w", "stop", check=False)

    def conninfo(self, dbname: str) -> str:
        return f"dbname={dbname} host=127.0.0.1 port={self.port} user={self.superuser}"

    def new_database(self) -> str:
        """CREATE DATABASE through DuckDB's postgres extension (createdb and psql may be missing)."""
        name = f"lake_{uuid.uuid4().hex[:12]}"
        if self._admin is None:
            self._admin = duckdb.connect()
            _load_extension(self._admin, "postgres")
            self._admin.execute(f"ATTACH '{self.conninfo('postgres')}' AS server (TYPE postgres)")
        self._admin.execute(f"CALL postgres_execute('server', 'CREATE DATABASE {name}', use_transaction := false)")
        return name

    def new_lake(self, data_path: Path) -> LakeLocation:
        """A new, empty DuckLake store: its own database in this server, its data under ``data_path``."""
        return LakeLocation(f"postgres:{self.conninfo(self.new_database())}", str(data_path) + "/")


@pytest.fixture(scope="session")
def postgres():
    bin_dir = postgres_bin()
    if bin_dir is None:
        pytest.skip("no Postgres binaries (initdb, pg_ctl) on the PATH or in /usr/lib/postgresql/*/bin: "
                    "`make test` installs Debian's postgresql with apt")
    user = _server_user()
    folder = Path(tempfile.mkdtemp(prefix="equal-postgres-"))
    if user:
        os.chown(folder, user.pw_uid, user.pw_gid)
    server = Postgres(bin_dir, folder, _free_port(), user)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)
