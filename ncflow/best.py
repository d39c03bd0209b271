"""The `best` alias: one model per dataset across the families (NeuMF, Mult-VAE, EASE), decided on the
same held-out data; each family's own `champion` (ncflow/registry.py) is untouched by it.

    registry/best/<dataset>/
      best.json        {"model": "ease", "version": 2, "metric": ..., "score": ..., "test_set": ...}
      comparison.md    the latest decision and the table behind it (also the flow's artifact)
      .lock            flock'ed around reading and moving the alias

Which data: the NCF split (leave latest out) of the dataset. Every family can be scored there on
equal terms: NeuMF scores its users, EASE (`ease`) and Mult-VAE (`vae-cf-ncf`) fold in each user's
training items, and all three trained on that split's training interactions alone. A model trained
on the VAE-CF split is never a candidate: that split trains on every item of 80% of the users,
including most users' NCF held-out items, so scoring it on the NCF split would reward memory.
Which metric: full-ranking NDCG@10 (every unseen item ranked; smoother than HR@10), on the
validation items when both models were registered on the same data holding them out
(`valid_full_ndcg@10`: no model is chosen on test), else on test. The alias moves only to a strictly
better model, from any family. A `best` registered on other data is scored with the newcomer on the
newcomer's test items, on the users and items both know (ncflow/best_compare.py, the champion rule's
fair comparison across families); if that cannot be made, it stays, and the reason (the error, in
one line) is in the decision, the flow's log and comparison.md.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ncflow import registry
from ncflow.atomic import atomic_file
from ncflow.errors import NcflowError

if TYPE_CHECKING:
    from models.ncf.compare import Comparison

BEST = "best"
ALIAS = "best.json"
COMPARISON = "comparison.md"
METRIC = "full_ndcg@10"
SHOWN = ("full_hr@10", "full_ndcg@10", "hr@10")  # beside the decision in the comparison table
FAIR_SHOWN = ("full_ndcg@10", "full_hr@10", "full_recall@20")  # both scored on the newcomer's data
CANDIDATES = ("ncf", "ease", "vae-cf-ncf")  # the registry names of models trained on the NCF split


@dataclass(frozen=True)
class Decision:
    moved: bool
    reason: str
    best: dict[str, Any] | None  # the alias after the decision
    comparison: str  # markdown: the decision, then every family's champion on this data


def best_dir(root: Path, dataset: str) -> Path:
    return Path(root) / BEST / dataset


def decision_metric(metrics: dict[str, Any]) -> str:
    """Validation's when the data holds a validation split out, else test's."""
    return f"valid_{METRIC}" if f"valid_{METRIC}" in metrics else METRIC


def read_best(root: Path, dataset: str) -> dict[str, Any] | None:
    path = best_dir(root, dataset) / ALIAS
    return json.loads(path.read_text()) if path.is_file() else None


def resolve_best(root: Path, dataset: str) -> tuple[str, Path]:
    """(the model's registry name, its version's folder) of `dataset`'s best; NcflowError if none."""
    alias = read_best(root, dataset)
    if alias is None:
        raise NcflowError(
            f"no `best` model for {dataset} in {Path(root)} yet: it is set when a model trained on the "
            f"ncf split registers (`ncflow train ncf|ease --dataset {dataset}`); or name --model"
        )
    return alias["model"], registry.resolve(Path(root), alias["model"], dataset, str(alias["version"]))


def consider(
    root: Path,
    dataset: str,
    model: str,
    entry: registry.Entry,
    protocol: str,
    compare: Callable[[str, Path], Comparison] | None = None,
) -> Decision:
    """Make `model`'s newly registered `entry` the dataset's best if it beats the current one on the
    same held-out data; `protocol` is the split it was trained and scored on. A best registered on
    other data is scored with the newcomer by `compare(best's model, best's folder)`
    (ncflow/best_compare.py: both on the newcomer's held-out users and items they both know)."""
    folder = best_dir(root, dataset)
    with registry.locked(folder):
        current = read_best(root, dataset)
        metric, fair, incumbent = decision_metric(entry.metrics), None, current
        if protocol != "ncf" or model not in CANDIDATES or METRIC not in entry.metrics:
            moved = False
            reason = f"{model} v{entry.version} was trained on the {protocol} split: not comparable, not a candidate"
        elif current is None:
            moved, reason = True, f"first model on the ncf split: {model} v{entry.version}"
        else:
            moved, reason, metric, fair = _against(root, dataset, current, entry, compare)
        if moved:
            current = {
                "model": model, "version": entry.version, "metric": metric,
                "score": fair.challenger if fair else entry.metrics[metric],
                "test_set": entry.test_set, "moved_at": time.time(), "reason": reason,
                "comparison": {**fair.as_record(), "on": fair.describe()} if fair else None,
            }  # fmt: skip
            with atomic_file(folder / ALIAS, "w") as handle:
                json.dump(current, handle)
        text = comparison(root, dataset, model, entry, metric, moved, reason, current, fair, incumbent)
        with atomic_file(folder / COMPARISON, "w") as handle:
            handle.write(text)
    return Decision(moved, reason, current, text)


def _against(
    root: Path, dataset: str, current: dict[str, Any], entry: registry.Entry,
    compare: Callable[[str, Path], Comparison] | None,
) -> tuple[bool, str, str, Comparison | None]:  # fmt: skip
    """(moved, reason, the metric decided on, the fair comparison if one was made) against `current`.

    On the same data: the registered scores, on validation when both hold it. On other data (a new
    download or snapshot, or a folder with another validation setting): both scored by `compare` on
    the newcomer's test items, never on its validation items, which the best may have trained on
    (an NCF split made without --validation trains on every user's second-latest item)."""
    who = f"{current['model']} v{current['version']}"
    found = registry.read_entry(
        registry.resolve(Path(root), current["model"], dataset, str(current["version"]))
    )
    if found.test_set == entry.test_set:
        metric = decision_metric(entry.metrics)
        metric = metric if metric in found.metrics else METRIC
        if metric not in found.metrics:
            return False, f"{who} has no {metric} on this data: kept", metric, None
        new, old = float(entry.metrics[metric]), float(found.metrics[metric])
        verb = "beats" if new > old else "does not beat"
        return new > old, f"{metric} {new:.4f} {verb} {who}'s {old:.4f}", metric, None
    if compare is None:
        return False, f"{who} was registered on other data and no comparison was given: kept", METRIC, None
    try:
        fair = compare(current["model"], found.path)
    except Exception as err:  # noqa: BLE001 - an incomparable best keeps its place, with the reason
        return False, f"{who} could not be compared on this data ({one_line(err)}): kept", METRIC, None
    if fair.users == 0:
        return False, f"{who} shares no test user or item with this data: kept", METRIC, fair
    new, old = fair.challenger, fair.champion
    verb = "beats" if new > old else "does not beat"
    return new > old, f"{fair.metric} {new:.4f} {verb} {who}'s {old:.4f} on {fair.describe()}", METRIC, fair


def one_line(err: BaseException, limit: int = 300) -> str:
    """An exception as one short line: its type and message, whitespace collapsed."""
    text = " ".join(f"{type(err).__name__}: {err}".split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def comparison(
    root: Path, dataset: str, model: str, entry: registry.Entry, metric: str, moved: bool, reason: str,
    best: dict[str, Any] | None, fair: Comparison | None = None, incumbent: dict[str, Any] | None = None,
) -> str:  # fmt: skip
    """Markdown: the decision, both models as scored against each other on other data, then the
    newcomer, the best and each family's champion on this data."""
    head = f"**{'Best moved to' if moved else 'Best stays'} " + (
        f"{best['model']} v{best['version']}.**" if best else "unset.**"
    )
    rows: dict[tuple[str, int], tuple[str, registry.Entry]] = {(model, entry.version): ("newcomer", entry)}
    if best is not None:
        found = registry.resolve(Path(root), best["model"], dataset, str(best["version"]))
        rows.setdefault((best["model"], best["version"]), ("best", registry.read_entry(found)))
    for family in CANDIDATES:
        champ = registry.champion(Path(root), family, dataset)
        if champ is not None:
            rows.setdefault((family, champ.version), (f"{family} champion", champ))
    names = (metric, *(m for m in SHOWN if m != metric))
    lines = [
        head + f" Why: {reason}.",
        "",
        "Decided on the NCF split's held-out items under full ranking (every item the user has not "
        "seen is ranked): NeuMF scores its users, EASE and Mult-VAE fold in each user's training "
        "items; all trained on that split's training data alone. Validation decides when the data "
        "holds it out; models trained on the VAE-CF split are not candidates (their training rows "
        "hold most users' held-out items).",
        "",
    ]
    if fair is not None and incumbent is not None:
        shown = (fair.metric, *(m for m in FAIR_SHOWN if m != fair.metric))
        lines += [
            f"The best was registered on other data, so both were scored on {fair.describe()}:",
            "",
            "| model | version | role | " + " | ".join(shown) + " |",
            "|---|---|---|" + "---|" * len(shown),
        ]
        for role, (name, version) in (
            ("challenger", (model, entry.version)),
            ("champion", (incumbent["model"], incumbent["version"])),
        ):
            values = [_f(fair.scores[role].get(n)) for n in shown]
            label = "newcomer" if role == "challenger" else "best before"
            lines.append(f"| {name} | v{version} | {label} | " + " | ".join(values) + " |")
        lines += ["", "As registered, each on its own data:", ""]
    lines += [
        "| model | version | role | " + " | ".join(names) + " |",
        "|---|---|---|" + "---|" * len(names),
    ]
    for (name, version), (role, found) in rows.items():
        same = found.test_set == entry.test_set
        values = [_f(found.metrics.get(n)) if same else "(other data)" for n in names]
        lines.append(f"| {name} | v{version} | {role} | " + " | ".join(values) + " |")
    return "\n".join(lines) + "\n"


def _f(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, int | float) and not isinstance(value, bool) else "-"
