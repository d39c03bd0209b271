"""Which files a batch-scoring job reads: the registered bundle, and for Mult-VAE the users' data."""

from __future__ import annotations

from pathlib import Path

from ncflow import best, registry
from ncflow.batch.recommend_all import Job
from ncflow.errors import NcflowError
from ncflow.specs import spec


def locate_job(
    model: str,
    dataset: str,
    version: str = "champion",
    registry_dir: Path = Path("registry"),
    data_dir: Path = Path("data"),
    device: str = "auto",
    chunk: int | None = None,
) -> Job:
    """The Job for `model`'s `version` (champion | latest | N) on `dataset`; NcflowError if missing.
    `model` `best` is the dataset's best across families (ncflow/best.py), whichever model that is.

    NCF and EASE bundles carry their users and seen items. A Mult-VAE bundle has no users (it folds
    them in), so its users come from the processed dataset it was registered on:
    data_dir/processed/<test set>.
    """
    if model == best.BEST:
        if str(version) != "champion":
            raise NcflowError("--model best names one version already: leave out --version")
        model, bundle = best.resolve_best(Path(registry_dir), dataset)
    else:
        bundle = registry.resolve(Path(registry_dir), model, dataset, str(version))
    processed = None
    if spec(model).package == "vaecf":
        test_set = registry.read_entry(bundle).test_set
        processed = Path(data_dir) / "processed" / test_set
        split = "--validation" if model == "vae-cf-ncf" else "--protocol vaecf"
        if not (processed / "manifest.json").is_file():
            raise NcflowError(
                f"{processed} (the data {bundle} was registered on) is missing: recreate it with "
                f"`ncflow data {dataset} {split} --data-dir {data_dir}`, or give --data-dir"
            )
    return Job(
        model, str(bundle.resolve()), str(processed.resolve()) if processed else None, device, chunk=chunk
    )
