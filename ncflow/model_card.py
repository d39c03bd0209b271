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
    full_metrics: tuple[str, ...] = ("full_hr@10", "full_ndcg@10", "full_recall@20"),
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
    shown_metrics = [*metrics, *(f"valid_{m}" for m in metrics if f"valid_{m}" in entry.metrics)]
    if metric not in shown_metrics and metric in entry.metrics:
        shown_metrics.append(metric)
    for name in shown_metrics:
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
    lines += full_ranking_table(entry.metrics, full_metrics)
    curve = [m for m in (*metrics, *(f"valid_{m}" for m in metrics)) if any(m in h for h in history)]
    curve = curve or list(metrics)
    lines += [
        "",
        "## Training",
        "",
        f"- epochs run: {training.get('epochs')}, best epoch: {training.get('best_epoch')}, "
        f"weights kept from epoch: {training.get('weights_epoch', '-')}",
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
        "| epoch | loss | " + " | ".join(m.upper() for m in curve) + f" | {throughput[1]} | |",
        "|---|---|" + "---|" * len(curve) + "---|---|",
    ]
    shown = metric if history and metric in history[0] else curve[0]
    top = max((h.get(shown, 0) for h in history), default=0) or 1
    for h in history:
        bar = "█" * max(1, round(BAR * h.get(shown, 0) / top))
        values = " | ".join(f"{h[m]:.4f}" if m in h else "-" for m in curve)
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


def full_ranking_table(scores: dict[str, Any], names: tuple[str, ...]) -> list[str]:
    """The model and item popularity under the same full-ranking protocol (every unseen item ranked)."""
    names = tuple(n for n in names if n in scores)
    if not names:
        return []
    rows = [("this model", scores)]
    if all(f"popularity_{n}" in scores for n in names):
        rows.append(("item popularity", {n: scores[f"popularity_{n}"] for n in names}))
    return [
        "",
        "### Full ranking (each held-out item against every item the user has not seen)",
        "",
        "| | " + " | ".join(n.removeprefix("full_").upper() for n in names) + " |",
        "|---|" + "---|" * len(names),
        *(f"| {who} | " + " | ".join(f"{values[n]:.4f}" for n in names) + " |" for who, values in rows),
    ]


def _s(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.1f} s"
