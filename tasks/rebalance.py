"""Rebalance: resample the training split only (imbalanced-learn)."""

from __future__ import annotations

from typing import Any

import pandas as pd
from prefect import get_run_logger, task

from biasgate.config import Config
from biasgate.tasks._common import TASK_OPTIONS


@task(name="rebalance", **TASK_OPTIONS)
def rebalance(
    train: pd.DataFrame, config: Config
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Apply ``config.rebalance`` to the training split; returns it and a summary."""
    from biasgate.rebalance import rebalance_training_split

    logger = get_run_logger()
    spec = config.rebalance
    logger.info(
        "rebalancing %d training rows: strategy %s, target %s",
        len(train), spec.strategy, spec.target,
    )  # fmt: skip
    frame, summary = rebalance_training_split(train, config)
    logger.info(
        "training split now has %d rows (%s synthetic)",
        len(frame), summary.get("synthetic_rows", 0),
    )  # fmt: skip
    return frame, summary
