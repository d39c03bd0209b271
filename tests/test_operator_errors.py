"""What an operator reads when a run is refused (issue 24, item 5): an expected, user-facing problem (an
NcflowError: a failed data check, bad input) ends the run Failed with its one line as the state's message,
and no traceback in the run's logs or the worker's; an unexpected exception keeps its traceback."""

from __future__ import annotations

import asyncio

import pyarrow as pa
from e2e_stack import run_deployment
from own_logs import string_log, write_csv
from prefect import flow, task

from ncflow.errors import NcflowError
from tasks._run import failed

TRACEBACK = "Traceback (most recent call last)"
LINE = "data check failed for broken: timestamps: 3 at or before 1970-01-01"


def broken_log(folder) -> str:
    """An export that lost three times: the timestamps check refuses it."""
    events = string_log(folder / "log")
    ts = events.column("ts").to_pylist()
    ts[:3] = [0, 0, 0]
    return str(write_csv(events.set_column(3, "ts", pa.array(ts)), folder / "broken.csv"))


def test_a_failed_data_check_ends_the_worker_run_with_its_line_and_no_traceback(stack):
    tmp = stack.tmp / "operator"
    path = broken_log(tmp)
    where = [f"data_dir={tmp / 'data'}", f"runs_dir={tmp / 'runs'}", f"registry_dir={tmp / 'registry'}"]
    columns = ["user_col=customer", "item_col=sku", "rating_col=rating", "timestamp_col=ts"]
    # Every worker's log: earlier tests (a killed worker) may have started others, and any may take the run.
    workers = [log for log in stack.logs if log.name.startswith("worker")]
    begin = {log: log.stat().st_size for log in workers}
    with stack.expected_failures():  # the refusal is an ERROR line, on purpose
        run = run_deployment(stack, "ncf-train/synth-tiny", f"dataset={path}", *columns, *where)
    worker_log = "".join(log.read_bytes()[begin.get(log, 0) :].decode(errors="replace") for log in stack.logs
                         if log.name.startswith("worker"))  # fmt: skip
    assert run["state"] == "Failed" and run["run"].state.message == LINE, run["run"].state
    assert run["tasks"]["check-broken"] == "Failed" and "train-ncf" not in run["tasks"]
    assert LINE in run["logs"] and LINE in worker_log
    assert TRACEBACK not in run["logs"], run["logs"]
    assert TRACEBACK not in worker_log, worker_log
    refusal = [line for line in worker_log.splitlines() if "broken" in line and "ERROR" in line]
    assert 1 <= len(refusal) <= 3, refusal  # one line where the task fails, the flow ends, the engine exits


@task
def refuse() -> None:
    raise NcflowError("the input is wrong: say so in one line")


@task
def crash() -> None:
    raise ZeroDivisionError("a bug: its traceback is the clue")


@flow
def refused_flow():
    try:
        refuse()
    except NcflowError as err:
        return failed(err)


@flow
def crashing_flow():
    crash()


async def logs_of(flow_run_id) -> str:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    async with get_client() as client:
        logs = await client.read_logs(
            log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id]))
        )
    return "\n".join(entry.message for entry in logs)


def test_an_ncflow_error_loses_its_traceback_and_any_other_exception_keeps_it(prefect_server):
    from prefect.logging.handlers import APILogHandler

    refused = refused_flow(return_state=True)
    crashed = crashing_flow(return_state=True)
    APILogHandler().flush()  # the run loggers ship their records in batches
    assert refused.is_failed() and refused.message == "the input is wrong: say so in one line"
    assert crashed.is_failed() and "ZeroDivisionError" in crashed.message
    refused_logs = asyncio.run(logs_of(refused.state_details.flow_run_id))
    crashed_logs = asyncio.run(logs_of(crashed.state_details.flow_run_id))
    assert "the input is wrong: say so in one line" in refused_logs and TRACEBACK not in refused_logs
    assert crashed_logs.count(TRACEBACK) >= 2 and 'raise ZeroDivisionError("a bug' in crashed_logs


def test_a_misspelt_file_is_called_a_missing_file(tmp_path, monkeypatch, capsys):
    from ncflow.cli import main as cli

    monkeypatch.chdir(tmp_path)
    (tmp_path / "events.csv").write_text("customer,sku\n")
    for dataset, said in [
        ("evnts.csv", f"no such file: evnts.csv (from {tmp_path})"),
        (f"{tmp_path}/lake/", f"no such file or folder: {tmp_path}/lake/"),
    ]:
        assert cli(["train", "ncf", "--dataset", dataset, "--item-col", "sku"]) == 2
        assert capsys.readouterr().err.strip() == f"ncflow: error: {said}"
        assert cli(["data", dataset, "--item-col", "sku"]) == 2
        assert capsys.readouterr().err.strip() == f"ncflow: error: {said}"
