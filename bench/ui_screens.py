"""Headless-chromium screenshots of the Prefect UI for one finished flow run (bench/ui_check.sh calls it).

    python bench/ui_screens.py --ui http://127.0.0.1:4200 --flow-run ID --out bench/results/DATE-ui

It reads the run's task runs and artifacts through the Prefect client (PREFECT_API_URL) and saves:
01-deployments.png, 02-flow-run.png (task graph and logs), 03-flow-run-artifacts.png,
04-train-logs.png, then one picture per artifact (05-<key>.png ...). A picture that comes out nearly
blank (the single-page app did not render) is an error: the UI is the thing being checked.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from uuid import UUID

# The artifacts in the order a reader wants them: how training went, then what was registered and why.
ARTIFACT_ORDER = ("progress", "epochs", "learning-curve", "model-card", "metrics", "bundle")
MIN_BYTES = 20_000  # a rendered page; the bare app shell with nothing loaded is well under this


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if found := shutil.which(name):
            return found
    sys.exit("ui_screens: error: no chromium on PATH (bash bench/ui_check.sh installs it)")


def shoot(url: str, out: Path, size: tuple[int, int] = (1600, 1200), budget_ms: int = 15000) -> None:
    """One screenshot of `url`; the virtual-time budget lets the app fetch its data and draw before the
    picture is taken. Written to a temporary name and renamed, so a failed shot leaves no file."""
    tmp = out.with_suffix(".part.png")
    profile = tempfile.mkdtemp(prefix="ui-chromium-")
    command = [
        chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
        "--enable-unsafe-swiftshader",  # WebGL on the CPU: the flow-run graph is drawn with WebGL
        f"--user-data-dir={profile}", f"--window-size={size[0]},{size[1]}",
        f"--virtual-time-budget={budget_ms}", f"--screenshot={tmp}", url,
    ]  # fmt: skip
    try:
        subprocess.run(command, check=True, capture_output=True, timeout=120)
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    if not tmp.is_file() or tmp.stat().st_size < MIN_BYTES:
        size_note = tmp.stat().st_size if tmp.is_file() else "no file"
        tmp.unlink(missing_ok=True)
        sys.exit(f"ui_screens: error: {url} rendered (nearly) empty ({size_note} bytes)")
    os.replace(tmp, out)
    print(f"{out.name}  {url}")


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
    """The last version of each keyed artifact (the table and the curve are re-published every epoch)."""
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
    parser.add_argument("--flow-run", required=True, type=UUID, help="a finished flow run's id")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--prefix", default="", help="prepended to each file name")
    parser.add_argument("--only", help="comma-separated artifact key endings: only those, no page shots")
    args = parser.parse_args()
    ui, out = args.ui.rstrip("/"), args.out
    out.mkdir(parents=True, exist_ok=True)
    run, tasks, artifacts = run_objects(args.flow_run)
    if not run.state or not run.state.is_final():
        sys.exit(f"ui_screens: error: flow run {run.id} is {run.state and run.state.name}, not finished")
    train = [t for t in tasks if t.name.startswith("train-")]
    if not train:
        sys.exit(f"ui_screens: error: flow run {run.id} has no train-* task run")
    p, shown = args.prefix, latest_per_key(artifacts)
    if args.only:
        endings = tuple(args.only.split(","))
        shown = [a for a in shown if a.key.endswith(endings)]
    else:
        shoot(f"{ui}/deployments", out / f"{p}01-deployments.png", (1600, 900))
        shoot(f"{ui}/runs/flow-run/{run.id}", out / f"{p}02-flow-run.png", (1600, 1400))
        shoot(
            f"{ui}/runs/flow-run/{run.id}?tab=Artifacts", out / f"{p}03-flow-run-artifacts.png", (1600, 1400)
        )
        shoot(f"{ui}/runs/task-run/{train[-1].id}?tab=Logs", out / f"{p}04-train-logs.png", (1600, 1400))
    for number, a in enumerate(shown, start=5):
        tall = a.type == "markdown"  # the model card is long: take it whole
        shoot(
            f"{ui}/artifacts/artifact/{a.id}",
            out / f"{p}{number:02d}-{a.key}.png",
            (1600, 2600 if tall else 1200),
        )


if __name__ == "__main__":
    main()
