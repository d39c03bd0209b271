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
    throughput: tuple[str, str] = ("train_samples_per_s", "samples/s"),
) -> str:
    """`metrics`: shown, in the metrics table and the learning curve (whose bars follow the champion
    metric when the epochs report it, else the first of `metrics`); `throughput`: (epoch key, label)."""
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
    baseline = [
        f"{name} {entry.metrics[f'popularity_{name}']:.4f}"
        for name in metrics
        if f"popularity_{name}" in entry.metrics
    ]
    if baseline:  # the same users scored by item popularity alone: what the model adds
        lines += ["", "Item-popularity baseline on the same users: " + ", ".join(baseline) + "."]
    lines += [
        "",
        "## Training",
        "",
        f"- epochs run: {training.get('epochs')}, best epoch: {training.get('best_epoch')}",
        f"- training time: {_s(training.get('train_seconds'))} (train + eval {_s(training.get('seconds'))}, "
        f"trainer process {_s(training.get('wall_seconds'))})",
        *(
            [f"- time to target {training.get('target_hr')}: {_s(training.get('time_to_target_s'))}"]
            if "target_hr" in training
            else []
        ),
        f"- processes: {training.get('processes')} on {training.get('device')}",
        "",
        "## Learning curve",
        "",
        "| epoch | loss | " + " | ".join(m.upper() for m in metrics) + f" | {throughput[1]} | |",
        "|---|---|" + "---|" * len(metrics) + "---|---|",
    ]
    shown = metric if history and metric in history[0] else metrics[0]
    top = max((h.get(shown, 0) for h in history), default=0) or 1
    for h in history:
        bar = "█" * max(1, round(BAR * h.get(shown, 0) / top))
        values = " | ".join(f"{h[m]:.4f}" if m in h else "-" for m in metrics)
        lines.append(
            f"| {h['epoch']} | {h['loss']:.4f} | {values} | {h.get(throughput[0], 0):,.0f} | `{bar}` |"
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
