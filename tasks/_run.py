"""Run-context helpers: tasks log to the run's logs and make artifacts inside a Prefect run, and
fall back to the `ncflow` logger and no artifacts when a test calls `task.fn(...)` with no server."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

from prefect import get_run_logger
from prefect.context import FlowRunContext, TaskRunContext
from prefect.exceptions import MissingContextError

from ncflow.errors import NcflowError


def worth_retrying(task, task_run, state) -> bool:
    """A task's retry condition: faults that may pass (the network, a killed process) are retried; bad
    input (an NcflowError, a trainer's own `error:` line) fails the same way again, so it is not."""
    try:
        state.result()
    except Exception as err:  # noqa: BLE001 - the failure's own verdict, or retry the unknown
        return getattr(err, "retryable", not isinstance(err, NcflowError))
    return True


def run_logger() -> logging.Logger | logging.LoggerAdapter:
    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger("ncflow")


def in_run() -> bool:
    return TaskRunContext.get() is not None or FlowRunContext.get() is not None


def artifact(create: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """`create(*args, **kwargs)` (a prefect.artifacts function) inside a run; None outside one."""
    return create(*args, **kwargs) if in_run() else None


def artifact_key(*parts: str) -> str:
    """Artifact keys allow lowercase letters, digits and dashes only; the same key versions across runs."""
    return re.sub(r"[^a-z0-9-]+", "-", "-".join(parts).lower()).strip("-")
