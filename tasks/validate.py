"""Validate: the dataset's Great Expectations suite plus the baseline checks."""

from __future__ import annotations

from typing import Any

import pandas as pd
from prefect import get_run_logger, task

from biasgate.config import Config
from biasgate.tasks._common import TASK_OPTIONS


@task(name="validate", **TASK_OPTIONS)
def validate(frame: pd.DataFrame, config: Config) -> dict[str, Any]:
    """Run the expectations; returns validation.json (the flow decides what follows)."""
    from biasgate.validation import failure_summary, validate_frame

    logger = get_run_logger()
    result = validate_frame(frame, config)
    stats = result["statistics"]
    logger.info("%d of %d expectations met", stats["successful"], stats["evaluated"])
    if not result["success"]:
        logger.error("validation failed:\n%s", failure_summary(result))
    return result
