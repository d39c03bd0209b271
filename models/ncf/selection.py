"""When NCF training stops and what its run amounts to, given the per-epoch records.

The selection metric `key` is test HR@10 (`hr@10`, NVIDIA's protocol) or, on data with a validation
split, `valid_hr@10`: then neither the stop nor the kept weights ever look at test.
"""

from __future__ import annotations


def stop_reason(history: list[dict], key: str, target_hr: float, patience: int = 0) -> str | None:
    """Why training stops after `history` (None: it goes on): the target reached, or `patience` epochs
    without a better `key` (0: never)."""
    if any(h[key] >= target_hr for h in history):
        return "target_hr"
    if patience and history:
        best = max(history, key=lambda h: h[key])  # the first of equals: a tie is no improvement
        if history[-1]["epoch"] - best["epoch"] >= patience:
            return "patience"
    return None


def summarize(history: list[dict], target_hr: float, key: str = "hr@10") -> dict:
    """The run in figures; `key` is the selection metric (hr@10 on test, or valid_hr@10)."""
    if not history:
        return {"epochs": 0}
    best = max(history, key=lambda h: h[key])
    elapsed, time_to_target = 0.0, None
    for h in history:
        elapsed += h["train_seconds"] + h["eval_seconds"]
        if time_to_target is None and h[key] >= target_hr:
            time_to_target = elapsed
    last = history[-1]
    ndcg = key.replace("hr@", "ndcg@")
    return {
        "epochs": len(history), key: last[key], ndcg: last[ndcg], "loss": last["loss"],
        "best_epoch": best["epoch"], f"best_{key}": best[key], "target_hr": target_hr,
        "time_to_target_s": time_to_target, "train_seconds": sum(h["train_seconds"] for h in history),
        "seconds": elapsed,
    }  # fmt: skip
