"""A flow on a log without a preset trains with Adam sized to the data (issue 24, item 2): the batch,
lr and betas the trainer picks by hand (models/common/defaults.py), not NVIDIA's 2^20 batch, which is
one or two steps an epoch on a shop's log. The run's log says the batch and the steps per epoch, and
warns when an epoch has fewer than MIN_STEPS steps, also for a batch the user chose.

Through `ncflow train` (ncflow/cli/train.py) on a real temporary Prefect server; the log is read back
from the server, the settings from the registered version's registration.json."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from pathlib import Path
from uuid import UUID

import pytest
from own_logs import LOG_FLAGS, string_log, write_csv

from models.common.defaults import MIN_STEPS, SIZE_RULES, largest_batch
from ncflow import registry
from ncflow.cli import main as cli
from ncflow.data.preprocess import read_manifest

TINY_NCF = ["--gpus", "0", "--epochs", "1", "--mf-dim", "8", "--mlp-layers", "16,8"]  # no --batch-size


@pytest.fixture(scope="module")
def events_csv(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("log")
    return write_csv(string_log(folder), folder / "events.csv")


def train(capsys, *args: str) -> dict:
    assert cli(["train", *args]) == 0, capsys.readouterr().err[-3000:]
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def run_log(flow_run_id: str) -> list[tuple[int, str]]:
    """(level, message) of every line the flow run logged, as the server has them."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.logging.handlers import APILogHandler

    APILogHandler().flush()  # the in-process run ships its lines in batches: send the rest first

    async def read():
        async with get_client() as client:
            ids = LogFilterFlowRunId(any_=[UUID(flow_run_id)])
            return await client.read_logs(log_filter=LogFilter(flow_run_id=ids))

    return [(line.level, line.message) for line in asyncio.run(read())]


def registered(result: dict) -> dict:
    return registry.read_entry(Path(result["bundle"])).record


def test_a_flow_on_an_own_log_trains_with_the_data_sized_batch(
    prefect_server, events_csv, tmp_path, monkeypatch, capsys
) -> None:
    monkeypatch.chdir(tmp_path)
    record = registered(train(capsys, "ncf", "--dataset", str(events_csv), *LOG_FLAGS, *TINY_NCF))
    data = read_manifest(next((tmp_path / "data" / "processed").glob("events-ncf-*")))
    units = data["counts"]["train_positives"] * (1 + 4)  # 4 negatives per positive
    batch = largest_batch(units, 2**20)
    assert batch < 2**20 and units // batch >= MIN_STEPS
    settings = (batch, SIZE_RULES["ncf"].lr(batch), 0.9, 0.999)
    ran = record["training"]["config"]  # what the trainer reported it ran with
    assert (ran["batch_size"], ran["lr"], ran["beta1"], ran["beta2"]) == settings
    params = record["params"]  # what the registry shows for the version: the same, not None
    assert (params["batch_size"], params["lr"], params["beta1"], params["beta2"]) == settings

    lines = run_log(Path(record["training"]["out_dir"]).name)
    text = "\n".join(message for _, message in lines)
    assert f"batch_size={batch}" in text and "no configs/ncf/events.yaml" in text  # the choice and why
    steps = re.search(rf"([\d,]+) steps per epoch, batch size {batch:,}", text)
    assert steps and int(steps[1].replace(",", "")) >= MIN_STEPS, text[-3000:]
    assert not [m for level, m in lines if level >= logging.WARNING and "step" in m]


def test_a_batch_of_few_steps_per_epoch_is_warned_about_even_when_given(
    prefect_server, events_csv, tmp_path, monkeypatch, capsys
) -> None:
    monkeypatch.chdir(tmp_path)
    result = train(
        capsys, "ncf", "--dataset", str(events_csv), *LOG_FLAGS, *TINY_NCF, "--batch-size", "16384"
    )
    record = registered(result)
    assert record["params"]["batch_size"] == record["training"]["config"]["batch_size"] == 16384
    warnings = [
        message
        for level, message in run_log(Path(record["training"]["out_dir"]).name)
        if level >= logging.WARNING
    ]
    assert any("16,384 samples, fewer than 50" in m for m in warnings), warnings
