"""The data-check stage as plain functions: read a dataset's source, check it against the snapshot the
previous run accepted (ncflow/data/checks.py), and keep the new snapshot once it passes."""

from __future__ import annotations

from pathlib import Path

from configs import PreprocessConfig
from ncflow.data import snapshots
from ncflow.data.checks import Check, CheckLimits, DataReport, check_log, unreadable
from ncflow.data.interactions import in_window
from ncflow.data.preprocess import read_raw
from ncflow.errors import NcflowError


def check_source(
    dataset: str, raw: Path, md5: str, data_dir: Path, config: PreprocessConfig, limits: CheckLimits
) -> DataReport:
    """The checks of `raw` (the label `dataset`'s source, whose checksum is `md5`); nothing is saved."""
    previous = snapshots.load(data_dir, dataset)
    try:
        raw_log, _ = read_raw(dataset, Path(raw), config)
    except NcflowError as err:
        return unreadable(dataset, str(err), previous)
    snapshot = snapshots.summarize(dataset, raw_log, md5)
    window_rows, window_check = None, None
    if config.since is not None or config.until is not None:
        try:
            window_rows = in_window(raw_log.table, raw_log, config.since, config.until).num_rows
        except NcflowError as err:
            window_check = Check("time window", False, str(err))
    report = check_log(
        dataset,
        raw_log,
        snapshot,
        previous,
        limits,
        window_rows=window_rows,
        window=(config.since, config.until),
    )
    if window_check is not None:
        report.checks.append(window_check)
    return report


def accept(data_dir: Path, report: DataReport) -> None:
    """Keep a passing report's snapshot as the one the next run compares with."""
    if not report.passed or report.snapshot is None:
        raise ValueError("only a passing report's snapshot is kept")
    snapshots.save(data_dir, report.snapshot)
