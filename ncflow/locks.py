"""One writer at a time per output: two flow runs (or two `ncflow data`) that need the same download
or the same processed folder take turns; the second finds the first's finished result and reuses it.

An advisory `flock` on an empty `.<name>.lock` file beside the output. The kernel drops the lock when
its holder exits, however it exits, so a killed run never blocks a later one. The holder removes the
file when done; a waiter that then gets the lock of the removed file notices (its inode is no longer
the path's) and locks the path afresh, so two holders can never hold different files at once.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path


def lock_path(output: Path) -> Path:
    output = Path(output)
    return output.with_name(f".{output.name}.lock")


def _still_there(fd: int, path: Path) -> bool:
    try:
        return os.stat(path).st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:
        return False


@contextlib.contextmanager
def exclusive(output: Path) -> Iterator[None]:
    """Hold the lock of `output` (a file or folder that may not exist yet) for the block."""
    with _held(output, wait=True):
        yield


@contextlib.contextmanager
def try_exclusive(output: Path) -> Iterator[bool]:
    """Hold the lock of `output` for the block if nobody holds it now (True), else do not wait (False):
    the pruner's question "is a run still using this folder?" (ncflow/retention.py)."""
    with _held(output, wait=False) as got:
        yield got


@contextlib.contextmanager
def _held(output: Path, wait: bool) -> Iterator[bool]:
    path = lock_path(output)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:  # blocks (or, without wait, gives up) while another process (or thread) holds it
            fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            yield False
            return
        if _still_there(fd, path):
            break
        os.close(fd)  # the previous holder removed it: lock the path's new file
    try:
        yield True
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        os.close(fd)  # closing releases the lock
