"""Fetch a registered dataset's archive, verify it, and extract it, so that later steps read only trusted files.

Layout under `data_dir`: `downloads/<name>.zip` (verified archive), `raw/<name>/` (extracted files plus a
`.verified` marker holding the archive's md5, written last). A failed or mismatched fetch leaves nothing
that a later run would trust.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import logging
import os
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path

from configs import dataset_spec
from ncflow.atomic import atomic_dir
from ncflow.errors import NcflowError, TransientError
from ncflow.locks import exclusive

log = logging.getLogger("ncflow.download")

CHUNK = 1 << 20
TIMEOUT_S = 30.0  # per socket operation, so a dead network fails instead of hanging
MARKER = ".verified"
URL_SCHEMES = ("http", "https", "file")


class _Retryable(Exception):
    """A transient failure (connection, HTTP 5xx, truncated body): worth another attempt."""


def file_md5(path: Path) -> str:
    """md5 of a file, read in chunks so multi-GB archives do not need to fit in memory."""
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def fetch_dataset(
    name: str,
    data_dir: Path,
    source: str | None = None,
    *,
    md5: str | None = None,
    retries: int = 3,
    backoff_s: float = 1.0,
    progress: bool = True,
) -> Path:
    """Return a folder holding `name`'s extracted files (its ratings file is somewhere inside).

    `source`: None (the registry URL), an http(s):// or file:// URL (a mirror), a local .zip (checked
    against `md5`, default the registry's), or a local folder, which is returned as-is: no copy and no
    checksum, only a check that it holds the ratings file. A download is tried `retries + 1` times in all,
    waiting `backoff_s * attempt` between tries; HTTP 4xx is not retried. Work already done and verified
    (an extracted folder, or a downloaded archive) is reused without touching the network.
    """
    spec = dataset_spec(name)
    expected = (md5 or spec.md5).strip().lower()
    data_dir = Path(data_dir)
    raw = data_dir / "raw" / name

    local = None if source is None or _is_url(source) else Path(source).expanduser()
    if local is not None and local.is_dir():
        if _find(local, spec.ratings_file) is None:
            raise NcflowError(f"--source folder {local} holds no {spec.ratings_file} (searched at any depth)")
        log.info("using %s as-is for %s (no copy, no checksum)", local, name)
        return local

    if _is_cached(raw, expected, spec.ratings_file):
        log.info("%s already extracted and verified in %s: skipping", name, raw)
        return raw
    if local is not None:  # checked before taking the lock: a bad file leaves nothing behind
        if not local.is_file():
            raise NcflowError(
                f"--source {source} does not exist: give a URL, a local {name}.zip, or a folder"
            )
        if local.suffix.lower() != ".zip":
            raise NcflowError(
                f"--source {local} is not a .zip: give a URL, a local {name}.zip, "
                f"or a folder holding {spec.ratings_file}"
            )
        log.info("verifying %s", local)
        _check_md5(local, expected, label=str(local))  # the user's own file: never deleted

    with exclusive(raw):  # a concurrent fetch of the same dataset waits here, then finds it cached
        if _is_cached(raw, expected, spec.ratings_file):
            log.info("%s was extracted and verified in %s meanwhile: skipping", name, raw)
            return raw
        if local is not None:
            return _extract(local, raw, expected, spec.ratings_file, delete_on_error=False)
        archive = data_dir / "downloads" / f"{name}.zip"
        _fetch_archive(
            name, source or spec.url, archive, expected, spec.ratings_file, retries, backoff_s, progress
        )
        return _extract(archive, raw, expected, spec.ratings_file, delete_on_error=True)


def _fetch_archive(
    name: str,
    url: str,
    archive: Path,
    expected: str,
    ratings_file: str,
    retries: int,
    backoff_s: float,
    progress: bool,
) -> None:
    """A verified `archive`: the one already downloaded if its md5 holds, else a fresh download."""
    if archive.is_file():
        log.info("verifying cached archive %s", archive)
        if file_md5(archive) == expected:
            log.info("cached archive %s is verified: skipping download", archive)
            return
        log.warning("cached archive %s fails its checksum: downloading again", archive)
        archive.unlink()
    _download(name, url, archive, expected, ratings_file, retries, backoff_s, progress)


def _is_url(source: str) -> bool:
    scheme = urllib.parse.urlparse(source).scheme.lower()
    if scheme in URL_SCHEMES:
        return True
    if "://" in source:
        raise NcflowError(f"unsupported URL scheme in --source {source}: use http(s):// or file://")
    return False


def _find(root: Path, filename: str) -> Path | None:
    return next((p for p in root.rglob(filename) if p.is_file()), None)


def _is_cached(raw: Path, expected: str, ratings_file: str) -> bool:
    marker = raw / MARKER
    if not marker.is_file() or marker.read_text().strip() != expected:
        return False
    return _find(raw, ratings_file) is not None


def _check_md5(path: Path, expected: str, label: str) -> None:
    got = file_md5(path)
    if got != expected:
        raise NcflowError(f"checksum mismatch for {label}: expected {expected}, got {got}")


def _download(
    name: str,
    url: str,
    archive: Path,
    expected: str,
    ratings_file: str,
    retries: int,
    backoff_s: float,
    progress: bool,
) -> None:
    """Stream `url` into a `.part` file of this call's own, verify length and md5, then rename; the .part
    never survives. (Own part files as well as the lock: a process never writes into another's.)"""
    archive.parent.mkdir(parents=True, exist_ok=True)
    fd, part_name = tempfile.mkstemp(prefix=f".{archive.name}.", suffix=".part", dir=archive.parent)
    os.close(fd)
    part = Path(part_name)
    attempts = 1 if url.lower().startswith("file:") else max(1, retries + 1)
    reason = "no attempt made"
    try:
        for attempt in range(1, attempts + 1):
            log.info("downloading %s from %s (attempt %d of %d)", name, url, attempt, attempts)
            try:
                got = _stream(url, part, progress, archive.name)
                break
            except urllib.error.HTTPError as err:
                err.close()
                reason = f"HTTP {err.code} {err.reason}"
                if err.code < 500:
                    raise NcflowError(_no_download(name, url, reason, ratings_file)) from None
            except _Retryable as err:
                reason = str(err)
            except (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError) as err:
                reason = str(getattr(err, "reason", None) or err) or type(err).__name__
            if attempt < attempts:
                wait = backoff_s * attempt
                log.warning("download of %s failed (%s): retrying in %.1f s", name, reason, wait)
                time.sleep(wait)
        else:
            raise TransientError(_no_download(name, url, reason, ratings_file))
        log.info("verifying %s", archive.name)
        if got != expected:
            raise NcflowError(f"checksum mismatch for {url}: expected {expected}, got {got}")
        part.replace(archive)
    finally:
        part.unlink(missing_ok=True)


def _no_download(name: str, url: str, reason: str, ratings_file: str) -> str:
    return (
        f"could not download {name} from {url}: {reason}. Without network, pass --source with a mirror URL, "
        f"a local {name}.zip, or a folder holding {ratings_file}"
    )


def _stream(url: str, part: Path, progress: bool, label: str) -> str:
    """One attempt: write the body to `part`, hashing on the way; return its md5."""
    request = urllib.request.Request(url, headers={"User-Agent": "ncflow"})
    with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
        length = response.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        digest, size = hashlib.md5(), 0
        with open(part, "wb") as out, _bar(progress, total, label) as advance:
            try:
                while chunk := response.read(CHUNK):
                    out.write(chunk)
                    digest.update(chunk)
                    size += len(chunk)
                    advance(len(chunk))
            except http.client.IncompleteRead as err:
                raise _Retryable(f"truncated body ({size + len(err.partial)} of {total} bytes)") from None
    if total is not None and size < total:
        raise _Retryable(f"truncated body ({size} of {total} bytes)")
    return digest.hexdigest()


@contextlib.contextmanager
def _bar(enabled: bool, total: int | None, label: str) -> Iterator:
    """A transient rich progress bar on stderr (bytes, speed); a no-op when disabled."""
    if not enabled:
        yield lambda n: None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(label, total=total)
        yield lambda n: bar.advance(task, n)


def _extract(archive: Path, raw: Path, expected: str, ratings_file: str, *, delete_on_error: bool) -> Path:
    """Unpack into `raw` atomically; the md5 marker is written last, so only a whole extraction is trusted."""
    log.info("extracting %s into %s", archive, raw)
    try:
        with atomic_dir(raw) as tmp:
            try:
                with zipfile.ZipFile(archive) as zf:
                    zf.extractall(tmp)  # zipfile drops absolute paths and '..' from member names
            except (zipfile.BadZipFile, zlib.error, EOFError) as err:
                raise NcflowError(f"cannot extract {archive}: not a valid zip archive ({err})") from None
            if _find(tmp, ratings_file) is None:
                raise NcflowError(f"archive {archive} holds no {ratings_file}")
            (tmp / MARKER).write_text(expected + "\n")
    except NcflowError:
        if delete_on_error:  # a verified but unreadable download must not be reused by a later run
            archive.unlink(missing_ok=True)
        raise
    return raw
