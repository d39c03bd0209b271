"""The data checks before training (ncflow/data/checks.py): each check passes on a clean log and refuses
the fault it is for, with one line naming it; a refused source ends the flow run Failed, with that line,
before anything is trained or registered; an accepted one becomes the snapshot the next run compares with."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pyarrow as pa
import pytest
from own_logs import LOG_FLAGS, SMALL_NCF, string_log, write_csv

from configs import Columns, PreprocessConfig
from ncflow.cli import main as cli
from ncflow.data import snapshots
from ncflow.data.checks import CheckLimits, check_log
from ncflow.data.log_files import canonical
from ncflow.data.report import report_markdown
from ncflow.data.validate import check_source
from tasks.check import DataCheckFailed, check_data

NOW = dt.datetime(2026, 12, 5, tzinfo=dt.UTC)
DAY = 86_400
COLUMNS = Columns(user="customer", item="sku", rating="rating", timestamp="ts")


def log_of(rows: list[tuple]) -> pa.Table:
    customer, sku, rating, ts = zip(*rows)
    return pa.table({"customer": list(customer), "sku": list(sku), "rating": list(rating), "ts": list(ts)})


def clean_rows(n_users: int = 20, per_user: int = 5, start: int = 1_700_000_000) -> list[tuple]:
    return [
        (f"c{u}", f"SKU-{(u + j) % 13}", 4.0, start + (u * per_user + j) * 3_600)
        for u in range(n_users)
        for j in range(per_user)
    ]


def checked(rows, previous=None, limits=None):
    raw = canonical(log_of(rows), COLUMNS, "events.csv")
    snapshot = snapshots.summarize("events", raw, "md5")
    report = check_log("events", raw, snapshot, previous, limits or CheckLimits(), now=NOW)
    return report, {c.name: c for c in report.checks}


def test_a_clean_log_passes_every_check_and_says_what_it_saw():
    report, checks = checked(clean_rows())
    assert report.passed and report.reason == ""
    assert checks["schema and types"].detail == "user string, item string, rating number, time seconds"
    assert checks["duplicate rows"].detail.startswith("0 rows (0.0%)")
    assert checks["timestamps"].detail == "from 2023-11-14 to 2023-11-19"
    assert checks["new users and items"].detail == "20 users, 13 items"


def test_nulls_and_empty_ids_are_refused_by_column():
    rows = clean_rows()
    rows[3] = (None, *rows[3][1:])
    rows[4] = (rows[4][0], "", *rows[4][2:])  # an empty SKU in a CSV reads as ""
    report, checks = checked(rows)
    assert not checks["nulls"].passed
    assert checks["nulls"].detail.startswith("1 without a user, 1 without a item (null or empty)")
    assert report.reason.startswith("nulls: 1 without a user")


def test_exact_repeats_above_the_share_are_refused_and_repeated_pairs_at_other_times_are_not():
    rows = clean_rows()  # 100 rows
    again = [(c, s, r, t + 60) for c, s, r, t in rows[:50]]  # the same pairs, later: ordinary
    assert checked(rows + again)[0].passed
    _, checks = checked(rows + rows[:5])
    assert checks["duplicate rows"].passed and checks["duplicate rows"].detail.startswith("5 rows (4.8%)")
    report, checks = checked(rows + rows[:20])
    assert not checks["duplicate rows"].passed
    assert "20 rows (16.7%) repeat another row exactly: above the limit of 10%" in report.reason


def test_times_in_the_future_or_at_zero_are_refused():
    rows = clean_rows()
    future = int(NOW.timestamp()) + 3 * DAY
    rows[0] = (*rows[0][:3], future)
    rows[1] = (*rows[1][:3], 0)
    _, checks = checked(rows)
    assert not checks["timestamps"].passed
    assert checks["timestamps"].detail == "1 in the future (latest 2026-12-08) and 1 at or before 1970-01-01"
    rows[0] = (*rows[0][:3], int(NOW.timestamp()) + 3_600)  # an hour ahead: a clock, not a bug
    assert checked(rows)[1]["timestamps"].detail == "1 at or before 1970-01-01"
    rows[1] = (*rows[1][:3], 1)
    assert checked(rows)[1]["timestamps"].passed


def test_a_drop_in_rows_beyond_the_limit_is_refused_and_new_ids_are_counted():
    before_raw = canonical(log_of(clean_rows(20)), COLUMNS, "events.csv")
    previous = snapshots.summarize("events", before_raw, "md5-before")
    grown, checks = checked(clean_rows(25), previous)
    assert grown.passed
    assert checks["row count"].detail == "125 rows, +25.0% against the previous snapshot's 100"
    assert checks["new users and items"].detail.endswith(
        "5 new users and 0 new items since the previous snapshot"
    )
    report, checks = checked(clean_rows(13), previous)
    assert not checks["row count"].passed
    assert (
        report.reason
        == "row count: 65 rows, -35.0% against the previous snapshot's 100: a drop above the limit of 30%"
    )
    assert checked(clean_rows(13), previous, CheckLimits(max_row_drop=0.5))[0].passed


def test_a_bad_schema_and_an_empty_window_fail_the_report(tmp_path):
    path = tmp_path / "events.csv"
    path.write_text("customer,sku,rating,ts\nc1,SKU-1,good,1700000000\n")
    report = check_source("events", path, "md5", tmp_path, PreprocessConfig(columns=COLUMNS), CheckLimits())
    assert not report.passed and report.snapshot is None
    assert re.fullmatch(
        r"schema and types: column 'rating' of .*events.csv must hold numbers \(ratings\)", report.reason
    )
    write_csv(log_of(clean_rows()), path)
    window = PreprocessConfig(columns=COLUMNS, since=dt.date(2024, 1, 1))
    report = check_source("events", path, "md5", tmp_path, window, CheckLimits())
    assert (
        report.reason.startswith("time window: ")
        and "no interactions in the time window [2024-01-01, now)" in report.reason
    )


def test_the_report_shows_the_table_and_a_picture_of_each_day():
    report, _ = checked(clean_rows())
    text = report_markdown(report)
    assert text.startswith("**Data checks passed** for events") and "| duplicate rows | passed |" in text
    svg = ET.fromstring(base64.b64decode(re.search(r"base64,([A-Za-z0-9+/=]+)\)", text).group(1)))
    bars = [r for r in svg.iter("{http://www.w3.org/2000/svg}rect") if r.get("fill") == "#1f77b4"]
    assert len(bars) == len(report.daily) == 6 and sum(n for _, n in report.daily) == 100  # 14 to 19 Nov
    assert all(float(b.get("height")) > 0 for b in bars)


def test_the_task_keeps_each_accepted_snapshot_and_refuses_a_shrunken_source(tmp_path):
    path = write_csv(log_of(clean_rows(20)), tmp_path / "events.csv")
    config = PreprocessConfig(columns=COLUMNS)
    raw = {"path": str(path), "md5": "one"}
    assert check_data.fn("events", raw, str(tmp_path), config, CheckLimits()) == {
        "rows": 100,
        "users": 20,
        "items": 13,
    }
    assert json.loads((tmp_path / "snapshots" / "events" / "snapshot.json").read_text())["rows"] == 100
    write_csv(log_of(clean_rows(10)), path)
    with pytest.raises(DataCheckFailed, match=r"^data check failed for events: row count: 50 rows, -50.0%"):
        check_data.fn("events", {"path": str(path), "md5": "two"}, str(tmp_path), config, CheckLimits())
    assert snapshots.load(tmp_path, "events").md5 == "one"  # a refused source is not the new reference


async def flow_runs_and_artifacts(name: str):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    async with get_client() as client:
        runs = await client.read_flow_runs()
        found = await client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[name]))
        )
    return runs, found


def test_a_failed_check_fails_the_run_with_one_line_and_registers_nothing(
    prefect_server, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    events = string_log(tmp_path / "log")
    ts = events.column("ts").to_pylist()
    ts[:3] = [0, 0, 0]  # an export that lost three times
    write_csv(events.set_column(3, "ts", pa.array(ts)), tmp_path / "broken.csv")
    assert cli(["train", "ncf", "--dataset", "broken.csv", *LOG_FLAGS, *SMALL_NCF]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err == "ncflow: error: data check failed for broken: timestamps: 3 at or before 1970-01-01"
    assert not (tmp_path / "registry").exists() and not (tmp_path / "runs").exists()
    assert not list((tmp_path / "data").glob("processed/broken-*"))  # it stopped before preprocessing
    runs, artifacts = asyncio.run(flow_runs_and_artifacts("broken-data-report"))
    run = next(r for r in runs if r.parameters.get("dataset") == "broken.csv")
    assert run.state.name == "Failed"
    assert artifacts and artifacts[0].data.startswith("**Data checks failed** for broken: timestamps")
    assert Path("data/snapshots/broken").exists() is False
