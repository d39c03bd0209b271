"""The data-check stage as plain functions: read a dataset's source, check it against the snapshot the
previous run accepted (ncflow/data/checks.py), and keep the new snapshot once it passes."""

from __future__ import annotations

from pathlib import Path

from configs import PreprocessConfig
from ncflow.data import snapshots
from ncflow.data.checks import Check, CheckLimits, DataReport, check_log, unreadable
from ncflow.data.preprocess import read_raw
from ncflow.data.row_filters import drop_rows, dropped_line, windowed
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
    extra, window_rows, drawn = [], None, (config.since, config.until)
    try:
        kept, null_ids, rated_below = drop_rows(raw_log, config)
    except NcflowError as err:  # every row dropped
        extra.append(Check("dropped rows", False, str(err)))
    else:
        if null_ids or rated_below:
            extra.append(Check("dropped rows", True, dropped_line(null_ids, rated_below)))
        try:
            kept, window = windowed(kept, config)
        except NcflowError as err:
            extra.append(Check("time window", False, str(err)))
        else:
            drawn = (window.since, window.until)  # the picture follows the window actually used
            if window.description:
                window_rows = len(kept)
                extra.append(Check("time window", True, f"{window.description}: {window_rows:,} rows"))
    report = check_log(
        dataset,
        raw_log,
        snapshot,
        previous,
        limits,
        window_rows=window_rows,
        drop_null_ids=config.drop_null_ids,
        window=drawn,
    )
    report.checks.extend(extra)
    return report


def accept(data_dir: Path, report: DataReport) -> None:
    """Keep a passing report's snapshot as the one the next run compares with."""
    if not report.passed or report.snapshot is None:
        raise ValueError("only a passing report's snapshot is kept")
    snapshots.save(data_dir, report.snapshot)
