"""A file-system model registry: immutable numbered versions and a `champion` alias per model and dataset.

    registry/<model>/<dataset>/
      v1/ v2/ ...          a bundle's files + registration.json + MODEL_CARD.md, read-only once written
      champion.json        {"version": 2, ...}: replaced atomically, moves only to a better model
      pruned.json          {"3": {...}}: the versions keep_versions removed (ncflow/retention.py), and when
      .lock                flock'ed around version numbering, champion moves and pruning

A version appears by renaming a complete staging folder, so readers never see half of one. The
champion moves only when the newcomer's score on the same test set is strictly better; when the
champion was scored on another test set, `rescore` scores it on the newcomer's (or, without one,
nothing moves): scheduled retraining never silently replaces a better model.
A process reading a version (or registering it) holds a shared flock on its folder (`in_use`): the
pruner removes only versions nobody holds, by renaming them out of sight first.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import stat
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ncflow.errors import NcflowError

CHAMPION = "champion.json"
RECORD = "registration.json"
CARD = "MODEL_CARD.md"
PRUNED = "pruned.json"


@dataclass(frozen=True)
class Entry:
    """One registered version, as its registration.json describes it."""

    version: int
    path: Path
    metrics: dict[str, Any]
    test_set: str
    record: dict[str, Any]


@dataclass(frozen=True)
class Registration:
    entry: Entry
    promoted: bool
    previous: Entry | None  # the champion before this registration
    previous_score: float | None  # the previous champion's score on this entry's test set
    reason: str


def model_dir(root: Path, model: str, dataset: str) -> Path:
    return Path(root) / model / dataset


@contextlib.contextmanager
def locked(folder: Path) -> Iterator[None]:
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def versions(root: Path, model: str, dataset: str) -> list[Entry]:
    folder = model_dir(root, model, dataset)
    numbers = sorted(
        int(p.name[1:]) for p in folder.glob("v*") if p.name[1:].isdigit() and (p / RECORD).is_file()
    )
    found = []
    for n in numbers:
        try:
            found.append(read_entry(folder / f"v{n}"))
        except FileNotFoundError:  # pruned since the listing (ncflow/retention.py)
            continue
    return found


def read_entry(path: Path) -> Entry:
    record = json.loads((path / RECORD).read_text())
    return Entry(record["version"], path, record["metrics"], record["test_set"], record)


def champion(root: Path, model: str, dataset: str) -> Entry | None:
    alias = model_dir(root, model, dataset) / CHAMPION
    if not alias.is_file():
        return None
    return read_entry(alias.parent / f"v{json.loads(alias.read_text())['version']}")


def same_run(root: Path, model: str, dataset: str, fingerprint: dict[str, str]) -> Entry | None:
    """The newest registered version trained on the same data, settings and code (ncflow/fingerprint.py)."""
    found = [e for e in versions(root, model, dataset) if e.record.get("fingerprint") == fingerprint]
    return found[-1] if found else None


def resolve(root: Path, model: str, dataset: str, version: str = "champion") -> Path:
    """The folder of `version` (`champion`, `latest`, `3` or `v3`); NcflowError if there is none."""
    folder = model_dir(root, model, dataset)
    if version == "champion":
        entry = champion(root, model, dataset)
        if entry is None:
            raise NcflowError(
                f"no {model} champion for {dataset} in {Path(root)}: train one with `ncflow train`"
            )
        return entry.path
    if version == "latest":
        found = versions(root, model, dataset)
        if not found:
            raise NcflowError(f"no {model} model registered for {dataset} in {Path(root)}")
        return found[-1].path
    path = folder / f"v{version.removeprefix('v')}"
    if not (path / RECORD).is_file():
        raise NcflowError(missing(root, model, dataset, path.name))
    return path


def missing(root: Path, model: str, dataset: str, name: str) -> str:
    """Why version `name` (v3) is not there: pruned by keep_versions (when, what is left), or never was."""
    folder = model_dir(root, model, dataset)
    pruned = folder / PRUNED
    gone = json.loads(pruned.read_text()).get(name.removeprefix("v")) if pruned.is_file() else None
    if gone is None:
        return f"{model} {dataset} has no version {name} in {Path(root)}"
    left = ", ".join(f"v{e.version}" for e in versions(root, model, dataset)) or "none"
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(gone["pruned_at"]))
    return (
        f"{model} {dataset} {name} was pruned on {when} (keep_versions={gone['keep_versions']} keeps the "
        f"champion, the best and the newest); registered now: {left}"
    )


@contextlib.contextmanager
def in_use(path: Path) -> Iterator[Path]:
    """Hold a shared lock on version folder `path` while reading it: the pruner leaves it alone.
    NcflowError if it was pruned before the lock was taken."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except FileNotFoundError:
        fd = None
    try:
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_SH)
        if fd is None or not (path / RECORD).is_file():  # renamed away while we waited
            root, (model, dataset) = path.parents[2], path.parts[-3:-1]
            raise NcflowError(missing(root, model, dataset, path.name))
        yield path
    finally:
        if fd is not None:
            os.close(fd)


def register(
    root: Path,
    model: str,
    dataset: str,
    bundle: Path,
    *,
    metrics: dict[str, Any],
    test_set: str,
    metric: str = "hr@10",
    extra: dict[str, Any] | None = None,
    rescore: Callable[[Path], float] | None = None,
    compare: Callable[[Path], Any] | None = None,
    card: Callable[[Registration], str] | None = None,
    hold: contextlib.ExitStack | None = None,
) -> Registration:
    """Copy `bundle` in as the next version; make it champion if its `metric` beats the champion's.

    `test_set` names the data the metrics were measured on (equal names: comparable scores). When
    the champion was measured on other data, `compare(champion path)` scores both on this run's
    held-out data that neither trained on (models/<model>/compare.py: a result with `metric`,
    `challenger`, `champion`, `users`, `describe()` and `as_record()`); without it, `rescore(champion
    path)` scores the champion alone on this test set.
    `card(registration)` writes MODEL_CARD.md into the version before it appears. With `hold`, the new
    version is in use (`in_use`) from before it appears until `hold` closes: no pruner removes it while
    its registration is still being reported and compared across families.
    """
    folder = model_dir(root, model, dataset)
    folder.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=folder))
    try:
        shutil.copytree(bundle, staging, dirs_exist_ok=True)  # the slow part, outside the lock
        with locked(folder):
            number = 1 + max((int(p.name[1:]) for p in folder.glob("v*") if p.name[1:].isdigit()), default=0)
            previous = champion(root, model, dataset)
            fair = _fair(previous, test_set, compare)
            if isinstance(fair, tuple):  # the fair comparison decided (or could not be made)
                previous_score, promoted, reason, decided = fair
            else:
                previous_score, promoted, reason = _compare(
                    previous, metrics[metric], test_set, metric, rescore
                )
                decided = None
            record = {
                "model": model, "dataset": dataset, "version": number,
                "metric": decided.metric if decided is not None else metric,
                "metrics": metrics, "test_set": test_set, "registered_at": time.time(),
                "source_bundle": str(Path(bundle).resolve()), "promoted": promoted, "reason": reason,
                "previous_champion": previous.version if previous else None,
                "previous_score": previous_score,
                "comparison": None if decided is None else {**decided.as_record(), "on": decided.describe()},
                **(extra or {}),
            }  # fmt: skip
            (staging / RECORD).write_text(json.dumps(record, indent=2, default=str) + "\n")
            entry = Entry(number, folder / f"v{number}", metrics, test_set, record)
            result = Registration(entry, promoted, previous, previous_score, reason)
            if card is not None:
                (staging / CARD).write_text(card(result))
            _make_read_only(staging)
            if hold is not None:  # the lock is the folder's inode's: it stays through the rename
                fd = os.open(staging, os.O_RDONLY | os.O_DIRECTORY)
                hold.callback(os.close, fd)
                fcntl.flock(fd, fcntl.LOCK_SH)
            staging.rename(entry.path)
            if promoted:
                _write_alias(
                    folder / CHAMPION, {"version": number, metric: metrics[metric], "moved_at": time.time()}
                )
        return result
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # gone already unless something failed


def _fair(previous: Entry | None, test_set: str, compare: Callable[[Path], Any] | None):
    """(champion's score, promoted, reason, comparison) from `compare`, or None where it does not apply:
    no champion, the same test set (the stored scores compare), or no comparison for this model."""
    if previous is None or previous.test_set == test_set or compare is None:
        return None
    try:
        result = compare(previous.path)
    except Exception as err:  # noqa: BLE001 - an incomparable champion keeps its place, with the reason
        return (
            None,
            False,
            f"champion v{previous.version} could not be compared on this run's held-out data ({err}): kept",
            None,
        )
    if result.users == 0:
        return (
            None,
            False,
            f"champion v{previous.version} shares no test user or item with this run: kept",
            result,
        )
    on, name, new, old = result.describe(), result.metric, result.challenger, result.champion
    if new > old:
        return (
            old,
            True,
            f"{name} {new:.4f} beats champion v{previous.version}'s {old:.4f} on {on}: promoted",
            result,
        )
    return (
        old,
        False,
        f"{name} {new:.4f} does not beat champion v{previous.version}'s {old:.4f} on {on}: not promoted",
        result,
    )


def _compare(
    previous: Entry | None, score: float, test_set: str, metric: str, rescore: Callable[[Path], float] | None
) -> tuple[float | None, bool, str]:
    if previous is None:
        return None, True, "first model: champion"
    if previous.test_set == test_set:
        old = float(previous.metrics[metric])
    elif rescore is not None:
        try:
            old = float(rescore(previous.path))
        except Exception as err:  # noqa: BLE001 - an unscorable champion keeps its place, with the reason
            return (
                None,
                False,
                f"champion v{previous.version} could not be scored on this test set ({err}): kept",
            )
    else:
        return None, False, f"champion v{previous.version} was scored on another test set: kept"
    if score > old:
        return old, True, f"{metric} {score:.4f} beats champion v{previous.version}'s {old:.4f}: promoted"
    return (
        old,
        False,
        f"{metric} {score:.4f} does not beat champion v{previous.version}'s {old:.4f}: not promoted",
    )


def _write_alias(path: Path, value: dict) -> None:
    fd, tmp = tempfile.mkstemp(prefix=".champion.", dir=path.parent)
    with os.fdopen(fd, "w") as handle:
        json.dump(value, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def _make_read_only(folder: Path) -> None:
    """Files become read-only (folders stay writable, so a deliberate `rm -r` still works)."""
    for path in folder.rglob("*"):
        if path.is_file():
            path.chmod(path.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
