"""The data checks as a person reads them in the Prefect UI: the verdict in bold, a table of the checks,
and the daily volume of the source as a picture (an SVG in a data URI, as ncflow/learning_curve.py
explains), where a broken day or a missing week shows at a glance."""

from __future__ import annotations

import datetime as dt
from xml.sax.saxutils import escape

from ncflow.data.checks import DataReport
from ncflow.learning_curve import nice_ticks, svg_markdown_image

WIDTH, HEIGHT = 720, 220
MARGIN = {"left": 64, "right": 16, "top": 30, "bottom": 36}


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
        lines += ["", volume_markdown(report.daily)]
    return "\n".join(lines) + "\n"


def volume_markdown(daily: list[tuple[dt.date, int]]) -> str:
    first, last = daily[0][0], daily[-1][0]
    return svg_markdown_image(volume_svg(daily), f"interactions per day, {first} to {last}")


def volume_svg(daily: list[tuple[dt.date, int]]) -> str:
    """Bars of rows per day, with a y axis of round counts and the first, middle and last day labelled."""
    plot_w = WIDTH - MARGIN["left"] - MARGIN["right"]
    plot_h = HEIGHT - MARGIN["top"] - MARGIN["bottom"]
    ticks = nice_ticks(0, max(max(n for _, n in daily), 1), 4)
    top = ticks[-1]
    bar = plot_w / len(daily)
    x0, y0 = MARGIN["left"], MARGIN["top"] + plot_h
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" '
        'font-family="sans-serif" font-size="11">',
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>',
        f'<text x="{x0}" y="18" font-size="13">interactions per day</text>',
    ]
    for t in ticks:
        y = y0 - plot_h * t / top
        parts.append(f'<line x1="{x0}" y1="{y:.1f}" x2="{x0 + plot_w}" y2="{y:.1f}" stroke="#e5e5e5"/>')
        parts.append(f'<text x="{x0 - 6}" y="{y + 4:.1f}" text-anchor="end">{t:,.0f}</text>')
    for i, (_, count) in enumerate(daily):
        h = plot_h * count / top
        parts.append(
            f'<rect x="{x0 + i * bar + 0.5:.1f}" y="{y0 - h:.1f}" width="{max(bar - 1, 0.5):.1f}" height="{h:.1f}" '
            'fill="#1f77b4"/>'
        )
    for i in sorted({0, len(daily) // 2, len(daily) - 1}):
        x = x0 + (i + 0.5) * bar
        parts.append(
            f'<text x="{x:.1f}" y="{y0 + 16}" text-anchor="middle">{escape(str(daily[i][0]))}</text>'
        )
    parts.append(f'<line x1="{x0}" y1="{y0}" x2="{x0 + plot_w}" y2="{y0}" stroke="#444"/>')
    parts.append("</svg>")
    return "\n".join(parts)
