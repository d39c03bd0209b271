"""Data tasks: fetch the raw ratings, preprocess them. Both are cached across flow runs.

Cache keys, chosen on purpose:
- `fetch_raw`: what identifies the bytes, not how they were asked for: URL + published md5 for a
  registered dataset, preset (+ the generator's fixed seed) for a synthetic one, path + size +
  mtime of every file of a local log (file, folder or glob); plus the data folder and this task's
  source (TASK_SOURCE). A PostgreSQL dataset is never taken from the cache: its table changes
  under the same name, so every run takes a new snapshot (whose md5 then keys preprocessing).
- `preprocess_data`: the ratings file's md5 + the preprocessing config + PREPROCESS_VERSION + the
  data folder + TASK_SOURCE, the same ingredients as the processed folder's name. The device is left
  out: it does not change the output.

A cached result is a path, so it can dangle if someone deletes the data: `raw_missing` and
`processed_missing` tell the flow to refresh the cache (run the task again, under the same key).
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import TASK_SOURCE, CacheKeyFnPolicy
from prefect.context import TaskRunContext
from prefect.utilities.hashing import hash_objects

from configs import Columns, PreprocessConfig, dataset_registry, dataset_spec
from ncflow.data import postgres
from ncflow.data.download import MARKER
from ncflow.data.log_files import log_files
from ncflow.data.preprocess import PREPROCESS_VERSION, output_dir, preprocess, source_checksum
from ncflow.data.sources import SYNTH_PREFIX, obtain_raw
from ncflow.errors import NcflowError
from tasks._run import run_logger, worth_retrying


def _stat(path: Path) -> list:
    st = path.stat()
    return [str(path.resolve()), st.st_size, st.st_mtime_ns]


def raw_identity(dataset: str, data_dir: str, source: str | None) -> tuple[list, Path]:
    """(what identifies the raw data, the path whose presence means it is on disk)."""
    data_dir_path = Path(data_dir)
    if postgres.is_postgres(dataset):  # no identity short of reading it: never cached
        return ["postgres", dataset, str(uuid.uuid4())], data_dir_path / "raw" / ".never"
    if dataset.startswith(SYNTH_PREFIX):
        return ["synth", dataset, 0], data_dir_path / "raw" / dataset / "ratings.csv"
    if dataset in dataset_registry():
        spec = dataset_spec(dataset)
        if source and "://" not in source and Path(source).exists():
            return ["local", *_stat(Path(source))], Path(source)
        return ["url", source or spec.url, spec.md5], data_dir_path / "raw" / dataset / MARKER
    path = source or dataset
    try:
        files = log_files(path)
    except NcflowError:
        return ["missing", path], Path(path)
    return ["files", *[_stat(f) for f in files]], Path(files[0])


def raw_cache_key(context: TaskRunContext, parameters: dict[str, Any]) -> str | None:
    identity, _ = raw_identity(parameters["dataset"], parameters["data_dir"], parameters.get("source"))
    return hash_objects(identity, str(Path(parameters["data_dir"]).resolve()))


def raw_missing(dataset: str, data_dir: str, source: str | None = None) -> bool:
    return not raw_identity(dataset, data_dir, source)[1].exists()


@task(
    name="fetch_raw",
    task_run_name="fetch-{dataset}",
    retries=3,
    retry_delay_seconds=[5, 30, 120],  # network faults; fetch_dataset also retries each request itself
    retry_condition_fn=worth_retrying,  # a wrong name, checksum or query fails the same way every time
    cache_policy=TASK_SOURCE + CacheKeyFnPolicy(cache_key_fn=raw_cache_key),
)
def fetch_raw(
    dataset: str,
    data_dir: str,
    source: str | None = None,
    columns: Columns | None = None,
    connection: str = postgres.DEFAULT_CONNECTION,
) -> dict[str, str]:
    """Download (or generate, find, or snapshot from PostgreSQL) `dataset`; return {"path": the raw
    folder, file or glob, "md5": of what preprocessing reads}."""
    log = run_logger()
    raw = obtain_raw(dataset, Path(data_dir), source, columns, connection)
    md5 = source_checksum(dataset, raw)
    log.info("raw %s: %s (md5 %s)", dataset, raw, md5)
    return {"path": str(raw), "md5": md5}


def preprocess_cache_key(context: TaskRunContext, parameters: dict[str, Any]) -> str | None:
    config: PreprocessConfig = parameters["config"]
    md5 = parameters["raw"]["md5"]
    out = output_dir(Path(parameters["data_dir"]), parameters["dataset"], md5, config)
    return hash_objects(md5, config.model_dump(mode="json"), PREPROCESS_VERSION, str(out.resolve()))


def processed_missing(dataset: str, raw: dict[str, str], data_dir: str, config: PreprocessConfig) -> bool:
    return not (output_dir(Path(data_dir), dataset, raw["md5"], config) / "manifest.json").is_file()


@task(
    name="preprocess_data",
    task_run_name="preprocess-{dataset}",
    cache_policy=TASK_SOURCE + CacheKeyFnPolicy(cache_key_fn=preprocess_cache_key),
)
def preprocess_data(
    dataset: str, raw: dict[str, str], data_dir: str, config: PreprocessConfig, device: str = "cpu"
) -> str:
    """Split the raw ratings by `config.protocol`; return the processed folder (Parquet + manifest.json)."""
    log = run_logger()
    out = preprocess(dataset, Path(raw["path"]), Path(data_dir), config, device=device)  # type: ignore[arg-type]
    log.info("processed %s: %s", dataset, out)
    return str(out)
