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
from prefect.states import Failed, State

from ncflow.errors import NcflowError, first_line


def worth_retrying(task, task_run, state) -> bool:
    """A task's retry condition: faults that may pass (the network, a killed process) are retried; bad
    input (an NcflowError, a trainer's own `error:` line) fails the same way again, so it is not."""
    try:
        state.result()
    except Exception as err:  # noqa: BLE001 - the failure's own verdict, or retry the unknown
        return getattr(err, "retryable", not isinstance(err, NcflowError))
    return True


class OneLineErrors(logging.Filter):
    """Prefect's engine logs a run's exception with its traceback where the task fails, where the flow
    fails and, in a worker's run, where the engine exits (~180 lines for one bad input). An NcflowError
    is a user's problem said in one line: its records keep the line and lose the traceback. Any other
    exception is a bug or a fault, and keeps its traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, NcflowError):
            line = first_line(error)
            if line not in record.getMessage():
                record.msg, record.args = f"{record.getMessage()}: {line}", None
            record.exc_info = record.exc_text = None
        return True


ONE_LINE_ERRORS = OneLineErrors()
for _name in ("prefect.flow_runs", "prefect.task_runs"):  # the engine's run loggers (and our run_logger)
    logging.getLogger(_name).addFilter(ONE_LINE_ERRORS)


def failed(err: NcflowError) -> State:
    """The end of a flow run refused for `err`: Failed, its message the one line, and no traceback (a
    raised error is logged with one). The error travels as the result: a caller of the flow function
    (the CLI) gets it raised, as before."""
    return Failed(message=first_line(err), data=err)


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
