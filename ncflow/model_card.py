"""A registered model's card (markdown): data, parameters, metrics against the previous champion,
training time, and the learning curve as a table with a bar per epoch. Generic over models: the
caller names the metrics to show."""

from __future__ import annotations

from typing import Any

from ncflow.registry import Registration

BAR = 24  # characters of the widest learning-curve bar


def model_card(
    reg: Registration,
    *,
    data: dict[str, Any],
    params: dict[str, Any],
    history: list[dict[str, Any]],
    training: dict[str, Any],
    metrics: tuple[str, ...] = ("hr@10", "ndcg@10"),
) -> str:
    entry, metric = reg.entry, reg.entry.record["metric"]
    lines = [
        f"# {entry.record['model']} / {entry.record['dataset']} v{entry.version}",
        "",
        f"**{'Champion' if reg.promoted else 'Not promoted'}**: {reg.reason}.",
        "",
        "## Metrics (independent evaluation of the saved bundle)",
        "",
        "| metric | this model | previous champion |",
        "|---|---|---|",
    ]
    for name in metrics:
        old = reg.previous.metrics.get(name) if reg.previous else None
        if name == metric and reg.previous_score is not None:
            old = reg.previous_score  # on this model's test set
        prev = "-" if old is None else f"{old:.4f} (v{reg.previous.version})"
        lines.append(f"| {name} | {entry.metrics[name]:.4f} | {prev} |")
    lines += [
        "",
        "## Training",
        "",
        f"- epochs run: {training.get('epochs')}, best epoch: {training.get('best_epoch')}",
        f"- training time: {_s(training.get('train_seconds'))} (train + eval {_s(training.get('seconds'))}, "
        f"trainer process {_s(training.get('wall_seconds'))})",
        f"- time to target {training.get('target_hr')}: {_s(training.get('time_to_target_s'))}",
        f"- processes: {training.get('processes')} on {training.get('device')}",
        "",
        "## Learning curve",
        "",
        "| epoch | loss | HR@10 | NDCG@10 | samples/s | |",
        "|---|---|---|---|---|---|",
    ]
    top = max((h["hr@10"] for h in history), default=0) or 1
    for h in history:
        bar = "█" * max(1, round(BAR * h["hr@10"] / top))
        lines.append(
            f"| {h['epoch']} | {h['loss']:.4f} | {h['hr@10']:.4f} | {h['ndcg@10']:.4f} "
            f"| {h['train_samples_per_s']:,.0f} | `{bar}` |"
        )
    counts = data.get("counts", {})
    lines += [
        "",
        "## Data",
        "",
        f"- dataset: {data.get('dataset')} ({data.get('protocol')} protocol), test set `{entry.test_set}`",
        "- " + ", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in counts.items()),
        f"- source md5: `{data.get('source', {}).get('md5')}`",
        "",
        "## Parameters",
        "",
        "| parameter | value |",
        "|---|---|",
        *(f"| {k} | `{v}` |" for k, v in params.items()),
        "",
        f"Bundle: `{entry.path}`",
        "",
    ]
    return "\n".join(lines)


def _s(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.1f} s"
