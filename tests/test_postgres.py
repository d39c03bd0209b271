"""PostgreSQL as the source of a user's log, on a real server (tests/postgres_server.py): `ncflow train`
reads a table (ids as `uuid` and `text`, times as `timestamptz`) and a query, through ADBC. The
connection string comes from an environment variable or a Prefect Secret block and appears in no
parameter, log, artifact, manifest, bundle or registry file."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import adbc_driver_postgresql.dbapi as adbc
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from own_logs import SMALL_NCF, string_log
from postgres_server import PASSWORD

from ncflow.cli import main as cli
from ncflow.data.preprocess import read_manifest

CUTOFF = "2008-01-01"  # the query's rows: from this day on


@pytest.fixture(scope="module")
def shop(postgres, tmp_path_factory):
    """A database `shop` with a table `events`: customer uuid, sku text, rating real, ts timestamptz."""
    url = postgres.url(postgres.create_database("shop"))
    events = string_log(tmp_path_factory.mktemp("log"))
    as_uuid = {
        c: str(uuid.UUID(bytes=bytes.fromhex(c * 3)[:16])) for c in set(events.column("customer").to_pylist())
    }
    table = events.set_column(
        0, "customer", pa.array([as_uuid[c] for c in events.column("customer").to_pylist()])
    )
    with adbc.connect(url) as conn, conn.cursor() as cursor:
        cursor.adbc_ingest("events", table, mode="create")
        cursor.execute("ALTER TABLE events ALTER customer TYPE uuid USING customer::uuid")
        cursor.execute("ALTER TABLE events ALTER ts TYPE timestamptz USING to_timestamp(ts)")
        conn.commit()
    return url, table


async def what_the_server_shows() -> str:
    """Every flow run's parameters, every log line and every artifact the Prefect server holds."""
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        runs = await client.read_flow_runs()
        logs, artifacts, offset = [], [], 0
        while batch := await client.read_logs(limit=200, offset=offset):
            logs += batch
            offset += len(batch)
        offset = 0
        while batch := await client.read_artifacts(limit=200, offset=offset):
            artifacts += batch
            offset += len(batch)
    shown = [json.dumps(r.parameters, default=str) for r in runs] + [entry.message for entry in logs]
    shown += [f"{a.description} {a.data}" for a in artifacts]
    return "\n".join(shown)


def files_holding(folder: Path, secret: str) -> list[str]:
    return [str(p) for p in folder.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]


def test_training_reads_a_table_and_a_query_and_never_shows_the_connection_string(
    prefect_server, shop, tmp_path, monkeypatch, capsys
):
    from prefect.blocks.system import Secret

    url, table = shop
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SHOP_DB", url)
    columns = [
        "--user-col",
        "customer",
        "--item-col",
        "sku",
        "--rating-col",
        "rating",
        "--timestamp-col",
        "ts",
    ]

    # A table, the connection string in an environment variable.
    assert (
        cli(["train", "ncf", "--dataset", "pg:events", "--connection", "env:SHOP_DB", *columns, *SMALL_NCF])
        == 0
    )
    printed = capsys.readouterr()
    result = json.loads(printed.out.strip().splitlines()[-1])
    assert (result["dataset"], result["version"]) == ("events", 1)
    users = pq.read_table(Path(result["bundle"]) / "users.parquet").column("id").to_pylist()
    assert set(users) == set(table.column("customer").to_pylist())  # uuid ids, as their text
    manifest = read_manifest(next((tmp_path / "data" / "processed").glob("events-ncf-*")))
    assert manifest["source"]["rows"] == table.num_rows

    # A query, the connection string in a Prefect Secret block.
    Secret(value=url).save("shop-db", overwrite=True)
    query = f"SELECT customer, sku, rating, ts FROM events WHERE ts >= '{CUTOFF}'"
    args = ["train", "ncf", "--dataset", "pg:recent", "--source", query, "--connection", "secret:shop-db"]
    assert cli([*args, *columns, *SMALL_NCF]) == 0
    printed2 = capsys.readouterr()
    assert json.loads(printed2.out.strip().splitlines()[-1])["dataset"] == "recent"
    recent = read_manifest(next((tmp_path / "data" / "processed").glob("recent-ncf-*")))
    assert 0 < recent["source"]["rows"] < table.num_rows
    with adbc.connect(url) as conn, conn.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM events WHERE ts >= '{CUTOFF}'")
        assert recent["source"]["rows"] == cursor.fetchone()[0]

    shown = asyncio.run(what_the_server_shows())
    assert "pg:recent" in shown and "secret:shop-db" in shown  # the scan does see the runs
    for secret in (url, PASSWORD):
        assert secret not in shown
        assert secret not in printed.out + printed.err + printed2.out + printed2.err
        assert files_holding(tmp_path, secret) == []


@pytest.mark.parametrize(
    ("dataset", "extra", "message"),
    [
        ("pg:nope", [], 'PostgreSQL table nope failed: .*relation "nope" does not exist'),
        (
            "pg:events",
            ["--source", "SELECT customer, sku FROM events WHERE"],
            "PostgreSQL query for pg:events failed",
        ),
        ("pg:events", ["--user-col", "who"], 'column "who" does not exist'),
        (
            "pg:events",
            ["--connection", "env:NOT_SET_ANYWHERE"],
            "the environment variable NOT_SET_ANYWHERE is not set",
        ),
        ("pg:events", ["--connection", "postgresql://x:y@h/db"], "must name where the connection string is"),
        ("pg:events", ["--connection", "env:WRONG_PASSWORD"], "password authentication failed"),
    ],
    ids=[
        "missing table",
        "bad query",
        "missing column",
        "unset variable",
        "a string, not a reference",
        "wrong password",
    ],
)
def test_database_problems_are_one_line_without_the_password(
    shop, tmp_path, monkeypatch, capsys, dataset, extra, message
):
    url, _ = shop
    monkeypatch.setenv("NCFLOW_DATABASE_URL", url)
    monkeypatch.setenv("WRONG_PASSWORD", url.replace(PASSWORD, "not-the-password"))
    assert cli(["data", dataset, "--item-col", "sku", *extra, "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("ncflow: error:"), err
    assert __import__("re").search(message, err), err
    assert PASSWORD not in err and "not-the-password" not in err
    assert not list(tmp_path.rglob("*.parquet"))  # nothing half-written
