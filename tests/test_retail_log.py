"""A shop's log as a new user has it (UCI Online Retail's shape, tests/own_logs.py's `retail_log`): text
times as M/D/YYYY H:MM, a quarter of the rows without a customer, returns as negative quantities,
product names; read with flags only (`ncflow data`, `ncflow train`), checked by the data checks, and
recommended by name. Also `--window-days` on a log that ended in the past, and a column mapping that
swaps users and items."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from own_logs import RETAIL_FLAGS, retail_log, write_csv
from test_data_checks import flow_runs_and_artifacts, log_of

from configs import Columns, PreprocessConfig
from ncflow.cli import main as cli
from ncflow.data import snapshots
from ncflow.data.checks import CheckLimits, check_log
from ncflow.data.log_files import canonical, read_log
from ncflow.data.preprocess import read_manifest
from ncflow.data.row_filters import log_window
from ncflow.data.validate import accept, check_source

RETAIL = Columns(
    user="CustomerID", item="StockCode", rating="Quantity", timestamp="InvoiceDate", title="Description",
    time_format="%m/%d/%Y %H:%M",
)  # fmt: skip
NEWEST = dt.date(2011, 12, 8)  # retail_log's newest row (a return, a day after the last purchase)


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    """(the log as a table, its CSV file)."""
    folder = tmp_path_factory.mktemp("shop")
    table = retail_log(folder)
    return table, write_csv(table, folder / "retail.csv")


def data(capsys, *args: str) -> tuple[int, str, str]:
    code = cli(["data", *args])
    printed = capsys.readouterr()
    return code, printed.out, printed.err.strip()


def test_text_times_read_with_time_format_and_a_bad_value_is_one_line(shop, tmp_path, capsys):
    table, path = shop
    raw = read_log(path, RETAIL)
    first = raw.table.column("timestamp")[0].as_py()
    assert raw.ticks_per_second == 1 and first == 1_291_191_960  # "12/1/2010 8:26", UTC
    assert str(raw.table.schema.field("item").type) == "string"  # 85123A-like codes stay strings

    flags = [str(path), "--data-dir", str(tmp_path), "--drop-null-ids", *RETAIL_FLAGS[:6]]
    code, _, err = data(capsys, *flags)  # no --time-format: the error says which flag reads them
    assert code == 2 and err.endswith(
        "found '12/1/2010 8:26': give its format with --time-format (e.g. %m/%d/%Y %H:%M)"
    )
    code, _, err = data(capsys, *flags, "--time-format", "%d/%m/%Y %H:%M")  # day and month swapped
    assert code == 2 and len(err.splitlines()) == 1
    assert (
        err.startswith("ncflow: error: column 'InvoiceDate' of " + str(path) + ": '12/13/2010")
        and "does not match --time-format '%d/%m/%Y %H:%M'" in err
    )
    code, out, _ = data(capsys, *flags, "--time-format", "%m/%d/%Y %H:%M")
    assert code == 0 and read_manifest(out.strip().splitlines()[-1])["counts"]["users"] == 500


def test_null_ids_fail_the_check_naming_the_flag_and_drop_null_ids_counts_them(shop, tmp_path):
    table, path = shop
    empty = table.column("CustomerID").null_count
    assert 0.2 < empty / table.num_rows < 0.3
    config = PreprocessConfig(columns=RETAIL)
    report = check_source("retail", path, "md5", tmp_path, config, CheckLimits())
    assert not report.passed
    assert report.reason == (
        f"nulls: {empty:,} without a user (null or empty) in {path}; --drop-null-ids drops rows without "
        "a user or item"
    )
    dropping = PreprocessConfig(columns=RETAIL, drop_null_ids=True)
    report = check_source("retail", path, "md5", tmp_path, dropping, CheckLimits())
    checks = {c.name: c for c in report.checks}
    assert report.passed, report.reason
    assert checks["nulls"].detail == f"{empty:,} without a user (null or empty): dropped (--drop-null-ids)"
    assert checks["dropped rows"].detail == f"{empty:,} rows without a user or item id (--drop-null-ids)"


def test_min_rating_drops_returns_counted_and_a_quantity_is_never_a_weight(shop, tmp_path, capsys):
    table, path = shop
    has_customer = pc.is_valid(table.column("CustomerID"))
    returns = pc.sum(pc.and_(has_customer, pc.less(table.column("Quantity"), 1))).as_py()
    small = pc.sum(pc.and_(has_customer, pc.less(table.column("Quantity"), 4))).as_py()
    assert returns > 100 and small > 2 * returns
    flags = [str(path), "--data-dir", str(tmp_path), "--drop-null-ids", *RETAIL_FLAGS]
    code, out, err = data(capsys, *flags, "--rating-col", "Quantity", "--min-rating", "1")
    assert code == 0, err
    manifest = read_manifest(out.strip().splitlines()[-1])
    assert manifest["rows"]["dropped_rated_below"] == returns
    assert f"{returns:,} rows rated below the minimum (--min-rating)" in out

    # Mult-VAE's split: the same positives whether or not Quantity is the rating column (before, its
    # MovieLens rule "ratings >= 4" dropped every purchase of fewer than 4, and without a rating column
    # every row: "only 0 users have >= 5 ratings >= 4.0"); --min-rating 1 leaves out what only a return
    # (of an anonymous purchase) showed
    positives = {}
    for name, rating in (
        ("none", []), ("quantity", ["--rating-col", "Quantity"]),
        ("bought", ["--rating-col", "Quantity", "--min-rating", "1"]),
    ):  # fmt: skip
        code, out, err = data(capsys, *flags, *rating, "--protocol", "vaecf")
        assert code == 0, err
        positives[name] = read_manifest(out.strip().splitlines()[-1])["counts"]["train_positives"]
    assert positives["quantity"] == positives["none"] > positives["bought"] > 0.9 * positives["none"]


def test_window_days_counts_back_from_the_newest_row_of_a_log_that_ended(shop, tmp_path, capsys):
    table, path = shop
    raw = read_log(path, RETAIL)
    config = PreprocessConfig(columns=RETAIL, window_days=90)
    window = log_window(raw, config, today=dt.date(2026, 12, 6))
    assert (window.since, window.until) == (NEWEST - dt.timedelta(days=89), None)
    assert window.description == f"last 90 days of the log, ending {NEWEST} (the newest row)"
    on_the_day = log_window(raw, config, today=NEWEST)  # a log that reaches today: counted from today
    assert (
        on_the_day.since == window.since
        and on_the_day.description == f"last 90 days, ending today ({NEWEST})"
    )

    flags = [str(path), "--data-dir", str(tmp_path), "--drop-null-ids", *RETAIL_FLAGS]
    code, out, err = data(capsys, *flags, "--window-days", "90")
    assert code == 0, err  # before: "no interactions in the time window [2026-09-08, now)"
    assert f"window           last 90 days of the log, ending {NEWEST} (the newest row)" in out
    code, out, err = data(capsys, *flags, "--window-days", "30", "--until", "2011-07-01")
    assert code == 0, err
    assert read_manifest(out.strip().splitlines()[-1])["window"] == {
        "since": "2011-06-01", "until": "2011-07-01", "description": "from 2011-06-01 before 2011-07-01",
    }  # fmt: skip


def test_swapped_user_and_item_columns_fail_the_new_ids_check(shop, tmp_path):
    _, path = shop
    config = PreprocessConfig(columns=RETAIL, drop_null_ids=True)
    first = check_source("retail", path, "md5-1", tmp_path, config, CheckLimits())
    assert first.passed, first.reason
    accept(tmp_path, first)
    swapped = RETAIL.model_copy(update={"user": "StockCode", "item": "CustomerID"})
    again = PreprocessConfig(columns=swapped, drop_null_ids=True)
    report = check_source("retail", path, "md5-1", tmp_path, again, CheckLimits())
    assert not report.passed
    assert report.reason == (
        "new users and items: 300 users, 500 items: 300 new users and 500 new items since the previous "
        "snapshot: the users look like its items and the items like its users against the previous "
        "snapshot; the user and item columns may be swapped (--user-col, --item-col) or the mapping "
        "changed (a new log: remove its snapshot folder)"
    )

    # Integer ids of both kinds overlap by chance (users 0-59, items 0-39): the cross overlap shows it
    rows = [(u, (u * 7 + j) % 40, 1.0, 1_700_000_000 + u * 99 + j) for u in range(60) for j in range(5)]
    ints = Columns(user="customer", item="sku", rating="rating", timestamp="ts")
    before = canonical(log_of(rows), ints, "ints.csv")
    previous = snapshots.summarize("ints", before, "md5")
    assert check_log("ints", before, previous, previous, CheckLimits()).passed  # the same log again
    flipped = canonical(log_of([(i, u, r, t) for u, i, r, t in rows]), ints, "ints.csv")
    report = check_log("ints", flipped, snapshots.summarize("ints", flipped, "md5"), previous, CheckLimits())
    assert not report.passed and "the users look like its items and the items like its users" in report.reason


@pytest.mark.parametrize("model", ["ease", "ncf"])
def test_a_shops_log_trains_with_flags_only_in_its_last_90_days_and_recommends_by_name(
    model, prefect_server, shop, tmp_path, monkeypatch, capsys, caplog
):
    """The README's path for a shop: `ncflow train` on the export, then `ncflow recommend` by name.
    `--window-days 90` on a log that ended in 2011 keeps its last 90 days (it failed: no interactions
    in the 90 days before today)."""
    monkeypatch.chdir(tmp_path)
    table, path = shop
    write_csv(table, tmp_path / "retail.csv")
    small = ["--gpus", "0", "--epochs", "2", "--batch-size", "1024", "--mf-dim", "8", "--mlp-layers", "16,8"]
    flags = [
        "--dataset", "retail.csv", *RETAIL_FLAGS, "--drop-null-ids", "--rating-col", "Quantity",
        "--min-rating", "1", "--window-days", "90", *(small if model == "ncf" else []),
    ]  # fmt: skip
    assert cli(["train", model, *flags]) == 0, capsys.readouterr().err[-3000:]
    printed = capsys.readouterr()
    result = json.loads(printed.out.strip().splitlines()[-1])
    assert result["dataset"] == "retail" and result["version"] == 1
    line = f"data check time window: passed, last 90 days of the log, ending {NEWEST} (the newest row): "
    assert line in caplog.text  # the check task's log line
    _, artifacts = asyncio.run(flow_runs_and_artifacts("retail-data-report"))
    assert "| dropped rows | passed |" in artifacts[0].data and "(--min-rating)" in artifacts[0].data
    manifest = read_manifest(next((tmp_path / "data" / "processed").glob("retail-*")))
    assert manifest["window"]["since"] == str(NEWEST - dt.timedelta(days=89))

    who = manifest_user(tmp_path)
    assert (
        cli(["recommend", "--model", model, "--dataset", "retail", "--user", who, "-k", "3", "--json"]) == 0
    )
    answer = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert [row["title"] for row in answer["items"]] == [f"PRODUCT {row['item']}" for row in answer["items"]]
    assert cli(["recommend", "--model", model, "--dataset", "retail", "--user", who, "-k", "3"]) == 0
    table_out = capsys.readouterr().out
    assert all(f"PRODUCT {row['item']}" in table_out for row in answer["items"])


def manifest_user(root) -> str:
    """A user id (as text, as a user types it) of the registered model's data."""
    import pyarrow.parquet as pq

    users = pq.read_table(next((root / "data" / "processed").glob("retail-*")) / "users.parquet")
    return str(users.column("id")[0].as_py())


def test_stock_codes_that_look_numeric_in_the_first_block_are_read_as_text(tmp_path: Path) -> None:
    """pyarrow guesses a CSV column's type from its first block (1 MiB): codes such as 22423 there and
    85123A later must not fail as 'CSV conversion error to int64'."""
    rows = [f"c{i % 500},{20000 + i % 3000},{i}" for i in range(80_000)]  # ~1.4 MB of numeric codes
    rows += ["c1,85123A,80000", "c2,85123A,80001"]
    path = tmp_path / "shop.csv"
    path.write_text("customer,sku,ts\n" + "\n".join(rows) + "\n")
    log = read_log(path, Columns(user="customer", item="sku", rating=None, timestamp="ts"))
    items = log.table.column("item")
    assert pa.types.is_string(items.type) and "85123A" in items.to_pylist()[-2:]
    assert "20001" in set(items.to_pylist()[:5])  # the numeric codes kept as the same text
