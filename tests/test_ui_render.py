"""The Prefect UI really draws the learning curve: a real server, a markdown artifact made by
ncflow.learning_curve, and headless chromium (bench/cdp.py) reading the rendered page.

Marked `ui` and skipped without chromium (CI has none; `bash bench/ui_check.sh` installs it). It
guards the one assumption the picture rests on: that the UI's markdown renderer shows a base64
`data:image/svg+xml` image (it drops inline <svg>), which a Prefect upgrade could change; and, with
the browser's own fonts, that no label of the learning curve or the data report is cut at an edge.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import time
import urllib.request

import pytest
from e2e_stack import PREFECT, REPO, free_port, start, stop

CHROMIUM = next(
    (p for n in ("chromium", "chromium-browser", "google-chrome") if (p := shutil.which(n))), None
)
pytestmark = [
    pytest.mark.ui,
    pytest.mark.skipif(CHROMIUM is None, reason="no chromium (bench/ui_check.sh installs it)"),
]

MAKE_ARTIFACT = textwrap.dedent(
    """
    from prefect import flow
    from prefect.artifacts import create_markdown_artifact
    from ncflow.learning_curve import learning_curve_markdown

    rows = [{"epoch": e, "loss": 0.6 - 0.05 * e, "hr@10": 0.4 + 0.05 * e} for e in range(5)]

    @flow
    def publish():
        return create_markdown_artifact("# curve\\n\\n" + learning_curve_markdown(rows, ["hr@10"]), key="ui-curve")

    print(publish())
    """
)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ui")
    port = free_port()
    env = {
        **os.environ,
        "PREFECT_HOME": str(tmp / "home"),
        "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PYTHONPATH": str(REPO),
    }
    env.pop("PREFECT_PROFILE", None)
    proc = start(
        [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)], env, tmp / "server.log"
    )
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise AssertionError(
                        "prefect server did not start:\n" + (tmp / "server.log").read_text()[-3000:]
                    ) from None
                time.sleep(0.5)
        yield env, f"http://127.0.0.1:{port}"
    finally:
        stop(proc)


def test_the_ui_draws_the_learning_curve_image(server):
    env, ui = server
    made = subprocess.run(
        [sys.executable, "-c", MAKE_ARTIFACT],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr[-3000:]
    artifact_id = made.stdout.strip().splitlines()[-1]
    sys.path.insert(0, str(REPO / "bench"))
    from cdp import Browser

    with Browser(CHROMIUM, 1200, 900) as browser:
        browser.open(f"{ui}/artifacts/artifact/{artifact_id}", "document.body.innerText.includes('curve')")
        browser.wait("[...document.images].some(i => i.src.startsWith('data:image/svg+xml'))", 30, "no image")
        browser.wait("[...document.images].every(i => i.complete)", 30, "the image never loaded")
        drawn = browser.evaluate(
            "[...document.images].filter(i => i.src.startsWith('data:image/svg+xml'))"
            ".map(i => [i.naturalWidth, i.getBoundingClientRect().width, i.getBoundingClientRect().height])"
        )
    assert len(drawn) == 1, drawn
    natural, width, height = drawn[0]
    assert natural > 0 and width > 100 and height > 50  # decoded and laid out, not a broken-image icon


MAKE_CARD = textwrap.dedent(
    """
    from pathlib import Path
    from prefect import flow
    from prefect.artifacts import create_markdown_artifact
    from ncflow.model_card import model_card
    from ncflow.registry import Entry, Registration

    metrics = {"hr@10": 0.55, "ndcg@10": 0.31, "full_hr@10": 0.07, "full_ndcg@10": 0.035, "full_recall@20": 0.12}
    metrics |= {f"popularity_{k}": v / 2 for k, v in list(metrics.items())}
    metrics |= {f"ease_{k}": v * 1.2 for k, v in list(metrics.items()) if not k.startswith("popularity")}
    metrics["ease_lambda"] = 200.0
    record = {"model": "ncf", "dataset": "ml-100k", "metric": "hr@10"}
    reg = Registration(Entry(1, Path("v1"), metrics, "ml-100k-ncf-0", record), True, None, None, "first model: champion")
    history = [{"epoch": e, "loss": 0.5 - 0.05 * e, "hr@10": 0.4 + 0.05 * e} for e in range(3)]

    @flow
    def publish():
        card = model_card(reg, data={}, params={}, history=history, training={})
        return create_markdown_artifact(card, key="ui-card")

    print(publish())
    """
)


def test_the_ui_shows_the_baseline_rows_of_a_model_card(server):
    """The card's baseline rows (item popularity, EASE) and its verdict reach a person as table cells."""
    env, ui = server
    made = subprocess.run(
        [sys.executable, "-c", MAKE_CARD], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert made.returncode == 0, made.stderr[-3000:]
    artifact_id = made.stdout.strip().splitlines()[-1]
    sys.path.insert(0, str(REPO / "bench"))
    from cdp import Browser

    with Browser(CHROMIUM, 1200, 900) as browser:
        browser.open(
            f"{ui}/artifacts/artifact/{artifact_id}", "document.body.innerText.includes('Baselines')"
        )
        cells = browser.evaluate("[...document.querySelectorAll('td')].map(td => td.innerText.trim())")
        text = browser.evaluate("document.body.innerText")
    assert "item popularity" in cells and "EASE (lambda 200)" in cells, cells
    assert "A baseline beats this model: EASE (lambda 200)" in text


MEASURE = """[...document.querySelectorAll('text')].map(t => {
  const svg = document.documentElement.getBoundingClientRect(), r = t.getBoundingClientRect();
  return [t.textContent, r.left - svg.left, r.top - svg.top, r.right - svg.left, r.bottom - svg.top];
})"""


def test_chromium_draws_every_label_of_the_pictures_inside_them(tmp_path):
    """The real text boxes (the browser's fonts, rotation included), not the tests' estimate: a date
    label cut at the right edge of the data report is what a person saw."""
    import datetime as dt

    from ncflow.data.report import volume_svg
    from ncflow.learning_curve import Reference, learning_curve_svg

    first = dt.date(2026, 3, 1)
    daily = [(first + dt.timedelta(days=i), 2_500_000 + 1_000 * (i % 9)) for i in range(200)]
    rows = [
        {"epoch": e, "loss": 0.6 - 0.03 * e, "hr@10": 0.4 + 0.02 * e, "ndcg@10": 0.2 + 0.01 * e}
        for e in range(8)
    ]
    refs = [Reference("champion v1", "full_hr@10", 0.0712), Reference("this model v2", "full_hr@10", 0.0721)]
    pictures = {
        "report.svg": volume_svg(daily, {daily[-1][0]: ["timestamps"]}),
        "curve.svg": learning_curve_svg(rows, ["hr@10", "ndcg@10"], references=refs, title="ncf / shop v2"),
    }
    sys.path.insert(0, str(REPO / "bench"))
    from cdp import Browser

    with Browser(CHROMIUM, 1400, 600) as browser:
        for name, svg in pictures.items():
            (tmp_path / name).write_text(svg)
            browser.open(
                (tmp_path / name).as_uri(), "document.querySelectorAll('text').length > 3", settle_s=0.2
            )
            width, height = browser.evaluate(
                "[document.documentElement.viewBox.baseVal.width, document.documentElement.viewBox.baseVal.height]"
            )
            boxes = browser.evaluate(MEASURE)
            outside = [b for b in boxes if b[1] < 0 or b[2] < 0 or b[3] > width or b[4] > height]
            assert boxes and not outside, (name, outside)
