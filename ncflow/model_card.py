"""A registered model's card (markdown): the promotion decision and why, metrics against the previous
champion and against the baselines (item popularity and EASE, fitted on the same training data and
scored on the same users; the card says plainly when one beats the model), training time, the
learning curve as a picture (ncflow.learning_curve) and as numbers, data and parameters. Generic
over models: the caller names the metrics to show."""

from __future__ import annotations

import re
from typing import Any

from ncflow.learning_curve import Reference, learning_curve_markdown, scale
from ncflow.registry import Registration

BASELINES = (("popularity", "item popularity"), ("ease", "EASE"))  # the evaluations' key prefixes


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
    """`metrics`: shown, in the metrics table and the learning curve (on which the previous champion's
    score and the popularity baseline are dashed lines); `throughput`: (epoch key, label)."""
    entry = reg.entry
    lines = [
        f"# {entry.record['model']} / {entry.record['dataset']} v{entry.version}",
        "",
        decision(reg),
        "",
        *(
            line
            for verdict in baseline_verdicts(entry.metrics, (*metrics, *full_metrics))
            for line in (verdict, "")
        ),
        "## Metrics (independent evaluation of the saved bundle)",
        "",
        *comparison(reg, metrics),
        *full_ranking_table(entry.metrics, full_metrics),
    ]
    # with a validation split the epochs report valid_* metrics: the curve shows what was measured
    curve = [m for m in (*metrics, *(f"valid_{m}" for m in metrics)) if any(m in h for h in history)]
    curve = tuple(curve or metrics)
    lines += [
        "",
        "## Learning curve",
        "",
        learning_curve_markdown(history, curve, references=_references(reg, metrics, curve)),
        "",
        "| epoch | loss | " + " | ".join(m.upper() for m in curve) + f" | {throughput[1]} |",
        "|---|---|" + "---|" * len(curve) + "---|",
    ]
    for h in history:
        values = " | ".join(_f(h.get(m)) for m in curve)
        lines.append(f"| {h['epoch']} | {_f(h.get('loss'))} | {values} | {h.get(throughput[0], 0):,.0f} |")
    lines += [
        "",
        "## Training",
        "",
        f"- epochs run: {training.get('epochs')}, best epoch: {training.get('best_epoch')}",
        f"- training time: {_s(training.get('train_seconds'))} (train + eval {_s(training.get('seconds'))}, "
        f"trainer process {_s(training.get('wall_seconds'))})",
        *(
            [f"- time to target {training.get('target_hr')}: {_s(training.get('time_to_target_s'))}"]
            if training.get("time_to_target_s") is not None
            else []
        ),
        f"- processes: {training.get('processes')} on {training.get('device')}",
    ]
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
        *_pairs(params),
        "",
        f"Bundle: `{entry.path}`",
        "",
    ]
    return "\n".join(lines)


def decision(reg: Registration) -> str:
    """The outcome in bold, then why (the registry's reason without its closing verdict)."""
    why = re.sub(r": (promoted|not promoted|champion|kept)$", "", reg.reason)
    if reg.promoted:
        outcome = "Promoted: the new champion"
    else:
        outcome = "Not promoted" + (f": the champion stays v{reg.previous.version}" if reg.previous else "")
    return f"**{outcome}.** Why: {why}."


def comparison(reg: Registration, metrics: tuple[str, ...]) -> list[str]:
    """A markdown table: each of `metrics` for this model, the previous champion and the change; the
    champion rule's metric is marked (for it, the champion's score on this model's test set). Then
    the item-popularity baseline, when the evaluation measured one."""
    entry, metric, previous = reg.entry, reg.entry.record["metric"], reg.previous
    champion = f"champion v{previous.version}" if previous else "previous champion"
    lines = [f"| metric | this model (v{entry.version}) | {champion} | change |", "|---|---|---|---|"]
    shown = [*metrics, *(f"valid_{m}" for m in metrics if f"valid_{m}" in entry.metrics)]
    if metric not in shown and metric in entry.metrics:
        shown.append(metric)
    fair = entry.record.get("comparison")
    for name in shown:
        new = entry.metrics.get(name)
        old = previous.metrics.get(name) if previous else None
        if name == metric and reg.previous_score is not None:
            old = reg.previous_score  # on this model's test set
        if name == metric and fair:  # both on the held-out data neither trained on
            new, old = fair["challenger"], fair["champion"]
        change = f"{new - old:+.4f}" if _number(new) and _number(old) else "-"
        label = f"**{name}** (decides)" if name == metric else name
        lines.append(f"| {label} | {_f(new)} | {_f(old)} | {change} |")
    if fair:
        lines += [
            "",
            f"The deciding row scores both models on {fair['on']}; the other rows are each model's own test set.",
        ]
    return lines + baseline_table(entry.metrics, metrics)


def _baseline_label(scores: dict[str, Any], prefix: str, label: str) -> str:
    lam = scores.get(f"{prefix}_lambda")
    return f"{label} (lambda {lam:g})" if isinstance(lam, int | float) else label


def baseline_table(scores: dict[str, Any], names: tuple[str, ...]) -> list[str]:
    """The model beside the baselines on `names`: the same users, the same protocol; they were fitted on
    the same training data (models/ease/evaluate.py: baseline_rows). Empty when none was measured."""
    names = tuple(n for n in names if n in scores)
    rows = [
        (_baseline_label(scores, prefix, label), {n: scores[f"{prefix}_{n}"] for n in names})
        for prefix, label in BASELINES
        if names and all(f"{prefix}_{n}" in scores for n in names)
    ]
    if not rows:
        return []
    return [
        "",
        "Baselines fitted on the same training data, scored on the same users:",
        "",
        "| | " + " | ".join(n.upper() for n in names) + " |",
        "|---|" + "---|" * len(names),
        *(
            f"| {who} | " + " | ".join(_f(values[n]) for n in names) + " |"
            for who, values in [("this model", scores), *rows]
        ),
    ]


def baseline_verdicts(scores: dict[str, Any], names: tuple[str, ...]) -> list[str]:
    """One plain sentence per baseline that scores above the model on any of `names` (test metrics)."""
    verdicts = []
    for prefix, label in BASELINES:
        beaten = [
            f"{n} {scores[f'{prefix}_{n}']:.4f} against {scores[n]:.4f}"
            for n in dict.fromkeys(names)
            if _number(scores.get(n))
            and _number(scores.get(f"{prefix}_{n}"))
            and scores[f"{prefix}_{n}"] > scores[n]
        ]
        if beaten:
            who = _baseline_label(scores, prefix, label)
            verdicts.append(f"**A baseline beats this model: {who}**, on " + "; ".join(beaten) + ".")
    return verdicts


def full_ranking_table(scores: dict[str, Any], names: tuple[str, ...]) -> list[str]:
    """The model and item popularity under the same full-ranking protocol (every unseen item ranked)."""
    names = tuple(n for n in names if n in scores)
    if not names:
        return []
    rows = [("this model", scores)]
    for prefix, label in BASELINES:
        if all(f"{prefix}_{n}" in scores for n in names):
            rows.append((_baseline_label(scores, prefix, label), {n: scores[f"{prefix}_{n}"] for n in names}))
    return [
        "",
        "### Full ranking (each held-out item against every item the user has not seen)",
        "",
        "| | " + " | ".join(n.removeprefix("full_").upper() for n in names) + " |",
        "|---|" + "---|" * len(names),
        *(f"| {who} | " + " | ".join(f"{values[n]:.4f}" for n in names) + " |" for who, values in rows),
    ]


def _pairs(params: dict[str, Any]) -> list[str]:
    """The parameters as a table two pairs wide: half as long to scroll past."""
    items = [f"{k} | `{v}`" for k, v in params.items()]
    half = (len(items) + 1) // 2
    left, right = items[:half], items[half:] + [" | "] * (half - len(items[half:]))
    return ["| parameter | value | parameter | value |", "|---|---|---|---|"] + [
        f"| {a} | {b} |" for a, b in zip(left, right)
    ]


def _references(reg: Registration, metrics: tuple[str, ...], curve: tuple[str, ...]) -> list[Reference]:
    """Dashed lines on the curve, each on its own metric's axis: the score to beat (the champion's, on
    this test set, in the metric that decided) and what item popularity and EASE score. When the
    deciding metric is not drawn per epoch (NCF's fair comparison decides on full-ranking HR@10),
    this model's score in it stands beside the champion's, so that panel compares like with like."""
    entry, refs = reg.entry, []
    metric = entry.record["metric"]
    if reg.previous is not None and reg.previous_score is not None:
        refs.append(Reference(f"champion v{reg.previous.version}", metric, float(reg.previous_score)))
        fair = entry.record.get("comparison")
        mine = fair["challenger"] if fair else entry.metrics.get(metric)
        if scale(metric) not in {scale(m) for m in curve} and _number(mine):
            refs.append(Reference(f"this model v{entry.version}", metric, float(mine)))
    for name in metrics[:1]:
        for prefix, label in BASELINES:
            if _number(entry.metrics.get(f"{prefix}_{name}")):
                refs.append(Reference(label.split()[-1], name, float(entry.metrics[f"{prefix}_{name}"])))
    return refs


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _f(value: Any) -> str:
    return f"{value:.4f}" if _number(value) else "-"


def _s(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.1f} s"


def best_section(decision: Any) -> str:
    """The `best` alias's decision (ncflow.best.Decision) in words, for the card shown in the UI."""
    verdict = "this model is now the best" if decision.moved else "the best stays"
    return f"## Best across families\n\n{verdict}: {decision.reason}\n"
