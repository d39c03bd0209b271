"""The data-check task: the checks of ncflow/data/validate.py on the fetched source, their report as the
`<dataset>-data-report` artifact, and the run's end (Failed, one line) when one fails.

Not cached: the checks compare with the previous accepted snapshot, which moves with every run.
"""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from configs import PreprocessConfig
from ncflow.data.checks import CheckLimits
from ncflow.data.report import report_markdown
from ncflow.data.validate import accept, check_source
from ncflow.errors import NcflowError
from tasks._run import artifact, artifact_key, run_logger


class DataCheckFailed(NcflowError):
    """A data check refused the source: nothing is trained or registered."""


@task(name="check_data", task_run_name="check-{dataset}", cache_policy=NO_CACHE)
def check_data(
    dataset: str, raw: dict[str, str], data_dir: str, config: PreprocessConfig, limits: CheckLimits
) -> dict[str, int]:
    """Check the source; return its sizes, or raise DataCheckFailed with the reason in one line."""
    log = run_logger()
    report = check_source(dataset, Path(raw["path"]), raw["md5"], Path(data_dir), config, limits)
    artifact(
        create_markdown_artifact, report_markdown(report), key=artifact_key(dataset, "data-report"),
        description=f"data checks of {dataset}: " + ("passed" if report.passed else report.reason),
    )  # fmt: skip
    for check in report.checks:
        log.info("data check %s: %s, %s", check.name, "passed" if check.passed else "FAILED", check.detail)
    if not report.passed:
        raise DataCheckFailed(f"data check failed for {dataset}: {report.reason}")
    accept(Path(data_dir), report)
    snapshot = report.snapshot
    return {"rows": snapshot.rows, "users": snapshot.n_users, "items": snapshot.n_items}
