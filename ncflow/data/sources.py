"""Where a dataset's raw files come from: the GroupLens archive, a mirror, a local file or folder,
or the synthetic generator (no network at all)."""

from __future__ import annotations

from pathlib import Path

from configs import dataset_registry
from ncflow.errors import NcflowError
from ncflow.locks import exclusive

SYNTH_PREFIX = "synth-"


def known_datasets() -> list[str]:
    from ncflow.data.synth import PRESETS

    return sorted(dataset_registry()) + [SYNTH_PREFIX + name for name in PRESETS]


def obtain_raw(dataset: str, data_dir: Path, source: str | None = None) -> Path:
    """A local path holding `dataset`'s ratings: a folder (MovieLens layout) or an interactions file."""
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
    path = Path(source or dataset)
    if path.exists():
        return path
    raise NcflowError(
        f"unknown dataset {dataset!r}: use one of {', '.join(known_datasets())}, "
        "or the path of a CSV/Parquet file of interactions"
    )


def dataset_label(dataset: str) -> str:
    """A short name for folders and registry entries: a file path becomes its stem."""
    if dataset.startswith(SYNTH_PREFIX) or dataset in dataset_registry():
        return dataset
    return Path(dataset).stem
