"""Where an SVG's text lands, estimated without a browser: each <text> as a box from its font size and
character count (0.6 em a character, a generous average for sans-serif digits and letters), its anchor
and a rotate(-90) transform; a test asserts every box lies inside the viewBox (a label cut at an edge)."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

SVG = "{http://www.w3.org/2000/svg}"
CHAR_EM = 0.6


def font_size(element: ET.Element, root: ET.Element) -> float:
    return float(element.get("font-size") or root.get("font-size") or 16)


def text_box(element: ET.Element, root: ET.Element) -> tuple[float, float, float, float]:
    """(left, top, right, bottom) of a <text>, in SVG units."""
    size = font_size(element, root)
    width = CHAR_EM * size * len("".join(element.itertext()))
    x, y = float(element.get("x", 0)), float(element.get("y", 0))
    start = {"start": x, "middle": x - width / 2, "end": x - width}[element.get("text-anchor", "start")]
    left, top, right, bottom = start, y - 0.8 * size, start + width, y + 0.25 * size  # ascent, descent
    transform = element.get("transform")
    if transform:
        found = re.fullmatch(r"rotate\(-90 ([\d.]+) ([\d.]+)\)", transform)
        assert found, f"unexpected transform {transform!r}"
        cx, cy = float(found.group(1)), float(found.group(2))
        # rotate(-90) about (cx, cy): (x, y) -> (cx + (y - cy), cy - (x - cx))
        left, top, right, bottom = cx + (top - cy), cy - (right - cx), cx + (bottom - cy), cy - (left - cx)
    return left, top, right, bottom


def texts_outside(root: ET.Element) -> list[str]:
    """The texts whose estimated box leaves the viewBox, with their boxes."""
    x0, y0, w, h = (float(v) for v in root.get("viewBox").split())
    out = []
    for element in root.iter(f"{SVG}text"):
        left, top, right, bottom = text_box(element, root)
        if left < x0 or top < y0 or right > x0 + w or bottom > y0 + h:
            out.append(
                f"{''.join(element.itertext())!r} at ({left:.0f}, {top:.0f})-({right:.0f}, {bottom:.0f})"
            )
    return out
