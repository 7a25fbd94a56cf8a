"""Measure: the Clarify pre-training bias metrics for every facet value."""

from __future__ import annotations

from typing import Any

import pandas as pd
from prefect import get_run_logger, task

from biasgate.analysis import analyze
from biasgate.config import Config
from biasgate.tasks._common import TASK_OPTIONS


@task(name="measure", task_run_name="measure-{what}", **TASK_OPTIONS)
def measure(frame: pd.DataFrame, config: Config, what: str) -> dict[str, Any]:
    """Measure ``frame`` (``what`` names it in logs: raw data, rebalanced train)."""
    logger = get_run_logger()
    section = analyze(
        frame, config.label, config.facets, config.group, config.measured_metrics
    )
    for facet, entries in section["facets"].items():
        for entry in entries:
            values = ", ".join(
                f"{m['name']}={m['value']:.4f}"
                if isinstance(m["value"], float)
                else f"{m['name']}={m['value'] or 'n/a'}"
                for m in entry["metrics"]
            )
            where = f"{facet}={entry['value_or_threshold']}"
            n_d = entry["counts"]["n_d"]
            logger.info("%s: %s (n_d=%d): %s", what, where, n_d, values)
    return section
