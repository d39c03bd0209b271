"""The learning curve as a picture: an SVG of loss and metrics per epoch, embedded in markdown as a
base64 `data:` image.

Why this form: the Prefect UI's markdown renderer drops inline `<svg>` (it sanitises HTML) but shows a
markdown image whose source is a `data:image/svg+xml;base64,...` URI (checked in a browser with
bench/ui_check.sh). A data URI needs no file server and travels inside the artifact and the model
card. The SVG draws its own white background, so it reads the same on the UI's dark and light themes.

Two panels side by side, because loss and the ranking metrics live on different scales: the loss on
the left, the metrics (and optional dashed reference lines, e.g. the previous champion) on the right.
Each reference names the metric it measures and is drawn only on that metric's own axis: a reference
whose metric is not drawn per epoch (the champion's full-ranking HR@10 beside a sampled HR@10 curve,
about 5-10x smaller) gets a panel of its own, so no value is ever read against another metric's scale.
Every panel's y axis is titled with the metrics it carries.
Missing or non-finite values (NaN, inf) are skipped: the line breaks there instead of diving to zero.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from xml.sax.saxutils import escape

COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")  # colour-blind-safe enough
LOSS_COLOUR = "#444444"
PANEL_W, PANEL_H = 420, 260  # one panel, in SVG units; two wide, more for references of other metrics
MARGIN = {"left": 72, "right": 16, "top": 34, "bottom": 44}
DOTS_UP_TO = 60  # epochs; beyond, the line alone (VAE-CF runs 200 epochs: keeps the artifact small)
LABEL_GAP = 13  # SVG units between two reference labels (font-size 12): close values stay readable


@dataclass(frozen=True)
class Reference:
    """A dashed horizontal line: `value` of `metric` scored by `label` (e.g. "champion v1"). It is drawn
    on `metric`'s own axis and its text names the metric, so it cannot be read against another scale."""

    label: str
    metric: str
    value: float

    @property
    def text(self) -> str:
        return f"{self.label} {self.metric.upper()} {_value(self.value)}"


def scale(metric: str) -> str:
    """The axis a metric is read on: a validation score shares its test metric's (same protocol)."""
    return metric.lower().removeprefix("valid_")


def learning_curve_svg(
    history: Sequence[Mapping[str, Any]],
    metrics: Sequence[str],
    *,
    loss: str = "loss",
    references: Sequence[Reference] = (),
    title: str = "",
) -> str:
    """An SVG document: `loss` per epoch (left) and each of `metrics` per epoch (right, labelled in
    upper case); `references` are dashed horizontal lines on their metric's axis: the metrics panel
    when the curve draws that metric, else one more panel per metric, after training (no epochs)."""
    epochs = [_number(h.get("epoch")) for h in history]
    x_values = [e for e in epochs if e is not None]
    x_range = (min(x_values, default=0.0), max(x_values, default=0.0))
    loss_series = [("loss", LOSS_COLOUR, _points(history, epochs, loss))]
    metric_series = [
        (name.upper(), COLOURS[i % len(COLOURS)], _points(history, epochs, name))
        for i, name in enumerate(metrics)
    ]
    drawn = {scale(m) for m in metrics}
    refs = [r for r in references if _number(r.value) is not None]
    on_curve = [r for r in refs if scale(r.metric) in drawn]
    others = list(dict.fromkeys(scale(r.metric) for r in refs if scale(r.metric) not in drawn))
    width = PANEL_W * (2 + len(others))
    height = PANEL_H + (24 if title else 0)
    top = 24 if title else 0
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="Helvetica, Arial, sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="#ffffff" rx="6"/>',
    ]
    if title:
        parts.append(
            f'<text x="{width / 2}" y="18" text-anchor="middle" font-size="14" fill="#222">{escape(title)}</text>'
        )
    parts += _panel(0, top, "loss", x_range, loss_series, [])
    parts += _panel(
        PANEL_W, top, ", ".join(m.upper() for m in metrics) or "metrics", x_range, metric_series, on_curve
    )
    for i, metric in enumerate(others):
        mine = [r for r in refs if scale(r.metric) == metric]
        parts += _panel(PANEL_W * (2 + i), top, metric.upper(), None, [], mine)
    parts.append("</svg>")
    return "\n".join(parts)


def svg_markdown_image(svg: str, alt: str) -> str:
    """Markdown that shows `svg` in the Prefect UI (and in most markdown viewers): a base64 data URI."""
    data = base64.b64encode(svg.encode()).decode("ascii")
    return f"![{alt}](data:image/svg+xml;base64,{data})"


def learning_curve_markdown(
    history: Sequence[Mapping[str, Any]],
    metrics: Sequence[str],
    *,
    references: Sequence[Reference] = (),
    title: str = "",
) -> str:
    """The curve as one markdown image line (alt text: what it shows)."""
    alt = "learning curve: loss and " + ", ".join(m.upper() for m in metrics) + " per epoch"
    alt += "".join(f"; {r.text}" for r in references if _number(r.value) is not None)
    return svg_markdown_image(learning_curve_svg(history, metrics, references=references, title=title), alt)


def _number(value: Any) -> float | None:
    """`value` as a finite float, or None (missing, NaN, inf, not a number)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _points(
    history: Sequence[Mapping[str, Any]], epochs: list[float | None], key: str
) -> list[tuple[float, float] | None]:
    """(epoch, value) per history row; None where either is missing (a break in the line)."""
    out: list[tuple[float, float] | None] = []
    for row, epoch in zip(history, epochs):
        value = _number(row.get(key))
        out.append(None if epoch is None or value is None else (epoch, value))
    return out


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """About `count` round tick values covering [lo, hi]."""
    span = hi - lo
    raw = span / max(1, count - 1)
    step = 10 ** math.floor(math.log10(raw))
    step *= next(m for m in (1, 2, 2.5, 5, 10) if raw <= m * step)
    first = math.floor(lo / step) * step
    ticks, t = [], first
    while t <= hi + step * 1e-9:
        ticks.append(round(t, 12))
        t += step
    if ticks[-1] < hi - step * 1e-9:
        ticks.append(round(t, 12))
    return ticks


def _y_ticks(values: list[float]) -> list[float]:
    """Round ticks whose first and last bound the plot (computed once: the axis and its labels agree)."""
    lo, hi = min(values), max(values)
    if hi - lo < 1e-12:  # one value (or a flat line): give it room
        pad = abs(lo) * 0.1 or 0.5
        lo, hi = lo - pad, hi + pad
    return nice_ticks(lo, hi)


def _label(value: float) -> str:
    """Axis labels: short."""
    return f"{value:.4g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.1e}"


def _value(value: float) -> str:
    """Legend and reference values: four decimals, as in the tables beside the picture."""
    return f"{value:.4f}" if 1e-3 <= abs(value) < 1e4 or value == 0 else f"{value:.3g}"


def _panel(
    x0: float,
    y0: float,
    axis: str,
    x_range: tuple[float, float] | None,
    series: list[tuple[str, str, list[tuple[float, float] | None]]],
    refs: list[Reference],
) -> list[str]:
    """One panel's SVG elements: frame, a y axis titled `axis`, ticks, a line and dots per series,
    dashed references, legend. Without `x_range` the panel has no epochs: references alone, after
    training."""
    left, top = x0 + MARGIN["left"], y0 + MARGIN["top"]
    width = PANEL_W - MARGIN["left"] - MARGIN["right"]
    height = PANEL_H - MARGIN["top"] - MARGIN["bottom"]
    values = [p[1] for _, _, points in series for p in points if p] + [r.value for r in refs]
    middle = top + height / 2
    if 7 * len(axis) > height:  # about 7 units per character: too long to stand beside the plot
        axis = "metrics (legend above)"
    out = [
        f'<rect x="{left}" y="{top}" width="{width}" height="{height}" fill="none" stroke="#bbb"/>',
        f'<text x="{x0 + 14}" y="{middle}" text-anchor="middle" fill="#555" '
        f'transform="rotate(-90 {x0 + 14} {middle})">{escape(axis)}</text>',
    ]
    if not values:
        out.append(
            f'<text x="{left + width / 2}" y="{middle}" text-anchor="middle" fill="#888">'
            f"no {escape(axis)} values yet</text>"
        )
        return out
    y_ticks = _y_ticks(values)
    y_lo, y_hi = y_ticks[0], y_ticks[-1]
    x_lo, x_hi = x_range or (0.0, 0.0)
    if x_hi - x_lo < 1e-12:  # one epoch: put it in the middle
        x_lo, x_hi = x_lo - 1, x_hi + 1

    def sx(x: float) -> float:
        return round(left + width * (x - x_lo) / (x_hi - x_lo), 2)

    def sy(y: float) -> float:
        return round(top + height * (1 - (y - y_lo) / (y_hi - y_lo)), 2)

    for t in y_ticks:
        out.append(f'<line x1="{left}" x2="{left + width}" y1="{sy(t)}" y2="{sy(t)}" stroke="#eee"/>')
        out.append(f'<text x="{left - 6}" y="{sy(t) + 4}" text-anchor="end" fill="#555">{_label(t)}</text>')
    for t in _x_ticks(x_range) if x_range else []:
        out.append(f'<text x="{sx(t)}" y="{top + height + 16}" text-anchor="middle" fill="#555">{t:g}</text>')
    out.append(
        f'<text x="{left + width / 2}" y="{top + height + 34}" text-anchor="middle" fill="#555">'
        f"{'epoch' if x_range else 'after training'}</text>"
    )
    ordered = sorted(refs, key=lambda r: -r.value)  # top of the plot first
    label_ys = _spread([sy(r.value) - 4 for r in ordered], top + 12, top + height - 2)
    for ref, label_y in zip(ordered, label_ys):
        out.append(
            f'<line x1="{left}" x2="{left + width}" y1="{sy(ref.value)}" y2="{sy(ref.value)}" stroke="#888" '
            f'stroke-dasharray="5,4"/>'
            f'<text x="{left + width - 4}" y="{label_y}" text-anchor="end" fill="#666">{escape(ref.text)}</text>'
        )
    legend_x = left  # the legend sits above the plot, so it never hides a line
    for label, colour, points in series:
        for run in _runs(points):
            if len(run) > 1:
                path = " ".join(f"{sx(x)},{sy(y)}" for x, y in run)
                out.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>')
            if len(points) <= DOTS_UP_TO or len(run) == 1:  # a lone point is only a dot: always drawn
                out += [f'<circle cx="{sx(x)}" cy="{sy(y)}" r="3" fill="{colour}"/>' for x, y in run]
        last = next((p for p in reversed(points) if p), None)
        text = escape(label) + ("" if last is None else f" {_value(last[1])}")  # the latest value
        out.append(
            f'<rect x="{legend_x}" y="{top - 19}" width="10" height="10" fill="{colour}"/>'
            f'<text x="{legend_x + 14}" y="{top - 10}" fill="#222">{text}</text>'
        )
        legend_x += 14 + 7 * len(text) + 14  # about 7 units per character at font-size 12
    return out


def _spread(ys: list[float], lo: float, hi: float) -> list[float]:
    """`ys` (ascending) moved apart by at least LABEL_GAP, kept within [lo, hi] where they fit."""
    out: list[float] = []
    for y in ys:
        out.append(max(y, lo, out[-1] + LABEL_GAP if out else lo))
    overflow = (out[-1] - hi) if out else 0
    if overflow > 0:  # pushed past the bottom: lift them all, never above the top
        out = [max(lo, y - overflow) for y in out]
    return [round(y, 2) for y in out]


def _runs(points: list[tuple[float, float] | None]) -> list[list[tuple[float, float]]]:
    """Consecutive present points: each becomes one polyline."""
    runs: list[list[tuple[float, float]]] = [[]]
    for p in points:
        if p is None:
            runs.append([])
        else:
            runs[-1].append(p)
    return [r for r in runs if r]


def _x_ticks(x_range: tuple[float, float]) -> list[float]:
    lo, hi = x_range
    if hi - lo < 1e-12:
        return [lo]
    step = max(1, math.ceil((hi - lo) / 8))  # whole epochs, at most ~9 labels
    ticks = [lo + step * i for i in range(int((hi - lo) // step) + 1)]
    return ticks if ticks[-1] == hi else [*ticks, hi]
