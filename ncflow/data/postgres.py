"""Interaction logs in PostgreSQL: a table (`--dataset pg:events`) or a query (`--source "SELECT ..."`),
read through ADBC's PostgreSQL driver into one Arrow table and frozen as a Parquet snapshot.

Why ADBC (adbc-driver-postgresql, an Apache Arrow project with a bundled libpq): it reads with
PostgreSQL's binary COPY protocol straight into Arrow columns, with no Python object per row, and its
wheels need nothing else installed. (ConnectorX is faster on many cores but pins its own Arrow build;
psycopg hands over Python rows.)

Why a snapshot: the training run reads one fixed file, whatever the table does meanwhile, and its
md5 names the data exactly (the processed folder's cache key; "no new data" in later runs). The
rows are sorted by every selected column in the database, so the same data gives the same bytes.

The connection string is never a parameter. `connection` names where to find it, `env:VARIABLE`
(default `env:NCFLOW_DATABASE_URL`) or `secret:BLOCK` (a Prefect Secret block), and it is kept out of
every message: errors quote the driver's first line with the string and its password masked, also
where libpq echoes a malformed string, or a piece of it (an unescaped `@` splits a password).

Failing fast: each connection attempt gives up after CONNECT_TIMEOUT_S (libpq's `connect_timeout`, unless
the string or PGCONNECT_TIMEOUT sets one). A string that cannot be parsed and a server that cannot be
reached (refused, timed out, an unknown host) fail at once, not retried: an operator has to act. Only a
server that answered and then went away (a restart mid-extract) is worth another try.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path
from urllib.parse import unquote

import pyarrow as pa
import pyarrow.parquet as pq

from configs import Columns
from ncflow.data.log_files import mapped
from ncflow.errors import NcflowError, TransientError, first_line

PREFIX = "pg:"
DEFAULT_CONNECTION = "env:NCFLOW_DATABASE_URL"
KEEP_SNAPSHOTS = 3  # per dataset: the newest few, so a run that is still reading one keeps it
IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*)?$")
CONNECTION = re.compile(r"^(env|secret):[A-Za-z0-9_.-]+$")
CONNECT_TIMEOUT_S = 10  # libpq waits for ever without one (a host that drops packets)
SHORTEST_MASKED = 4  # pieces of a password this long or longer are masked wherever they appear


def is_postgres(dataset: str) -> bool:
    return dataset.startswith(PREFIX)


def table_name(dataset: str) -> str:
    """`pg:events` -> `events` (or `schema.table`); NcflowError for anything else."""
    name = dataset.removeprefix(PREFIX)
    if not IDENTIFIER.match(name):
        raise NcflowError(
            f"{dataset!r}: a PostgreSQL dataset is pg:TABLE or pg:SCHEMA.TABLE (letters, digits, _); "
            'give a query with --source "SELECT ..."'
        )
    return name


def check_connection(reference: str) -> str:
    if not CONNECTION.match(reference):
        raise NcflowError(
            f"connection {reference!r} must name where the connection string is, env:VARIABLE or "
            "secret:BLOCK (a Prefect Secret block), never the string itself"
        )
    return reference


def resolve_connection(reference: str) -> str:
    kind, _, name = check_connection(reference).partition(":")
    if kind == "env":
        url = os.environ.get(name)
        if not url:
            raise NcflowError(
                f"the environment variable {name} is not set: it must hold the PostgreSQL connection "
                "string (postgresql://USER:PASSWORD@HOST:PORT/DATABASE)"
            )
        return url
    from prefect.blocks.system import Secret

    try:
        return str(Secret.load(name).get())
    except ValueError:
        raise NcflowError(
            f"no Prefect Secret block named {name!r}: create it (UI: Blocks, or Secret(value=URL).save({name!r}))"
        ) from None


def passwords(url: str) -> list[str]:
    """The password of a URL (everything between the user's `:` and the last `@`, so an unescaped `@`
    stays inside it) or of a `key=value` string, as written and percent-decoded, as libpq reads it."""
    found = re.match(r"^\s*[A-Za-z][A-Za-z0-9+.-]*:/*[^:/@]*:(.*)@", url, re.S)
    keyword = re.search(r"\bpassword\s*=\s*('(?:[^'\\]|\\.)*'?|\S+)", url)
    written = [m.group(1).strip("'") for m in (found, keyword) if m and m.group(1)]
    return sorted({p for w in written for p in (w, unquote(w)) if p}, key=len, reverse=True)


def masked(message: str, url: str) -> str:
    """`message` without the connection string or its password, whole or in pieces."""
    for whole in (url, url.strip()):
        if whole:
            message = message.replace(whole, "postgresql://***")
    for password in passwords(url):
        message = message.replace(password, "***")
        message = _mask_pieces(message, password)
    return message


def _mask_pieces(message: str, secret: str) -> str:
    """Every run of SHORTEST_MASKED or more characters of `message` that is a piece of `secret`."""
    out, i = [], 0
    while i < len(message):
        n = 0
        while i + n < len(message) and message[i : i + n + 1] in secret:
            n += 1
        if n >= min(SHORTEST_MASKED, len(secret)):
            out.append("***")
            i += n
        else:
            out.append(message[i])
            i += 1
    return "".join(out)


def with_connect_timeout(url: str) -> str:
    """`url` with libpq's connect_timeout, unless it or PGCONNECT_TIMEOUT already sets one."""
    if "connect_timeout" in url or os.environ.get("PGCONNECT_TIMEOUT"):
        return url
    if re.match(r"^postgres(ql)?://", url):
        return f"{url}{'&' if '?' in url else '?'}connect_timeout={CONNECT_TIMEOUT_S}"
    if "://" not in url and re.match(r"^\s*\w+\s*=", url):  # key=value pairs
        return f"{url} connect_timeout={CONNECT_TIMEOUT_S}"
    return url  # malformed: libpq's own error says how, about the string as given


def quoted(name: str) -> str:
    return ".".join('"' + part.replace('"', '""') + '"' for part in name.split("."))


def extract_sql(dataset: str, query: str | None, columns: Columns) -> str:
    """The mapped columns of the table (or the query's result), sorted by all of them."""
    relation = f"({query.strip().rstrip(';')}) AS source" if query else quoted(table_name(dataset))
    names = [quoted(c) for c in mapped(columns).values() if c is not None]
    order = ", ".join(str(i + 1) for i in range(len(names)))
    return f"SELECT {', '.join(names)} FROM {relation} ORDER BY {order}"


def transient(err: Exception) -> bool:
    """Worth another try: the server answered, then went away. Not a string libpq cannot parse, a server
    it cannot reach (within the connect timeout), a FATAL answer (a wrong password, user or database) or
    a wrong table, column or query: those fail the same way again, and at once."""
    import adbc_driver_postgresql.dbapi as adbc

    text = str(err)
    return isinstance(err, adbc.OperationalError) and "Failed to connect" not in text and "FATAL:" not in text


def snapshot(dataset: str, query: str | None, columns: Columns, connection: str, folder: Path) -> Path:
    """Run the extract and write it as `folder/snapshot-<md5>.parquet`; the path."""
    import adbc_driver_postgresql.dbapi as adbc

    url = with_connect_timeout(resolve_connection(connection))
    what = f"query for {dataset}" if query else f"table {table_name(dataset)}"
    failure = None
    try:
        with adbc.connect(url) as conn, conn.cursor() as cursor:
            cursor.execute(extract_sql(dataset, query, columns))
            table = cursor.fetch_arrow_table()
    except adbc.Error as err:
        message = f"PostgreSQL {what} failed: {masked(first_line(err), url)}"
        failure = (TransientError if transient(err) else NcflowError)(message)
    if failure is not None:  # raised here, not in the except block: `from None` only hides the driver's
        raise failure  # error, which stays the __context__ that Prefect pickles into a failed run's result
    table = table.cast(pa.schema([f.remove_metadata() for f in table.schema]))  # the driver's type notes
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".snapshot.", suffix=".part", dir=folder)
    os.close(fd)
    try:
        pq.write_table(table, tmp)
        digest = hashlib.md5(Path(tmp).read_bytes()).hexdigest()
        final = folder / f"snapshot-{digest}.parquet"
        os.replace(tmp, final)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    final.touch()  # the newest, even when the data did not change
    for old in sorted(folder.glob("snapshot-*.parquet"), key=lambda p: p.stat().st_mtime)[:-KEEP_SNAPSHOTS]:
        old.unlink(missing_ok=True)
    return final
