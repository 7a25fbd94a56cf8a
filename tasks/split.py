"""Split: stratified train / validation / test, seeded."""

from __future__ import annotations

import pandas as pd
from prefect import get_run_logger, task

from biasgate.config import Config
from biasgate.tasks._common import TASK_OPTIONS


@task(name="split", **TASK_OPTIONS)
def split(frame: pd.DataFrame, config: Config) -> dict[str, pd.DataFrame]:
    """Split before rebalancing, so no synthetic row is made from a held-out row."""
    from biasgate.split import split_frame

    splits = split_frame(frame, config)
    get_run_logger().info(
        "split %d rows: %s (stratified on %s, seed %d)",
        len(frame),
        ", ".join(f"{name} {len(part)}" for name, part in splits.items()),
        "+".join(config.split.stratify),
        config.split.seed,
    )
    return splits
