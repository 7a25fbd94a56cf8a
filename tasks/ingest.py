"""Ingest: read the source table once and describe it for the manifest."""

from __future__ import annotations

from typing import Any

import pandas as pd
from prefect import get_run_logger, task

from biasgate.config import Config
from biasgate.storage import read_table, redact_uri
from biasgate.tasks._common import TASK_OPTIONS, noting_attempts, retry_only_transient


@task(name="ingest", retry_condition_fn=retry_only_transient, **TASK_OPTIONS)
def ingest(config: Config) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Read ``config.source`` with the config's read and storage options."""
    logger = get_run_logger()
    logger.info("reading %s", redact_uri(config.source))
    with noting_attempts():
        frame, info = read_table(config.source, config.read, config.storage_options)
    logger.info(
        "read %d rows x %d columns (%d bytes, sha256 %s) in %.2f s",
        info.rows, info.columns, info.bytes, info.sha256[:12], info.seconds,
    )  # fmt: skip
    return frame, info.as_dict()
