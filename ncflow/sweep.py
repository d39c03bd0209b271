"""Ranking a sweep's trials: by the validation metric when the trainer reports one, else by test.

Plain functions over the trainers' `done` summaries, so tests call them without Prefect or Dask.
"""

from __future__ import annotations

from typing import Any

# Per model, the summary keys to rank by, first found wins, with what the key measures. NCF's trainer
# reports `valid_hr@10` once it holds out a validation item (issue 11 part 1); until then its `hr@10`
# is on the test set. Mult-VAE keeps its best validation epoch's weights: `best_ndcg100` is that epoch's
# validation NDCG@100 (its `ndcg@100` is the last epoch's, which the bundle may not hold).
SELECTION: dict[str, tuple[tuple[str, str], ...]] = {
    "ncf": (
        ("valid_hr@10", "validation"),
        ("hr@10", "test (this trainer reports no validation metric)"),
    ),
    "vae-cf": (
        ("best_ndcg100", "validation (the kept epoch)"),
        ("ndcg@100", "validation (the last epoch)"),
        ("test_ndcg@100", "test (this trainer reports no validation metric)"),
    ),
    "ease": (
        ("valid_full_ndcg@10", "validation"),
        ("full_ndcg@10", "test (no validation split: one lambda)"),
    ),
}
SELECTION["vae-cf-ncf"] = SELECTION["vae-cf"]
SELECTION["ease-vaecf"] = (("valid_ndcg@100", "validation"), ("ndcg@100", "test"))


def selection_metric(model: str, summaries: list[dict[str, Any]]) -> tuple[str, str]:
    """(summary key, what it measures): the first of the model's keys every finished trial reports."""
    done = [s for s in summaries if s]
    for key, what in SELECTION[model]:
        if done and all(isinstance(s.get(key), int | float) for s in done):
            return key, what
    return SELECTION[model][-1]


def rank_rows(
    model: str, trials: list[dict[str, Any]], summaries: list[dict[str, Any] | None], errors: list[str | None]
) -> tuple[list[dict[str, Any]], str, str]:
    """Table rows, best first (failed trials last), plus the ranking key and what it measures."""
    key, what = selection_metric(model, [s for s in summaries if s])
    rows = []
    for number, (trial, summary, error) in enumerate(zip(trials, summaries, errors)):
        score = summary.get(key) if summary else None
        rows.append(
            {
                "trial": number,
                **trial,
                key: None if score is None else round(float(score), 5),
                "epochs": summary.get("epochs") if summary else None,
                "seconds": round(float(summary.get("seconds", 0.0)), 2) if summary else None,
                "worker": summary.get("worker") if summary else None,
                "status": "ok" if summary else f"failed: {(error or '').splitlines()[0][:120]}",
            }
        )
    rows.sort(key=lambda r: (r[key] is None, -(r[key] or 0.0), r["trial"]))
    for rank, row in enumerate(rows, 1):
        row["rank"] = rank if row[key] is not None else None
    return [{"rank": r.pop("rank"), **r} for r in rows], key, what
