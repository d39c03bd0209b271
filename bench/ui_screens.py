"""Headless-chromium screenshots of the Prefect UI for one finished flow run (bench/ui_check.sh calls it).

    python bench/ui_screens.py --ui http://127.0.0.1:4200 --flow-run ID --out bench/results/DATE-ui

It reads the run's task runs and artifacts through the Prefect client (PREFECT_API_URL) and saves:
01-deployments.png, 02-flow-run.png (task graph and logs), 03-flow-run-artifacts.png,
04-train-logs.png, then one picture per artifact (05-<key>.png ...), then the model card in the
opt-in V2 UI (a React app with another markdown renderer). A picture that comes out nearly
blank (the single-page app did not render) is an error: the UI is the thing being checked.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path
from uuid import UUID

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/ is not a package: cdp.py beside it
from cdp import Browser  # noqa: E402

# The artifacts in the order a reader wants them: how training went, then what was registered and why.
ARTIFACT_ORDER = ("progress", "epochs", "learning-curve", "model-card", "metrics", "bundle")
EXPECTED = {  # what each artifact's page must show before the picture is taken
    "progress": "Progress",
    "epochs": "loss",
    "learning-curve": "epochs done",
    "model-card": "Learning curve",
    "metrics": "decides",
    "bundle": "registry",
}
MIN_BYTES = 20_000  # a blank page (the app never started) is far under this; an app page with empty
# content is caught earlier, by the text each page must show (EXPECTED, text_shown) before its picture


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if found := shutil.which(name):
            return found
    sys.exit("ui_screens: error: no chromium on PATH (bash bench/ui_check.sh installs it)")


def text_shown(*texts: str) -> str:
    """A JavaScript condition: the page shows every one of `texts` and has finished loading its images."""
    shown = " && ".join(f"document.body.innerText.includes({json.dumps(t)})" for t in texts)
    return f"{shown} && [...document.images].every(i => i.complete)"


def shoot(browser: Browser, out: Path, full_page: bool = False) -> None:
    """The current page to `out` via a temporary name, so a failed shot leaves no file."""
    tmp = out.with_suffix(".part.png")
    browser.screenshot(tmp, full_page=full_page)
    if tmp.stat().st_size < MIN_BYTES:
        tmp.unlink()
        sys.exit(f"ui_screens: error: {out.name} came out (nearly) empty")
    os.replace(tmp, out)
    print(f"{out.name}  {out.stat().st_size:,} bytes")


def run_objects(flow_run_id: UUID) -> tuple[object, list, list]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        FlowRunFilter,
        FlowRunFilterId,
    )

    with get_client(sync_client=True) as client:
        run = client.read_flow_run(flow_run_id)
        tasks = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id])))
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run.id]))
        )
    return run, tasks, artifacts


def latest_per_key(artifacts: list) -> list:
    """The last version of each keyed artifact in the run, in ARTIFACT_ORDER."""
    latest: dict[str, object] = {}
    for a in sorted(artifacts, key=lambda a: a.created):
        if a.key:
            latest[a.key] = a

    def rank(key: str) -> int:
        return next(
            (i for i, suffix in enumerate(ARTIFACT_ORDER) if key.endswith(suffix)), len(ARTIFACT_ORDER)
        )

    return [latest[k] for k in sorted(latest, key=lambda k: (rank(k), k))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ui", required=True, help="the UI's base URL, e.g. http://127.0.0.1:4200")
    parser.add_argument("--flow-run", required=True, type=UUID, help="a Completed flow run's id")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--suffix", default="", help="appended to each artifact picture's name")
    parser.add_argument("--only", help="comma-separated artifact key endings: only those, no page shots")
    parser.add_argument("--number-from", type=int, default=5, help="the first artifact picture's number")
    args = parser.parse_args()
    ui, out = args.ui.rstrip("/"), args.out
    out.mkdir(parents=True, exist_ok=True)
    run, tasks, artifacts = run_objects(args.flow_run)
    if not run.state or not run.state.is_completed():
        sys.exit(f"ui_screens: error: flow run {run.id} is {run.state and run.state.name}, not Completed")
    train = [t for t in tasks if t.name.startswith("train-")]
    if not train:
        sys.exit(f"ui_screens: error: flow run {run.id} has no train-* task run")
    shown = latest_per_key(artifacts)
    if args.only:
        endings = tuple(args.only.split(","))
        shown = [a for a in shown if a.key.endswith(endings)]
    with Browser(chromium()) as browser:
        if not args.only:
            browser.open(f"{ui}/deployments", text_shown("synth-tiny", "ml20m"))
            shoot(browser, out / "01-deployments.png")
            flow_run = f"{ui}/runs/flow-run/{run.id}"
            browser.open(
                flow_run, text_shown(train[-1].name) + " && document.querySelector('canvas')", settle_s=4
            )
            shoot(browser, out / "02-flow-run.png")
            browser.click_text("Artifacts")
            browser.wait(text_shown("model-card"), 30, "the flow run's Artifacts tab shows no model card")
            shoot(browser, out / "03-flow-run-artifacts.png", full_page=True)
            browser.open(f"{ui}/runs/task-run/{train[-1].id}?tab=Logs", text_shown("epoch"))
            shoot(browser, out / "04-train-logs.png", full_page=True)
        for number, a in enumerate(shown, start=args.number_from):
            expected = next((t for suffix, t in EXPECTED.items() if a.key.endswith(suffix)), a.key)
            browser.open(f"{ui}/artifacts/artifact/{a.id}", text_shown(a.key, expected))
            shoot(browser, out / f"{number:02d}-{a.key}{args.suffix}.png", full_page=True)
        card = next((a for a in shown if a.key.endswith("model-card")), None)
        if card is not None and not args.only:  # the opt-in V2 UI (React) renders markdown differently
            browser.open(f"{ui}/v2/artifacts/artifact/{card.id}", text_shown("Learning curve"), settle_s=2)
            shoot(browser, out / f"{number + 1:02d}-v2-ui-{card.key}{args.suffix}.png", full_page=True)


if __name__ == "__main__":
    main()
