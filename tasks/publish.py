"""Publish: write the run's files (manifest last) and the Prefect artifacts."""

from __future__ import annotations

import re

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from biasgate.run import RunRecord, publish as write_run
from biasgate.storage import redact_uri
from biasgate.tasks._common import TASK_OPTIONS, retry_only_transient


def _artifact_key(name: str, kind: str) -> str:
    """Artifact keys allow lowercase letters, digits and dashes only."""
    return re.sub(r"[^a-z0-9-]+", "-", f"biasgate-{name}-{kind}".lower()).strip("-")


@task(name="publish", retry_condition_fn=retry_only_transient, **TASK_OPTIONS)
def publish(record: RunRecord) -> list[str]:
    """Write every document the run has, then show the report in Prefect's UI."""
    logger = get_run_logger()
    written = write_run(record)
    logger.info("wrote %d files to %s", len(written), redact_uri(record.run_uri))
    create_markdown_artifact(
        key=_artifact_key(record.config.name, "report"),
        markdown=record.report(),
        description=f"biasgate report ({record.status}) for {record.config.name}",
    )
    if record.gate is not None:
        checks = [
            check | {"evaluated_on": evaluation["evaluated_on"]}
            for evaluation in (record.gate["raw"], record.gate.get("rebalanced_train"))
            if evaluation
            for check in evaluation["checks"]
        ]
        if checks:
            create_table_artifact(
                key=_artifact_key(record.config.name, "gate"),
                table=checks,
                description=f"gate {record.gate['verdict']}: each rule and facet value",
            )
    return written
