"""Where a dataset's raw interactions come from: the GroupLens archive (or a mirror), the synthetic
generator (no network at all), a user's own log on disk (a file, a folder of Parquet/CSV files, a
glob), or a PostgreSQL table or query (frozen as a Parquet snapshot under data/raw/)."""

from __future__ import annotations

from pathlib import Path

from configs import Columns, dataset_registry
from ncflow.data import postgres
from ncflow.data.log_files import FORMATS, is_pattern, log_files, partition_root
from ncflow.errors import NcflowError
from ncflow.locks import exclusive

SYNTH_PREFIX = "synth-"


def known_datasets() -> list[str]:
    from ncflow.data.synth import PRESETS

    return sorted(dataset_registry()) + [SYNTH_PREFIX + name for name in PRESETS]


def is_named(dataset: str) -> bool:
    """A MovieLens or synthetic dataset: a fixed format whose columns need no mapping."""
    return dataset.startswith(SYNTH_PREFIX) or dataset in dataset_registry()


def obtain_raw(
    dataset: str,
    data_dir: Path,
    source: str | None = None,
    columns: Columns | None = None,
    connection: str = postgres.DEFAULT_CONNECTION,
) -> Path:
    """A local path holding `dataset`'s interactions: a folder (MovieLens layout), or a log's file,
    folder or glob (a PostgreSQL dataset: its new snapshot file)."""
    data_dir = Path(data_dir)
    if dataset.startswith(SYNTH_PREFIX):
        from ncflow.data.synth import PRESETS, write_synthetic

        preset = dataset.removeprefix(SYNTH_PREFIX)
        if preset not in PRESETS:
            raise NcflowError(f"unknown synthetic preset {preset!r}: known are {', '.join(sorted(PRESETS))}")
        out = data_dir / "raw" / dataset
        with exclusive(out):  # a concurrent run waits, then finds the folder written
            if not (out / "ratings.csv").is_file():  # the generator writes whole folders or nothing
                write_synthetic(preset, out)
        return out
    if dataset in dataset_registry():
        from ncflow.data.download import fetch_dataset

        return fetch_dataset(dataset, data_dir, source)
    if postgres.is_postgres(dataset):
        folder = data_dir / "raw" / dataset_label(dataset)
        return postgres.snapshot(dataset, source, columns or Columns(), connection, folder)
    path = source or dataset
    if is_pattern(path):
        log_files(path)  # refuses a glob that matches nothing
        return Path(path)
    if Path(path).exists():
        return Path(path)
    raise unknown_dataset(path)


def unknown_dataset(dataset: str) -> NcflowError:
    """The error for a dataset that is neither a name nor on disk: a path (a `/` or a file suffix such as
    `.csv`) is a misspelt file, said as such; anything else, the list of what a dataset can be."""
    path = Path(dataset)
    if "/" in dataset or path.suffix.lower() in FORMATS:
        where = "" if path.is_absolute() else f" (from {Path.cwd()})"
        kind = "file" if path.suffix else "file or folder"
        return NcflowError(f"no such {kind}: {dataset}{where}")
    return NcflowError(
        f"unknown dataset {dataset!r}: use one of {', '.join(known_datasets())}, the path of a CSV/Parquet "
        "file, folder or glob of interactions, or pg:TABLE"
    )


def dataset_label(dataset: str) -> str:
    """A short name for folders and registry entries: a file's stem, a folder's (or a glob's folder's)
    name, a PostgreSQL table's name."""
    if is_named(dataset):
        return dataset
    if postgres.is_postgres(dataset):
        return postgres.table_name(dataset)
    if is_pattern(dataset):
        return (partition_root(dataset) or Path(dataset)).name
    return Path(dataset.rstrip("/")).stem
