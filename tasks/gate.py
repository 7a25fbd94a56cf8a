"""Gate: compare the measured metrics with the policy. Never retried."""

from __future__ import annotations

from typing import Any

from prefect import get_run_logger, task

from biasgate.config import Config
from biasgate.gate import evaluate_gate
from biasgate.tasks._common import TASK_OPTIONS


@task(name="gate", task_run_name="gate-{evaluated_on}", **TASK_OPTIONS)
def gate(section: dict[str, Any], config: Config, evaluated_on: str) -> dict[str, Any]:
    """Evaluate every rule; logs each metric beside its limit."""
    logger = get_run_logger()
    evaluation = evaluate_gate(section, config.gate, evaluated_on)
    for check in evaluation["checks"]:
        level = logger.info if check["status"] == "passed" else logger.warning
        level("gate on %s: [%s] %s", evaluated_on, check["status"], check["message"])
    return evaluation
