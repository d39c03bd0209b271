"""PostgreSQL as the source of a user's log, on a real server (tests/postgres_server.py): `ncflow train`
reads a table (ids as `uuid` and `text`, times as `timestamptz`) and a query, through ADBC. The
connection string comes from an environment variable or a Prefect Secret block and appears in no
parameter, log, artifact, manifest, bundle or registry file."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import uuid
from pathlib import Path

import adbc_driver_postgresql.dbapi as adbc
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from own_logs import SMALL_NCF, string_log
from postgres_server import PASSWORD

from ncflow.cli import main as cli
from ncflow.data import postgres
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


@pytest.fixture
def result_storage(prefect_server, tmp_path):
    """Where this test's runs persist their results (Prefect's local result storage), to be scanned."""
    from prefect.settings import PREFECT_LOCAL_STORAGE_PATH, temporary_settings

    with temporary_settings(updates={PREFECT_LOCAL_STORAGE_PATH: str(tmp_path / "results")}):
        yield tmp_path / "results"


async def what_prefect_keeps() -> str:
    """Every state message of every flow and task run (their whole history) and every event."""
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        kept = []
        for run in await client.read_flow_runs():
            kept += [f"{s.name}: {s.message}" for s in await client.read_flow_run_states(run.id)]
        for task_run in await client.read_task_runs():
            kept += [f"{s.name}: {s.message}" for s in await client.read_task_run_states(task_run.id)]
        page = await client.read_events(limit=50)
        while page:
            kept += [event.model_dump_json() for event in page.events]
            page = await client.read_events_page(page.next_page) if page.next_page else None
    return "\n".join(kept)


def stored_results(folder: Path) -> str:
    """Each persisted result (raw and decoded: a return value, or a failed run's exception with its
    arguments and chained exceptions)."""
    from prefect.results import ResultRecord

    shown = []
    for path in (p for p in folder.rglob("*") if p.is_file()):
        raw = path.read_bytes()
        shown.append(raw.decode(errors="replace"))
        try:
            value = ResultRecord.deserialize(raw).result
        except Exception:  # noqa: BLE001 - not a result record (a lock file): its bytes are scanned above
            continue
        while value is not None:
            shown.append(f"{value!r} {value}")
            value = value.__cause__ or value.__context__ if isinstance(value, BaseException) else None
    assert shown, f"no results persisted under {folder}"
    return "\n".join(shown)


def pieces(secret: str, size: int = 4) -> set[str]:
    """The secret and every run of `size` of its characters: what a leak would show."""
    return {secret} | {secret[i : i + size] for i in range(len(secret) - size + 1)}


def files_holding(folder: Path, secret: str) -> list[str]:
    return [str(p) for p in folder.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]


def test_training_reads_a_table_and_a_query_and_never_shows_the_connection_string(
    prefect_server, result_storage, shop, tmp_path, monkeypatch, capsys
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
    stored, kept = stored_results(result_storage), asyncio.run(what_prefect_keeps())
    assert "events-ncf-" in stored and "Completed" in kept  # the scans do see the runs' results and states
    for secret in (url, PASSWORD):
        assert secret not in stored and secret not in kept


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
    monkeypatch.setenv("WRONG_PASSWORD", url.replace(PASSWORD, "wrong-pw-Kx73"))
    assert cli(["data", dataset, "--item-col", "sku", *extra, "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("ncflow: error:"), err
    assert __import__("re").search(message, err), err
    assert PASSWORD not in err and "wrong-pw-Kx73" not in err
    assert not list(tmp_path.rglob("*.parquet"))  # nothing half-written


@pytest.fixture
def silent_port():
    """A port that takes connections and never answers: a server behind a firewall that drops packets,
    as libpq sees it (it waits for the server's first message)."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        yield server.getsockname()[1]


def failed_urls(url: str, port: int) -> dict[str, str]:
    """Connection strings that fail before any query, with the test server's password in them."""
    return {
        "a leading space": " " + url,  # libpq echoes the string without it
        "an unescaped @ in the password": url.replace(PASSWORD, PASSWORD.replace("-Zq", "@Zq")),
        "no scheme": url.removeprefix("postgresql://"),
        "refused": re.sub(r":\d+/", ":1/", url),
        "no answer": re.sub(r":\d+/", f":{port}/", url),
    }


@pytest.mark.parametrize(
    "case", ["a leading space", "an unescaped @ in the password", "no scheme", "refused", "no answer"]
)
def test_a_malformed_string_is_masked_where_the_driver_echoes_it(
    shop, silent_port, tmp_path, monkeypatch, capsys, case
):
    url = failed_urls(shop[0], silent_port)[case]
    monkeypatch.setattr(postgres, "CONNECT_TIMEOUT_S", 2)  # libpq's shortest; 10 s by default
    monkeypatch.delenv("PGCONNECT_TIMEOUT", raising=False)
    monkeypatch.setenv("BAD_DB", url)
    assert (
        cli(
            [
                "data",
                "pg:events",
                "--connection",
                "env:BAD_DB",
                "--item-col",
                "sku",
                "--data-dir",
                str(tmp_path),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("ncflow: error: PostgreSQL table events failed: "), (
        err
    )
    password = re.match(r"^\s*(postgresql://)?[^:]*:(.*)@", url).group(2)
    assert not [piece for piece in pieces(password) if piece in err], err


@pytest.mark.parametrize(
    ("case", "message"),
    [("a leading space", 'missing "=" after "postgresql://***"'), ("refused", "Connection refused"),
     ("no answer", "timeout expired")],
)  # fmt: skip
def test_a_malformed_string_or_an_unreachable_server_fails_at_once_not_retried(
    prefect_server, result_storage, shop, silent_port, tmp_path, monkeypatch, capsys, case, message
):
    monkeypatch.setattr(postgres, "CONNECT_TIMEOUT_S", 2)  # libpq's shortest; 10 s by default
    monkeypatch.delenv("PGCONNECT_TIMEOUT", raising=False)
    monkeypatch.chdir(tmp_path)
    variable = "BAD_DB_" + re.sub(r"\W", "_", case).upper()
    monkeypatch.setenv(variable, failed_urls(shop[0], silent_port)[case])
    args = ["train", "ncf", "--dataset", "pg:events", "--connection", f"env:{variable}", "--item-col", "sku"]
    assert cli([*args, *SMALL_NCF]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("ncflow: error: PostgreSQL table events failed") and message in err, err
    run, tasks = asyncio.run(run_and_tasks(f"env:{variable}"))
    assert run.state.name == "Failed" and run.state.message == err.removeprefix("ncflow: error: ")
    assert [(t.name, t.state.name, t.run_count) for t in tasks] == [("fetch-pg:events", "Failed", 1)]
    # and nothing Prefect keeps of the failed run holds the password
    stored, kept = stored_results(result_storage), asyncio.run(what_prefect_keeps())
    assert message in stored and message in kept
    for piece in pieces(PASSWORD, size=6):  # (4 would find "cret" in the runs' "secret:shop-db")
        assert piece not in stored and piece not in kept, piece


async def run_and_tasks(connection: str):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    async with get_client() as client:
        run = next(r for r in await client.read_flow_runs() if r.parameters.get("connection") == connection)
        tasks = await client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id])))
    return run, tasks


def test_an_unchanged_table_skips_retraining_and_one_new_row_retrains(
    prefect_server, postgres, shop, tmp_path, monkeypatch, capsys
):
    url, _ = shop
    postgres.psql("DROP TABLE IF EXISTS orders; CREATE TABLE orders AS SELECT * FROM events", "shop")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NCFLOW_DATABASE_URL", url)
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
    args = ["train", "ncf", "--dataset", "pg:orders", *columns, *SMALL_NCF]

    def train() -> dict:
        assert cli(args) == 0
        return json.loads(capsys.readouterr().out.strip().splitlines()[-1])

    assert train()["version"] == 1
    again = train()  # a new snapshot of the same rows: the same md5, so the same data
    assert again["skipped"] and again["version"] == 1, again
    assert again["reason"].startswith("no new data since v1 (the champion)")
    postgres.psql(
        "INSERT INTO orders SELECT customer, sku, rating, ts + interval '1 second' FROM orders LIMIT 1",
        "shop",
    )
    grown = train()
    assert not grown.get("skipped") and grown["version"] == 2, grown
    assert len(list((tmp_path / "registry" / "ncf" / "orders").glob("v*"))) == 2
