"""The learning-curve picture (ncflow.learning_curve) and where it is shown: the train task's live
artifact (tasks/train.py's EpochReporter) and the model card."""

from __future__ import annotations

import base64
import math
import re
import xml.etree.ElementTree as ET
from pathlib import Path

from svg_text import texts_outside

from ncflow.learning_curve import MARGIN, Reference, learning_curve_markdown, learning_curve_svg
from ncflow.model_card import model_card
from ncflow.registry import Entry, Registration
from ncflow.specs import spec
from tasks.train import EpochReporter

SVG = "{http://www.w3.org/2000/svg}"


def parse(svg: str) -> ET.Element:
    root = ET.fromstring(svg)  # raises on anything that is not well-formed XML
    assert root.tag == f"{SVG}svg" and float(root.get("width")) > 0 and float(root.get("height")) > 0
    return root


def circles(root: ET.Element, colour: str) -> list[tuple[float, float]]:
    return [
        (float(c.get("cx")), float(c.get("cy"))) for c in root.iter(f"{SVG}circle") if c.get("fill") == colour
    ]


def lines(root: ET.Element, colour: str) -> list[ET.Element]:
    return [p for p in root.iter(f"{SVG}polyline") if p.get("stroke") == colour]


def history(n: int) -> list[dict]:
    """A plausible run: loss falls, HR@10 rises."""
    return [
        {"epoch": e, "loss": 0.6 - 0.03 * e, "hr@10": 0.4 + 0.02 * e, "ndcg@10": 0.2 + 0.015 * e}
        for e in range(n)
    ]


def colour_of(root: ET.Element, label: str) -> str:
    """The colour of the legend square beside the text that starts with `label`."""
    items = list(root)
    for i, element in enumerate(items):
        square = items[i - 1]
        if (
            element.tag == f"{SVG}text"
            and (element.text or "").startswith(label)
            and square.get("width") == "10"
        ):
            return square.get("fill")
    raise AssertionError(f"no legend entry {label!r}")


def test_many_epochs_draw_one_line_per_series_with_a_dot_per_epoch():
    root = parse(learning_curve_svg(history(12), ["hr@10", "ndcg@10"]))
    for label in ("loss", "HR@10", "NDCG@10"):
        colour = colour_of(root, label)
        assert len(circles(root, colour)) == 12 and len(lines(root, colour)) == 1, label
    hr = circles(root, colour_of(root, "HR@10"))
    assert [x for x, _ in hr] == sorted(x for x, _ in hr)  # epochs run left to right
    assert hr[-1][1] < hr[0][1]  # a rising metric goes up the picture (SVG y grows downwards)
    loss = circles(root, colour_of(root, "loss"))
    assert loss[-1][1] > loss[0][1]  # a falling loss goes down
    assert "HR@10 0.62" in "".join(root.itertext())  # the legend carries the latest value


def test_a_long_run_stays_small_lines_without_dots():
    rows = [{**row, "recall@20": 0.1 + 0.001 * row["epoch"]} for row in history(200)]
    svg = learning_curve_svg(rows, ["hr@10", "ndcg@10", "recall@20"])
    root = parse(svg)
    assert len(svg) < 30_000  # rewritten every epoch and embedded in the card: keep it light
    for label in ("loss", "HR@10", "NDCG@10", "RECALL@20"):
        colour = colour_of(root, label)
        assert len(lines(root, colour)) == 1 and not circles(root, colour), label
        assert len(lines(root, colour)[0].get("points").split()) == 200


def test_one_epoch_is_a_dot_not_an_empty_panel():
    root = parse(learning_curve_svg(history(1), ["hr@10"]))
    for label in ("loss", "HR@10"):
        colour = colour_of(root, label)
        assert len(circles(root, colour)) == 1 and not lines(root, colour)
    assert "no " not in "".join(root.itertext())


def test_nan_and_missing_values_break_the_line_instead_of_plotting_garbage():
    rows = history(6)
    rows[2]["hr@10"] = math.nan
    del rows[3]["ndcg@10"]
    rows[4]["loss"] = math.inf
    svg = learning_curve_svg(rows, ["hr@10", "ndcg@10"])
    assert not re.search(r"nan|inf", svg, re.IGNORECASE)
    root = parse(svg)
    hr, ndcg, loss = (colour_of(root, label) for label in ("HR@10", "NDCG@10", "loss"))
    assert len(circles(root, hr)) == 5 and len(lines(root, hr)) == 2  # epochs 0-1 and 3-5
    assert len(circles(root, ndcg)) == 5 and len(lines(root, ndcg)) == 2
    assert len(circles(root, loss)) == 5 and len(lines(root, loss)) == 1  # 0-3, then epoch 5 alone: a dot


def test_no_values_at_all_still_give_a_valid_picture_that_says_so():
    for rows in ([], [{"epoch": 0}], [{"epoch": 0, "loss": math.nan, "hr@10": None}]):
        root = parse(learning_curve_svg(rows, ["hr@10"]))
        text = "".join(root.itertext())
        assert "no loss values yet" in text and "no HR@10 values yet" in text
        assert not list(root.iter(f"{SVG}circle"))


def test_a_flat_curve_and_references_stay_inside_the_plot():
    rows = [{"epoch": e, "loss": 0.5, "hr@10": 0.7} for e in range(3)]
    refs = [Reference("champion v1", "hr@10", 0.65), Reference("bad", "hr@10", math.nan)]
    root = parse(learning_curve_svg(rows, ["hr@10"], references=refs))
    text = "".join(root.itertext())
    assert "champion v1 HR@10 0.65" in text and "bad" not in text
    dashed = [line for line in root.iter(f"{SVG}line") if line.get("stroke-dasharray")]
    assert len(dashed) == 1
    frames = [r for r in root.iter(f"{SVG}rect") if r.get("stroke") == "#bbb"]
    metrics_frame = frames[1]
    top, bottom = (
        float(metrics_frame.get("y")),
        float(metrics_frame.get("y")) + float(metrics_frame.get("height")),
    )
    ys = [y for _, y in circles(root, colour_of(root, "HR@10"))] + [float(dashed[0].get("y1"))]
    assert all(top <= y <= bottom for y in ys)


def test_markdown_embeds_the_svg_as_a_base64_data_uri():
    markdown = learning_curve_markdown(history(3), ["hr@10"], title="ncf <synth> & co")
    found = re.fullmatch(r"!\[([^\]]+)\]\(data:image/svg\+xml;base64,([A-Za-z0-9+/=]+)\)", markdown)
    assert found, markdown[:120]
    assert "HR@10" in found.group(1)
    root = parse(base64.b64decode(found.group(2)).decode())
    assert "ncf <synth> & co" in "".join(root.itertext())  # escaped in the XML, intact when read


def epoch_event(epoch: int, hr: float) -> dict:
    return {
        "event": "epoch", "epoch": epoch, "loss": 0.5 - 0.01 * epoch, "hr@10": hr, "ndcg@10": hr / 2,
        "train_samples_per_s": 1000.0, "train_seconds": 1.0, "eval_seconds": 0.1,
    }  # fmt: skip


def test_the_train_task_reports_the_curve_and_the_best_epoch_so_far():
    reporter = EpochReporter("ncf-x", 5, spec("ncf"))  # outside a run: no artifacts, the text only
    reporter({"event": "start", "config": {"negatives": 4}, "train_positives": 10, "device": "cpu"})
    for epoch, hr in enumerate([0.4, 0.6, math.nan, 0.5]):
        reporter(epoch_event(epoch, hr))
    text = reporter._curve(3)
    assert text.startswith("**4 of at most 5 epochs done**; best HR@10 0.6000 at epoch 1")
    image = re.search(r"base64,([A-Za-z0-9+/=]+)\)", text)
    root = parse(base64.b64decode(image.group(1)).decode())
    assert len(circles(root, colour_of(root, "HR@10"))) == 3  # the NaN epoch is a gap


def test_with_a_validation_split_the_train_task_draws_the_validation_metrics():
    reporter = EpochReporter("ncf-x", 3, spec("ncf"))
    reporter({"event": "start", "config": {"negatives": 4}, "train_positives": 10, "device": "cpu"})
    for epoch, hr in enumerate([0.3, 0.5]):
        event = epoch_event(epoch, hr)
        event = {("valid_" + k if k in ("hr@10", "ndcg@10") else k): v for k, v in event.items()}
        reporter(event)
    text = reporter._curve(1)
    assert text.startswith("**2 of at most 3 epochs done**; best VALID_HR@10 0.5000 at epoch 1")
    root = parse(base64.b64decode(re.search(r"base64,([A-Za-z0-9+/=]+)\)", text).group(1)).decode())
    assert len(circles(root, colour_of(root, "VALID_HR@10"))) == 2


def panels(root: ET.Element) -> list[dict]:
    """Each plot panel: its frame (x, top, bottom), its y axis title and its tick labels (value, y)."""
    out = []
    texts = list(root.iter(f"{SVG}text"))
    for frame in (r for r in root.iter(f"{SVG}rect") if r.get("stroke") == "#bbb"):
        x, top = float(frame.get("x")), float(frame.get("y"))
        titles = [t.text for t in texts if t.get("transform") and x - MARGIN["left"] <= float(t.get("x")) < x]
        ticks = [
            (float(t.text), float(t.get("y")) - 4)
            for t in texts
            if t.get("text-anchor") == "end" and float(t.get("x")) == x - 6
        ]
        right = x + float(frame.get("width"))
        out.append({"x": x, "right": right, "top": top, "bottom": top + float(frame.get("height")),
                    "axis": titles[0] if len(titles) == 1 else None, "ticks": ticks})  # fmt: skip
    return out


def panel_at(root: ET.Element, x: float) -> dict:
    return next(p for p in panels(root) if p["x"] <= x <= p["right"])


def value_at(panel: dict, y: float) -> float:
    """The value a point drawn at `y` shows, read off the panel's own tick labels."""
    (v0, y0), (v1, y1) = panel["ticks"][0], panel["ticks"][-1]
    return v0 + (y - y0) * (v1 - v0) / (y1 - y0)


def references_drawn(root: ET.Element) -> list[tuple[str, float, dict]]:
    """(label text, the value its line shows on its panel's axis, the panel) per dashed line."""
    items = list(root)
    out = []
    for i, line in enumerate(items):
        if line.tag == f"{SVG}line" and line.get("stroke-dasharray"):
            panel = panel_at(root, float(line.get("x1")))
            out.append((items[i + 1].text, value_at(panel, float(line.get("y1"))), panel))
    return out


def test_each_reference_is_drawn_on_its_own_metrics_axis_and_names_it():
    refs = [
        Reference("champion v1", "full_hr@10", 0.071),  # full ranking: about 8x below the sampled HR@10
        Reference("this model v2", "full_hr@10", 0.083),
        Reference("popularity", "hr@10", 0.45),
    ]
    root = parse(learning_curve_svg(history(6), ["hr@10", "ndcg@10"], references=refs))
    assert [p["axis"] for p in panels(root)] == ["loss", "HR@10, NDCG@10", "FULL_HR@10"]
    drawn = references_drawn(root)
    assert sorted(label for label, _, _ in drawn) == [
        "champion v1 FULL_HR@10 0.0710", "popularity HR@10 0.4500", "this model v2 FULL_HR@10 0.0830",
    ]  # fmt: skip
    for label, shown, panel in drawn:
        metric, value = re.fullmatch(r".* (\S+@\d+) ([\d.]+)", label).groups()
        assert metric in panel["axis"].split(", "), (label, panel["axis"])
        assert abs(shown - float(value)) < 1e-3, (label, shown)
        assert panel["top"] <= panel["bottom"]
    full = panels(root)[2]
    assert not [c for c in root.iter(f"{SVG}circle") if full["x"] <= float(c.get("cx")) <= full["right"]]
    hr_dots = circles(root, colour_of(root, "HR@10"))
    sampled = panel_at(root, hr_dots[0][0])
    assert sampled["axis"] == "HR@10, NDCG@10"
    assert abs(value_at(sampled, hr_dots[-1][1]) - 0.5) < 1e-3  # epoch 5: 0.4 + 0.02 * 5


def test_a_validation_curve_shares_its_axis_with_the_test_metrics_references():
    rows = [{"epoch": e, "loss": 0.5, "valid_hr@10": 0.5 + 0.01 * e} for e in range(3)]
    root = parse(
        learning_curve_svg(rows, ["valid_hr@10"], references=[Reference("popularity", "hr@10", 0.3)])
    )
    assert [p["axis"] for p in panels(root)] == ["loss", "VALID_HR@10"]  # the same protocol: no third panel
    ((label, shown, _),) = references_drawn(root)
    assert label == "popularity HR@10 0.3000" and abs(shown - 0.3) < 1e-3


def card_curve(record_metric: str, comparison: dict | None, previous_score: float) -> ET.Element:
    metrics = {"hr@10": 0.52, "ndcg@10": 0.3, "full_hr@10": 0.083, "popularity_hr@10": 0.41}
    record = {"model": "ncf", "dataset": "shop", "metric": record_metric, "comparison": comparison}
    previous = Entry(1, Path("v1"), {"hr@10": 0.6, "full_hr@10": 0.071}, "shop-ncf-old", record)
    entry = Entry(2, Path("v2"), metrics, "shop-ncf-new", record)
    reg = Registration(entry, True, previous, previous_score, "beats the champion: promoted")
    card = model_card(reg, data={}, params={}, history=history(4), training={})
    return parse(base64.b64decode(re.search(r"base64,([A-Za-z0-9+/=]+)\)", card).group(1)).decode())


def test_the_cards_champion_line_is_read_on_the_axis_of_the_metric_that_decided():
    """NCF's fair comparison decides on full-ranking HR@10; the curve is sampled HR@10 per epoch."""
    fair = {"metric": "full_hr@10", "challenger": 0.083, "champion": 0.071, "on": "the new held-out users"}
    root = card_curve("full_hr@10", fair, 0.071)
    drawn = {label: (shown, panel["axis"]) for label, shown, panel in references_drawn(root)}
    shown, axis = drawn["champion v1 FULL_HR@10 0.0710"]
    assert axis == "FULL_HR@10" and abs(shown - 0.071) < 1e-3
    shown, axis = drawn["this model v2 FULL_HR@10 0.0830"]  # like with like, beside it
    assert axis == "FULL_HR@10" and abs(shown - 0.083) < 1e-3
    shown, axis = drawn["popularity HR@10 0.4100"]
    assert axis == "HR@10, NDCG@10" and abs(shown - 0.41) < 1e-3
    # the same test set: the champion's sampled HR@10 on the curve's own axis, no third panel
    root = card_curve("hr@10", None, 0.6)
    assert [p["axis"] for p in panels(root)] == ["loss", "HR@10, NDCG@10"]
    assert {label for label, _, _ in references_drawn(root)} == {
        "champion v1 HR@10 0.6000",
        "popularity HR@10 0.4100",
    }


def test_every_label_lies_inside_the_picture():
    rows = [{**row, "recall@20": 0.1 + 0.001 * row["epoch"]} for row in history(30)]
    refs = [
        Reference("champion v12", "full_ndcg@10", 0.0712),
        Reference("this model v13", "full_ndcg@10", 0.0713),
    ]
    for svg in (
        learning_curve_svg(rows, ["hr@10", "ndcg@10", "recall@20"], references=refs, title="ncf / shop v13"),
        learning_curve_svg(history(1), ["hr@10"]),
        learning_curve_svg([], ["valid_ndcg@100", "valid_recall@20", "valid_recall@50"]),  # a long axis title
        learning_curve_svg([], ["hr@10"]),
    ):
        assert texts_outside(parse(svg)) == []
