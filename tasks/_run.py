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
