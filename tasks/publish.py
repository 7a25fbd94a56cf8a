"""Publish: write the run's files (manifest last) and the Prefect artifacts."""

from __future__ import annotations

import re
from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from biasgate.run import RunRecord
from biasgate.run import publish as write_run
from biasgate.storage import redact_uri
from biasgate.tasks._common import TASK_OPTIONS, noting_attempts, retry_only_transient


def _artifact_key(name: str, kind: str) -> str:
    """Artifact keys allow lowercase letters, digits and dashes only."""
    return re.sub(r"[^a-z0-9-]+", "-", f"biasgate-{name}-{kind}".lower()).strip("-")


def _violations_markdown(gate: dict[str, Any]) -> str:
    """The verdict and every violation, one per line (as in the state message)."""
    head = (
        f"**Gate {gate['verdict']}** (mode `{gate['mode']}`, "
        f"decided on `{gate['decided_on'] or 'raw'}`)"
    )
    if not gate["violations"]:
        return f"{head}: no violations.\n"
    lines = "".join(f"- {line}\n" for line in gate["violations"])
    return f"{head}: {len(gate['violations'])} violation(s)\n\n{lines}"


@task(name="publish", retry_condition_fn=retry_only_transient, **TASK_OPTIONS)
def publish(record: RunRecord) -> list[str]:
    """Write every document the run has, then show the report in Prefect's UI."""
    logger = get_run_logger()
    with noting_attempts():
        written = write_run(record)
    logger.info("wrote %d files to %s", len(written), redact_uri(record.run_uri))
    create_markdown_artifact(
        key=_artifact_key(record.config.name, "report"),
        markdown=record.report(),
        description=f"biasgate report ({record.status}) for {record.config.name}",
    )
    if record.gate is not None:
        # A stable key per dataset: the artifact's latest version always holds the
        # violations of the latest run, where platform engineers look first.
        create_markdown_artifact(
            key=_artifact_key(record.config.name, "violations"),
            markdown=_violations_markdown(record.gate),
            description=(
                f"gate {record.gate['verdict']}: "
                f"{len(record.gate['violations'])} violation(s)"
            ),
        )
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
