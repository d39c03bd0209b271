"""Fixtures shared across test modules: an in-process Prefect server, a real PostgreSQL server, and the
real stack of the end-to-end tests (tests/e2e_stack.py) with its database in that PostgreSQL, started
once for the session and its logs checked when it stops."""

from __future__ import annotations

import pytest
from e2e_stack import Stack, start_stack, stop_stack
from postgres_server import PASSWORD, PostgresServer, postgres_server


@pytest.fixture(scope="session")
def prefect_server():
    """A real, temporary Prefect server (its own database) for flows run in-process; started once per
    session because each start costs seconds."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def stack(tmp_path_factory, postgres) -> Stack:
    """The real stack; its server keeps its database in the session's PostgreSQL, as in production."""
    database = postgres.url(postgres.create_database("prefect"), driver="postgresql+asyncpg")
    running = start_stack(tmp_path_factory.mktemp("prefect"), database)
    try:
        assert int(postgres.psql("SELECT count(*) FROM deployment", "prefect")) > 0  # deployed there
        yield running
        problems = running.log_problems()
    finally:
        stop_stack(running)
    assert not problems, "tracebacks or ERROR lines in the server's or a worker's log:\n" + "\n".join(
        problems[:40]
    )
    leaks = [log.name for log in running.logs if PASSWORD in log.read_text(errors="replace")]
    assert not leaks, f"the database password is in {leaks}"


@pytest.fixture(scope="session")
def postgres() -> PostgresServer:
    """A real PostgreSQL server on 127.0.0.1 (tests/postgres_server.py), one per session."""
    with postgres_server() as server:
        yield server
