"""The data checks as a person reads them in the Prefect UI: the verdict in bold, a table of the checks,
and the daily volume of the source as a picture (an SVG in a data URI, as ncflow/learning_curve.py
explains), where a broken day or a missing week shows at a glance: it spans the run's whole time window
(one bar per day, or per few days on a long log) and marks in red the days that fail a check."""

from __future__ import annotations

import datetime as dt
import math
from xml.sax.saxutils import escape

from ncflow.data.checks import DataReport
from ncflow.learning_curve import nice_ticks, svg_markdown_image

WIDTH, HEIGHT = 720, 220
MARGIN = {"left": 64, "right": 16, "top": 30, "bottom": 36}  # left: at least; it grows with the labels
FONT = 11
CHAR_W = 0.6 * FONT  # a generous width per character: labels are placed to fit, not to touch
MAX_BARS = 366  # beyond, a bar per few days: a year of days still reads one by one
BAR, FAILED = "#1f77b4", "#d62728"
DAYS_LISTED = 10


def report_markdown(report: DataReport) -> str:
    head = (
        f"**Data checks passed** for {report.dataset}"
        if report.passed
        else f"**Data checks failed** for {report.dataset}: {report.reason}. Nothing was trained or registered."
    )
    lines = [head, ""]
    if report.snapshot is not None:
        window = (
            f"; {report.window_rows:,} in the run's time window" if report.window_rows is not None else ""
        )
        lines += [f"{report.snapshot.rows:,} rows (md5 {report.snapshot.md5}){window}.", ""]
    lines += ["| check | result | detail |", "|---|---|---|"]
    lines += [f"| {c.name} | {'passed' if c.passed else '**failed**'} | {c.detail} |" for c in report.checks]
    if report.daily:
        lines += ["", volume_markdown(report.daily, report.failing_days)]
    if report.failing_days:
        days = [f"{d} ({', '.join(names)})" for d, names in report.failing_days.items()]
        more = f", and {len(days) - DAYS_LISTED:,} more" if len(days) > DAYS_LISTED else ""
        lines += ["", "Days that fail a check: " + ", ".join(days[:DAYS_LISTED]) + more + "."]
    return "\n".join(lines) + "\n"


def volume_markdown(daily: list[tuple[dt.date, int]], failing: dict[dt.date, list[str]] | None = None) -> str:
    first, last = daily[0][0], daily[-1][0]
    return svg_markdown_image(volume_svg(daily, failing), f"interactions per day, {first} to {last}")


def bins(
    daily: list[tuple[dt.date, int]], failing: set[dt.date]
) -> tuple[int, list[tuple[dt.date, int, bool]]]:
    """(days per bar, [(first day, rows, fails)]): a bar per day up to MAX_BARS days, else per few days."""
    width = math.ceil(len(daily) / MAX_BARS)
    out = []
    for i in range(0, len(daily), width):
        chunk = daily[i : i + width]
        out.append((chunk[0][0], sum(n for _, n in chunk), any(d in failing for d, _ in chunk)))
    return width, out


def volume_svg(daily: list[tuple[dt.date, int]], failing: dict[dt.date, list[str]] | None = None) -> str:
    """Bars of rows per day over the whole of `daily`, a y axis of round counts, the first, middle and
    last day labelled (inside the picture), and the `failing` days in red with a mark under the axis."""
    width, bars = bins(daily, set(failing or ()))
    ticks = nice_ticks(0, max(max(n for _, n, _ in bars), 1), 4)
    top = ticks[-1]
    labels = [f"{t:,.0f}" for t in ticks]
    left = max(MARGIN["left"], 12 + CHAR_W * max(len(t) for t in labels))
    plot_w = WIDTH - left - MARGIN["right"]
    plot_h = HEIGHT - MARGIN["top"] - MARGIN["bottom"]
    bar = plot_w / len(bars)
    x0, y0 = left, MARGIN["top"] + plot_h
    per = "day" if width == 1 else f"{width} days"
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'font-family="sans-serif" font-size="{FONT}">',
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>',
        f'<text x="{x0}" y="18" font-size="13">interactions per {per}</text>',
    ]
    if any(fails for _, _, fails in bars):
        legend = "fails a check"
        parts.append(
            f'<rect x="{WIDTH - MARGIN["right"] - 0.5 * FONT * len(legend) - 14:.1f}" y="9" width="10" height="10" '
            f'fill="{FAILED}"/><text x="{WIDTH - MARGIN["right"]}" y="18" text-anchor="end">{legend}</text>'
        )
    for t, label in zip(ticks, labels):
        y = y0 - plot_h * t / top
        parts.append(
            f'<line x1="{x0:.1f}" y1="{y:.1f}" x2="{x0 + plot_w:.1f}" y2="{y:.1f}" stroke="#e5e5e5"/>'
        )
        parts.append(f'<text x="{x0 - 6:.1f}" y="{y + 4:.1f}" text-anchor="end">{label}</text>')
    for i, (_, count, fails) in enumerate(bars):
        h = plot_h * count / top
        x = x0 + i * bar
        if count:  # an empty day is the gap between bars
            parts.append(
                f'<rect x="{x + 0.5:.1f}" y="{y0 - h:.1f}" width="{max(bar - 1, 0.5):.1f}" height="{h:.1f}" '
                f'fill="{FAILED if fails else BAR}"/>'
            )
        if fails:  # seen even where the bar is too short to see
            parts.append(
                f'<rect x="{x:.1f}" y="{y0 + 2}" width="{max(bar, 2):.1f}" height="5" fill="{FAILED}"/>'
            )
    anchors = {0: ("start", x0), len(bars) - 1: ("end", x0 + plot_w)}  # the ends stay inside
    for i in sorted({0, len(bars) // 2, len(bars) - 1}):
        anchor, x = anchors.get(i, ("middle", x0 + (i + 0.5) * bar))
        parts.append(
            f'<text x="{x:.1f}" y="{y0 + 20}" text-anchor="{anchor}">{escape(str(bars[i][0]))}</text>'
        )
    parts.append(f'<line x1="{x0:.1f}" y1="{y0}" x2="{x0 + plot_w:.1f}" y2="{y0}" stroke="#444"/>')
    parts.append("</svg>")
    return "\n".join(parts)
