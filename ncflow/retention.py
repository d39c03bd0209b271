"""Bounded growth: a model registered every week would fill the registry and the runs folder without end.

After each registration (tasks/register.py) the family keeps its champion, the version the dataset's
cross-family `best` alias names (ncflow/best.py) and its newest `keep` versions; the rest are pruned.
Run folders (runs/<flow run id>/, checkpoints and the trained bundle) are pruned once their run is over
and no kept version refers to them.

Safe against concurrent runs: versions are pruned under the family's registry lock and the dataset's
`best` lock (so neither alias can move meanwhile), and only versions no process holds (`registry.in_use`:
a `recommend` loading one, a registration still reporting one). A run folder is pruned only when its run
wrote its outcome (`running`) and no process holds its lock (ncflow/locks.py): the flow holds it from
before training until the outcome is written. A run killed without an outcome keeps its folder (Prefect
may still resume it).
Crash-safe: a version or run folder is first renamed to a hidden `.pruned-*` name (atomic: it is whole or
gone, never half there), then deleted; leftovers of a crash are deleted by the next prune.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ncflow import best, registry
from ncflow.atomic import atomic_file
from ncflow.locks import exclusive, try_exclusive

OUTCOME = "outcome.json"  # in a run folder: how the run ended; absent while it runs
TRASH = ".pruned-"


@dataclass(frozen=True)
class Pruned:
    versions: list[int]
    kept: dict[int, list[str]]  # version -> why (champion, best, newest, in use)
    runs: list[str]  # run folder names

    def line(self) -> str:
        """The run's log line: what went, what stays and why."""
        gone = ", ".join(f"v{v}" for v in self.versions) or "no version"
        kept = ", ".join(f"v{v} {'+'.join(why)}" for v, why in sorted(self.kept.items()))
        return f"pruned {gone} (kept {kept}); run folders: {', '.join(self.runs) or 'none'}"


@dataclass
class Run:
    """The flow's handle on its run folder: set `outcome` before the block ends (a raise records failed)."""

    folder: Path
    outcome: dict[str, Any] | None = None


@contextlib.contextmanager
def running(folder: Path) -> Iterator[Run]:
    """Hold run `folder`'s lock while the run uses it; on leaving, write its outcome (what it registered,
    or why it failed): from then on the folder may be pruned."""
    folder = Path(folder)
    run = Run(folder)
    with exclusive(folder):
        (folder / OUTCOME).unlink(missing_ok=True)  # a retried flow run: running again
        try:
            yield run
        except BaseException as err:
            run.outcome = {"state": "failed", "error": f"{type(err).__name__}: {err}"}
            raise
        finally:
            if folder.is_dir():  # a run that failed before training made nothing to prune
                with atomic_file(folder / OUTCOME, "w") as handle:
                    json.dump({**(run.outcome or {"state": "finished"}), "ended_at": time.time()}, handle)


def prune(root: Path, model: str, dataset: str, keep: int, runs_dir: Path | None = None) -> Pruned:
    """Prune `model`'s `dataset` versions to the champion, the best and the newest `keep`; then, given
    `runs_dir`, the folders of finished runs that no version left in `root` refers to."""
    versions, kept = prune_versions(Path(root), model, dataset, keep)
    runs = prune_runs(Path(runs_dir), Path(root)) if runs_dir is not None else []
    return Pruned(versions, kept, runs)


def prune_versions(root: Path, model: str, dataset: str, keep: int) -> tuple[list[int], dict[int, list[str]]]:
    """(the versions removed, the versions kept with why)."""
    if keep < 1:
        raise ValueError(f"keep_versions must be at least 1, got {keep}")
    folder = registry.model_dir(root, model, dataset)
    with registry.locked(folder), registry.locked(best.best_dir(root, dataset)):
        _empty_trash(folder)
        found = [e.version for e in registry.versions(root, model, dataset)]
        kept: dict[int, list[str]] = {}
        champion = registry.champion(root, model, dataset)
        if champion is not None:
            kept[champion.version] = ["champion"]
        alias = best.read_best(root, dataset)
        if alias is not None and alias["model"] == model:
            kept.setdefault(int(alias["version"]), []).append("best")
        for number in found[-keep:]:
            kept.setdefault(number, []).append("newest")
        doomed = [v for v in found if v not in kept]
        if not doomed:
            return [], kept
        _record(folder, doomed, keep)  # first: a crash after it leaves versions that the next prune takes
        removed = []
        for number in doomed:
            if _take(folder / f"v{number}", folder / f"{TRASH}v{number}-{os.getpid()}"):
                removed.append(number)
            else:
                kept[number] = ["in use"]
        _empty_trash(folder)
    return removed, kept


def _record(folder: Path, numbers: list[int], keep: int) -> None:
    path = folder / registry.PRUNED
    record = json.loads(path.read_text()) if path.is_file() else {}
    record |= {str(n): {"pruned_at": time.time(), "keep_versions": keep} for n in numbers}
    with atomic_file(path, "w") as handle:
        json.dump(record, handle, indent=1)


def _take(version: Path, trash: Path) -> bool:
    """Rename `version` out of sight unless a process holds it (registry.in_use); True if renamed."""
    fd = os.open(version, os.O_RDONLY | os.O_DIRECTORY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        version.rename(trash)
        return True
    finally:
        os.close(fd)


def _empty_trash(folder: Path) -> None:
    for path in folder.glob(f"{TRASH}*"):
        shutil.rmtree(path, ignore_errors=True)


def prune_runs(runs_dir: Path, root: Path) -> list[str]:
    """Remove the run folders whose run ended (an outcome written, its lock free) and that no version
    in registry `root` refers to; return their names."""
    runs_dir = Path(runs_dir).resolve()
    if not runs_dir.is_dir():
        return []
    _empty_trash(runs_dir)
    needed = referenced(runs_dir, Path(root))
    removed = []
    for folder in sorted(p for p in runs_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if folder.name in needed or not (folder / OUTCOME).is_file():
            continue
        with try_exclusive(folder) as free:
            if free and (folder / OUTCOME).is_file():  # still ended now that we hold it
                folder.rename(runs_dir / f"{TRASH}{folder.name}-{os.getpid()}")
                removed.append(folder.name)
    _empty_trash(runs_dir)
    return removed


def referenced(runs_dir: Path, root: Path) -> set[str]:
    """The names of the run folders that a registered version refers to: a path under `runs_dir` in any
    of its JSON files (registration.json's source_bundle, a bundle's config)."""
    prefix = str(Path(runs_dir).resolve()) + os.sep
    names: set[str] = set()
    for record in Path(root).glob(f"*/*/v*/{registry.RECORD}"):
        for path in record.parent.rglob("*.json"):
            try:
                strings = _strings(json.loads(path.read_text()))
            except (OSError, ValueError):  # pruned meanwhile, or not JSON after all
                continue
            names |= {s[len(prefix) :].split(os.sep)[0] for s in strings if s.startswith(prefix)}
    return names


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
