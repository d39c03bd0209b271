"""A child that dies with its parent: when the process that started a trainer is killed (a worker or
flow process SIGKILLed, a node losing its agent), the trainer must not live on as an orphan that keeps
a GPU busy and writes into a run folder that a re-run will resume from."""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1  # linux/prctl.h
# Set by ncflow.launch for its trainers. A trainer started by hand does not die with its shell: that
# would break `nohup python -m models.ncf.train ... &`.
DIE_WITH_PARENT = "NCFLOW_DIE_WITH_PARENT"
# Resolved here, in the parent: a preexec_fn runs between fork and exec, where loading a library could
# deadlock on a lock another thread held at the fork.
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


def die_with_parent(parent_pid: int | None = None, sig: int = signal.SIGKILL) -> None:
    """Ask the kernel to send `sig` to this process when its parent exits (Linux; elsewhere a no-op).

    Safe in a `preexec_fn`. With `parent_pid` (the pid of the process that forked us), a parent that
    died before the request took effect is caught too. The kernel fires it when the forking *thread*
    ends: callers start the child from a thread that waits for it.
    """
    if _LIBC is None or not hasattr(_LIBC, "prctl"):  # not Linux, or an unusual libc: no guarantee
        return
    _LIBC.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
    if parent_pid is not None and os.getppid() != parent_pid:
        os.kill(os.getpid(), sig)
