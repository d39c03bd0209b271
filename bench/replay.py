"""MovieLens-100K's 31 weeks replayed as a growing log, through the real pipeline: does retraining learn?

    python3 bench/replay.py --source ../shared/data/ml-100k --out bench/results/$(date +%F)-replay

What runs, all real and on 127.0.0.1 (tests/postgres_server.py, tests/e2e_stack.py's helpers):
- a PostgreSQL server, holding the log's table `ml100k` and the Prefect server's own database;
- a `prefect server` on it, a process work pool and worker, and two deployments of `ncf-train` made
  for the replay: one reads a folder of hive-partitioned Parquet files (`week=NN/part-0.parquet`),
  the other the PostgreSQL table; each has a trigger on `ncflow.data.landed` for its dataset, whose
  payload's `cutoff` (the new week's first day) becomes the run's temporal cutoff;
- week by week: the week's ratings are appended to the folder and inserted into the table, and the
  ETL's one line is run for each, `prefect event emit ncflow.data.landed --resource-id
  ncflow.dataset.<name> --payload '{"cutoff": "YYYY-MM-DD"}'`; the trigger starts the run; the
  temporal protocol trains on the weeks before and tests on the new one; the champion rule compares
  with the champion on that week (models/ncf/compare.py).

Recorded per week (the Parquet folder's runs): the champion, whether the new model was promoted, the
run's wall time (event to Completed), the fair comparison, and the champion's metrics on the FOLLOWING
week (bench/replay_eval.py) against two baselines on the same week: the first model, frozen, and
popularity over the last 4 weeks. Written to OUT/replay.json, OUT/replay.md and OUT/replay.svg, and
shown as the artifact `replay-ml100k` on the replay's server.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from e2e_stack import PREFECT, free_port, prefect, start, stop, wait_until  # noqa: E402
from postgres_server import postgres_server  # noqa: E402
from replay_eval import evaluate_week, week_split  # noqa: E402

from ncflow.learning_curve import svg_markdown_image  # noqa: E402

POOL = "replay"
DATASETS = {"lake": "ml100k-lake", "pg": "ml100k"}  # deployment -> dataset label (the event's resource)
# The replay's recipe: small and fast enough for a CPU (27 weeks x 2 runs), tuned on nothing but validation.
RECIPE = {
    "epochs": 12, "batch_size": 8192, "lr": 0.005, "beta1": 0.9, "beta2": 0.999, "mf_dim": 32,
    "mlp_layers": [64, 32, 16], "dropout": 0.1, "negatives": 4, "target_hr": 1.0, "validation": True,
    "patience": 3, "holdout": "temporal", "horizon_days": 7, "gpus": 0,
}  # fmt: skip


def read_log(source: Path) -> pa.Table:
    names = ["user", "item", "rating", "ts"]
    read = pacsv.ReadOptions(column_names=names)
    return pacsv.read_csv(
        source / "u.data", read_options=read, parse_options=pacsv.ParseOptions(delimiter="\t")
    )


def deployments_yaml(out: Path, lake: Path) -> Path:
    """The replay's two deployments of ncf-train, each triggered by its dataset's `ncflow.data.landed`."""
    common = {
        **RECIPE, "user_col": "user", "item_col": "item", "rating_col": "rating", "timestamp_col": "ts",
        "data_dir": str(out / "data"), "runs_dir": str(out / "runs"), "registry_dir": str(out / "registry"),
    }  # fmt: skip
    deployments = []
    for name, label in DATASETS.items():
        dataset = str(lake) if name == "lake" else f"pg:{label}"
        extra = {"connection": "env:REPLAY_DB"} if name == "pg" else {}
        deployments.append(
            {
                "name": f"replay-{name}",
                "entrypoint": "flows/ncf_train.py:ncf_train",
                "parameters": {"dataset": dataset, **common, **extra},
                "triggers": [
                    {
                        "type": "event",
                        "enabled": True,
                        "match": {"prefect.resource.id": f"ncflow.dataset.{label}"},
                        "expect": ["ncflow.data.landed"],
                        "parameters": {
                            "cutoff": "{{ event.payload.cutoff }}",
                            "until": "{{ event.payload.until }}",
                        },
                    }
                ],
                "work_pool": {"name": POOL},
            }  # fmt: skip
        )
    spec = {
        "name": "ncflow-replay", "prefect-version": "3.8.8",
        "build": [{"prefect.deployments.steps.run_shell_script": {"id": "checkout", "script": "pwd"}}],
        "pull": [{"prefect.deployments.steps.set_working_directory": {"directory": "{{ checkout.stdout }}"}}],
        "deployments": deployments,
    }  # fmt: skip
    path = out / "replay-prefect.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


async def runs_of(deployment: str, after: float) -> list:
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        found = await client.read_deployment_by_name(deployment)
        runs = await client.read_flow_runs()
    return [r for r in runs if r.deployment_id == found.id and r.created.timestamp() >= after]


async def final(run_id) -> tuple[str, dict | None, float]:
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        run = await client.read_flow_run(run_id)
        result = await run.state.result(raise_on_failure=False) if run.state.is_completed() else None
    return run.state.name, result, run.total_run_time.total_seconds()


def append_week(table: pa.Table, lake: Path, url: str, week: int) -> None:
    """The week's rows into the folder (a new partition) and into the table (one ingest)."""
    import adbc_driver_postgresql.dbapi as adbc

    folder = lake / f"week={week:02d}"
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, folder / "part-0.parquet")
    with adbc.connect(url) as conn, conn.cursor() as cursor:
        cursor.adbc_ingest("ml100k", table, mode="create_append")
        conn.commit()


def replay(args: argparse.Namespace) -> dict:
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    log = read_log(Path(args.source))
    start_day = dt.datetime.fromtimestamp(int(np.min(log["ts"].to_numpy())), dt.UTC).date()
    start_s = int(dt.datetime(start_day.year, start_day.month, start_day.day, tzinfo=dt.UTC).timestamp())
    week_of = (log["ts"].to_numpy() - start_s) // (7 * 86_400)
    last = (
        int(week_of.max())
        if args.weeks is None
        else min(int(week_of.max()), args.first_week + args.weeks - 1)
    )
    lake = out / DATASETS["lake"]  # its name is the dataset label (the registry folder, the event resource)
    pq.write_table(log, out / "ml100k.parquet")  # the whole log, for the evaluation splits
    weeks: list[dict] = []
    with postgres_server() as pg, tempfile.TemporaryDirectory(prefix="replay-prefect-") as home:
        url = pg.url(pg.create_database("shop"))
        pg.create_database("prefect")
        port = free_port()
        env = {
            **os.environ, "PYTHONPATH": str(REPO), "PREFECT_HOME": home, "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
            "PREFECT_API_DATABASE_CONNECTION_URL": pg.url("prefect", driver="postgresql+asyncpg"),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_WORKER_QUERY_SECONDS": "2", "REPLAY_DB": url,
        }  # fmt: skip
        env.pop("PREFECT_PROFILE", None)
        logs = out / "logs"
        logs.mkdir(exist_ok=True)
        server = start(
            [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)], env, logs / "server.log"
        )
        worker = None
        try:
            wait_until(lambda: prefect(env, "version", check=False) and healthy(port), "the server", 120, 1)
            prefect(env, "work-pool", "create", POOL, "--type", "process")
            prefect(env, "work-pool", "set-concurrency-limit", POOL, "2")
            prefect(env, "--no-prompt", "deploy", "--all", "--prefect-file", str(deployments_yaml(out, lake)))
            worker = start([PREFECT, "worker", "start", "--pool", POOL], env, logs / "worker.log")
            append_week(
                log.filter(week_of < args.first_week), lake, url, args.first_week - 1
            )  # the history so far
            os.environ.update({k: env[k] for k in ("PREFECT_API_URL", "PREFECT_HOME")})
            for week in range(args.first_week, last + 1):
                append_week(log.filter(week_of == week), lake, url, week)
                cutoff = start_day + dt.timedelta(days=7 * week)
                began = time.time()
                for label in DATASETS.values():  # what an ETL job runs when its export lands
                    prefect(env, "event", "emit", "ncflow.data.landed", "--resource-id", f"ncflow.dataset.{label}",
                            "--payload", json.dumps({"cutoff": str(cutoff), "until": str(cutoff + dt.timedelta(days=7))}))  # fmt: skip
                record = {"week": week, "cutoff": str(cutoff)}
                for name in DATASETS:
                    deployment = f"ncf-train/replay-{name}"
                    runs = wait_until(
                        lambda d=deployment, t=began: asyncio.run(runs_of(d, t - 1)),
                        f"{deployment}'s run",
                        300,
                        1,
                    )
                    state, result, seconds = wait_until(
                        lambda r=runs[0]: (got := asyncio.run(final(r.id)))[0] in ("Completed", "Failed", "Crashed", "Cancelled") and got,
                        f"{deployment}'s week {week} run", 1800, 2,
                    )  # fmt: skip
                    record[name] = {
                        "state": state, "run_seconds": round(seconds, 1), "wall_seconds": round(time.time() - began, 1),
                        **{k: (result or {}).get(k) for k in ("version", "promoted", "champion", "full_hr@10", "full_ndcg@10", "skipped")},
                    }  # fmt: skip
                    if result and result.get("version"):
                        entry = json.loads(
                            (
                                out
                                / "registry"
                                / "ncf"
                                / DATASETS[name]
                                / f"v{result['version']}"
                                / "registration.json"
                            ).read_text()
                        )
                        record[name]["reason"] = entry["reason"]
                        record[name]["comparison"] = entry.get("comparison")
                weeks.append(record)
                print(json.dumps(record), flush=True)
            report = evaluate(weeks, log, start_day, out)
            publish(report)
        finally:
            for proc in (worker, server):
                if proc is not None:
                    stop(proc)
    return report


def healthy(port: int) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def evaluate(weeks: list[dict], log: pa.Table, start_day: dt.date, out: Path) -> dict:
    """Each week's champion (the Parquet folder's) on the following week, beside the two baselines."""
    registry = out / "registry" / "ncf" / DATASETS["lake"]
    first = next((w["lake"]["version"] for w in weeks if w["lake"].get("version")), None)
    frozen = registry / f"v{first}" if first else None
    rows = []
    for record in weeks[:-1]:
        champion = record["lake"].get("champion")
        week = record["week"] + 1
        split = week_split(out / "ml100k.parquet", start_day, week, out / "eval")
        cutoff = start_day + dt.timedelta(days=7 * week)
        models = {"retrained": Path(champion) if champion else None, "frozen": frozen, "popularity": None}
        scored = evaluate_week(split, models, log, cutoff)
        rows.append({"week": record["week"], "next_week": week, **scored, "run": record})
        print(json.dumps({k: v for k, v in rows[-1].items() if k != "run"}), flush=True)
    return {"weeks": rows, "first_version": first, "recipe": RECIPE}


def evaluate_only(out: Path, source: Path) -> dict:
    """The evaluation again, from a finished replay's replay.json and registry (no runs)."""
    log = read_log(source)
    start_day = dt.datetime.fromtimestamp(int(np.min(log["ts"].to_numpy())), dt.UTC).date()
    done = json.loads((out / "replay.json").read_text())
    runs = [row["run"] for row in done["weeks"]]
    last = runs[-1]["week"] + 1  # the final week's run was not evaluated (no week after it), but exists
    runs.append({"week": last, "lake": {}, "pg": {}})
    report = evaluate(runs, log, start_day, out)
    return report | {"recipe": done.get("recipe", RECIPE)}


def publish(report: dict) -> None:
    """The table and picture as the artifact `replay-ml100k`, made by a flow run of its own."""
    from prefect import flow
    from prefect.artifacts import create_markdown_artifact

    @flow(name="replay-report")
    def replay_report(text: str) -> None:
        create_markdown_artifact(
            text, key="replay-ml100k", description="MovieLens-100K replayed week by week"
        )

    replay_report(markdown(report))


def markdown(report: dict) -> str:
    """The per-week table, then the picture (an SVG data URI, as the Prefect UI shows it)."""
    lines = [
        "| week | champion | promoted | run wall s | next week: retrained HR@10 / NDCG@10 | first model, frozen | "
        "popularity, last 4 weeks | next week's test users (cold-start users) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in report["weeks"]:
        run = row["run"]["lake"]
        champion = Path(run["champion"]).name if run.get("champion") else "-"
        cells = [f"{row[m]['full_hr@10']:.3f} / {row[m]['full_ndcg@10']:.3f}" for m in SERIES]
        counts = row["counts"]
        lines.append(
            f"| {row['week']} | {champion} | {'yes' if run.get('promoted') else 'no'} | {run['wall_seconds']} | "
            + " | ".join(cells)
            + f" | {counts['test_users']} ({counts['cold_start_users']}) |"
        )
    later = report["weeks"][len(report["weeks"]) // 2 :]

    def mean(name: str, metric: str) -> str:
        return f"{np.mean([r[name][metric] for r in later if name in r]):.3f}"

    lines += ["", f"Means over the later half of the weeks ({later[0]['week']} to {later[-1]['week']}):", ""]
    lines += [
        "| served to | metric | retrained champion | first model, frozen | popularity, last 4 weeks |",
        "|---|---|---|---|---|",
    ]
    for suffix, who in (
        ("", "every test user (unknown users get the popularity fallback)"),
        ("_on_frozen_users", "users the first model knows"),
    ):
        for metric in ("full_hr@10", "full_ndcg@10", "full_recall@20"):
            lines.append(
                f"| {who} | {metric} | " + " | ".join(mean(m + suffix, metric) for m in SERIES) + " |"
            )
    lines += ["", svg_markdown_image(picture(report), "full HR@10 on the following week, per week")]
    return "\n".join(lines) + "\n"


SERIES = ("retrained", "frozen", "popularity")
COLOURS = {"retrained": "#1f77b4", "frozen": "#d62728", "popularity": "#7f7f7f"}


def picture(report: dict) -> str:
    """Full HR@10 on the following week: one line per model, weeks along."""
    rows = report["weeks"]
    width, height, left, right, top, bottom = 720, 280, 56, 150, 30, 40
    plot_w, plot_h = width - left - right, height - top - bottom
    weeks = [r["week"] for r in rows]
    top_value = max(max(r[m]["full_hr@10"] for m in SERIES) for r in rows) * 1.1 or 1
    x = lambda w: left + plot_w * (w - weeks[0]) / max(1, weeks[-1] - weeks[0])  # noqa: E731
    y = lambda v: top + plot_h * (1 - v / top_value)  # noqa: E731
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="11">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{left}" y="18" font-size="13">full HR@10 on the following week (ml-100k replay)</text>',
        f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" stroke="#444"/>',
    ]
    for tick in np.linspace(0, top_value, 5):
        parts.append(f'<text x="{left - 6}" y="{y(tick) + 4:.1f}" text-anchor="end">{tick:.2f}</text>')
        parts.append(
            f'<line x1="{left}" y1="{y(tick):.1f}" x2="{left + plot_w}" y2="{y(tick):.1f}" stroke="#eee"/>'
        )
    for w in weeks[:: max(1, len(weeks) // 8)]:
        parts.append(f'<text x="{x(w):.1f}" y="{top + plot_h + 16}" text-anchor="middle">week {w}</text>')
    for i, name in enumerate(SERIES):
        points = " ".join(f"{x(r['week']):.1f},{y(r[name]['full_hr@10']):.1f}" for r in rows)
        parts.append(f'<polyline points="{points}" fill="none" stroke="{COLOURS[name]}" stroke-width="2"/>')
        parts.append(
            f'<text x="{left + plot_w + 10}" y="{top + 14 + 16 * i}" fill="{COLOURS[name]}">{name}</text>'
        )
    parts.append("</svg>")
    return "\n".join(parts)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--source", default=str(REPO.parent / "shared" / "data" / "ml-100k"))
    parser.add_argument("--out", required=True)
    parser.add_argument(
        "--first-week", type=int, default=4, help="the first retraining: weeks before it are history"
    )
    parser.add_argument("--weeks", type=int, help="replay only this many weeks (default: to the end)")
    parser.add_argument(
        "--window-days",
        type=int,
        help="each run trains on the last N days before its week's end (window_days)",
    )
    parser.add_argument("--evaluate-only", action="store_true", help="score a finished replay (OUT) again")
    args = parser.parse_args()
    if args.window_days:
        RECIPE["window_days"] = args.window_days
    out = Path(args.out)
    report = evaluate_only(out.resolve(), Path(args.source)) if args.evaluate_only else replay(args)
    (out / "replay.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    (out / "replay.md").write_text(markdown(report))
    (out / "replay.svg").write_text(picture(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
