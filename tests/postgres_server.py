"""A real PostgreSQL server for the tests: Debian's `postgresql` binaries, `initdb` into a temporary
folder, `pg_ctl start` on a free port of 127.0.0.1 with password authentication, stopped and deleted
afterwards. No mocks: the tests read tables and queries through ncflow's own reader, and (issue 17)
the real-stack Prefect server keeps its database here.

Without the binaries the tests that need the server are skipped, unless NCFLOW_REQUIRE_POSTGRES is set
(.ci/run sets it after `apt-get install postgresql`), which makes a missing server a failure.
PostgreSQL refuses to run as root: as root, the server runs as the `postgres` user the package creates.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from e2e_stack import free_port

USER, PASSWORD = "ncflow", "pg-s3cret-Zq81"  # the tests check that this password is never shown


def bindir() -> Path | None:
    found = shutil.which("initdb") or next(
        iter(sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))[::-1]), None
    )
    return Path(found).resolve().parent if found else None


@dataclass(frozen=True)
class PostgresServer:
    bin: Path
    port: int
    folder: Path

    def url(self, database: str = "postgres", driver: str = "postgresql") -> str:
        return f"{driver}://{USER}:{PASSWORD}@127.0.0.1:{self.port}/{database}"

    def psql(self, sql: str, database: str = "postgres") -> str:
        result = subprocess.run(
            [str(self.bin / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", USER, "-d", database,
             "-v", "ON_ERROR_STOP=1", "-Atc", sql],
            env={**os.environ, "PGPASSWORD": PASSWORD}, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        return result.stdout

    def create_database(self, name: str) -> str:
        self.psql(f'CREATE DATABASE "{name}"')
        return name


def _as_server_user(command: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


@contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    where = bindir()
    if where is None:
        if os.environ.get("NCFLOW_REQUIRE_POSTGRES"):
            raise AssertionError("PostgreSQL is not installed, and NCFLOW_REQUIRE_POSTGRES is set")
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")
    folder = Path(tempfile.mkdtemp(prefix="ncflow-pg-"))  # in /tmp: the server's user can reach it
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres")
    (folder / "pw").write_text(PASSWORD + "\n")
    if os.geteuid() == 0:
        shutil.chown(folder / "pw", "postgres")
    port = free_port()
    data, log = folder / "data", folder / "server.log"
    run = {"capture_output": True, "text": True, "timeout": 120, "check": False}
    init = subprocess.run(
        _as_server_user([str(where / "initdb"), "-D", str(data), "-U", USER, "--pwfile", str(folder / "pw"),
                         "--auth", "scram-sha-256", "-E", "UTF8"]), **run,
    )  # fmt: skip
    assert init.returncode == 0, init.stderr
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
    start = subprocess.run(
        _as_server_user([str(where / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(log), "-w", "start"]),
        **run,
    )  # fmt: skip
    assert start.returncode == 0, start.stderr + (log.read_text() if log.exists() else "")
    try:
        yield PostgresServer(where, port, folder)
    finally:
        subprocess.run(_as_server_user([str(where / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"]), **run)
        shutil.rmtree(folder, ignore_errors=True)
