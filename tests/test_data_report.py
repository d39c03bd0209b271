"""The data report's picture of daily volume (ncflow/data/report.py, fed by ncflow/data/checks.py), read
back from its SVG: it spans the run's whole time window, marks the days that fail a check, and every
label lies inside the picture."""

from __future__ import annotations

import base64
import datetime as dt
import re
import xml.etree.ElementTree as ET

import pyarrow as pa
from own_logs import write_csv
from svg_text import SVG, texts_outside

from configs import Columns, PreprocessConfig
from ncflow.data import snapshots
from ncflow.data.checks import CheckLimits, check_log
from ncflow.data.log_files import canonical
from ncflow.data.report import report_markdown, volume_svg
from ncflow.data.validate import check_source

NOW = dt.datetime(2026, 12, 5, tzinfo=dt.UTC)
FIRST = dt.date(2026, 3, 1)
RED = "#d62728"  # a failing day
COLUMNS = Columns(user="customer", item="sku", rating="rating", timestamp="ts")


def epoch_s(day: dt.date, hour: int = 12) -> int:
    return int(dt.datetime(day.year, day.month, day.day, hour, tzinfo=dt.UTC).timestamp())


def log_over(days: int, extra: list[tuple] = ()) -> pa.Table:
    """Three purchases a day for `days` days from FIRST (200 days: more than the 90 the report once cut
    to), then `extra` rows."""
    rows = [
        (f"c{(d * 3 + j) % 40}", f"SKU-{(d + j) % 17}", 1.0, epoch_s(FIRST + dt.timedelta(days=d)))
        for d in range(days)
        for j in range(3)
    ] + list(extra)
    customer, sku, rating, ts = zip(*rows)
    return pa.table({"customer": list(customer), "sku": list(sku), "rating": list(rating), "ts": list(ts)})


def report_of(table: pa.Table):
    raw = canonical(table, COLUMNS, "shop.csv")
    return check_log("shop", raw, snapshots.summarize("shop", raw, "md5"), None, CheckLimits(), now=NOW)


def picture(markdown: str) -> ET.Element:
    return ET.fromstring(base64.b64decode(re.search(r"base64,([A-Za-z0-9+/=]+)\)", markdown).group(1)))


def axis(root: ET.Element) -> tuple[float, float, float]:
    """(left, right, y) of the x axis: the dark line under the bars."""
    line = next(e for e in root.iter(f"{SVG}line") if e.get("stroke") == "#444")
    return float(line.get("x1")), float(line.get("x2")), float(line.get("y1"))


def date_labels(root: ET.Element) -> list[tuple[str, ET.Element]]:
    return [
        (e.text, e) for e in root.iter(f"{SVG}text") if e.text and re.fullmatch(r"\d{4}-\d\d-\d\d", e.text)
    ]


def test_the_picture_spans_the_whole_log_and_the_whole_time_window(tmp_path):
    last = FIRST + dt.timedelta(days=199)
    report = report_of(log_over(200))
    assert report.daily[0] == (FIRST, 3) and report.daily[-1] == (last, 3) and len(report.daily) == 200
    labels = [text for text, _ in date_labels(picture(report_markdown(report)))]
    assert labels[0] == str(FIRST) and labels[-1] == str(last)

    # a run's window [since, until): drawn whole, empty days included, and only it
    since, until = FIRST - dt.timedelta(days=10), FIRST + dt.timedelta(days=150)
    path = write_csv(log_over(200), tmp_path / "shop.csv")
    config = PreprocessConfig(columns=COLUMNS, since=since, until=until)
    report = check_source("shop", path, "md5", tmp_path, config, CheckLimits())
    assert report.passed, report.reason
    assert report.daily[0] == (since, 0) and report.daily[-1] == (until - dt.timedelta(days=1), 3)
    assert sum(n for _, n in report.daily) == 150 * 3 == report.window_rows
    root = picture(report_markdown(report))
    labels = date_labels(root)
    assert labels[0][0] == str(since) and labels[-1][0] == str(until - dt.timedelta(days=1))
    left, right, _ = axis(root)
    bars = [r for r in root.iter(f"{SVG}rect") if r.get("fill") == "#1f77b4"]
    assert len(bars) == 150  # one per day with rows; the first 10 days of the window are empty
    step = (right - left) / 160
    assert abs(float(bars[0].get("x")) - (left + 10 * step)) < 1  # FIRST is the 11th day of 160


def test_a_long_log_draws_a_bar_per_few_days_from_its_first_to_its_last_day():
    daily = [(FIRST + dt.timedelta(days=i), i % 7) for i in range(2_000)]
    root = ET.fromstring(volume_svg(daily))
    bars = [r for r in root.iter(f"{SVG}rect") if r.get("fill") == "#1f77b4"]
    assert 300 < len(bars) <= 366
    assert "interactions per 6 days" in "".join(root.itertext())
    labels = [text for text, _ in date_labels(root)]
    assert labels[0] == str(FIRST) and labels[-1] == str(
        FIRST + dt.timedelta(days=1_998)
    )  # the last bar's first day


def test_days_with_a_refused_row_are_marked_and_listed():
    bad_day, future = FIRST + dt.timedelta(days=120), NOW.date() + dt.timedelta(days=3)
    extra = [
        (None, "SKU-1", 1.0, epoch_s(bad_day)),  # a row without a customer
        ("c1", "SKU-2", 1.0, epoch_s(future)),  # a clock three days ahead
        ("c2", "SKU-3", 1.0, 0),  # a default time
    ]
    report = report_of(log_over(200, extra))
    assert not report.passed
    assert report.failing_days == {
        dt.date(1970, 1, 1): ["timestamps"],
        bad_day: ["nulls"],
        future: ["timestamps"],
    }
    assert report.daily[0][0] == FIRST and report.daily[-1] == (future, 1)  # the future day is in the log
    markdown = report_markdown(report)
    assert (
        f"Days that fail a check: 1970-01-01 (timestamps), {bad_day} (nulls), {future} (timestamps)."
        in markdown
    )
    root = picture(markdown)
    left, right, y_axis = axis(root)
    step = (right - left) / len(report.daily)
    marks = sorted(
        float(r.get("x"))
        for r in root.iter(f"{SVG}rect")
        if r.get("fill") == RED and float(r.get("y")) > y_axis
    )
    expected = [left + step * (d - FIRST).days for d in (bad_day, future)]
    assert len(marks) == 2 and all(abs(m - e) < 1 for m, e in zip(marks, expected)), (marks, expected)
    red_bars = [
        r
        for r in root.iter(f"{SVG}rect")
        if r.get("fill") == RED and abs(float(r.get("y")) + float(r.get("height")) - y_axis) < 0.2
    ]
    assert len(red_bars) == 2  # the failing days' own bars are red too
    assert "fails a check" in "".join(root.itertext())
    assert not report_of(log_over(20)).failing_days  # a clean log marks nothing


def test_every_label_lies_inside_the_picture():
    for daily in (
        [(FIRST + dt.timedelta(days=i), 2_500_000 + i) for i in range(90)],  # wide count labels
        [(FIRST + dt.timedelta(days=i), 3) for i in range(1_000)],  # bars of several days
        [(FIRST, 7)],  # a single day
    ):
        assert texts_outside(ET.fromstring(volume_svg(daily))) == [], len(daily)
        marked = ET.fromstring(volume_svg(daily, {daily[-1][0]: ["timestamps"]}))  # and the legend
        assert texts_outside(marked) == [], len(daily)
