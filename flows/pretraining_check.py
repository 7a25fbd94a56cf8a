"""The pretraining-check flow: the DAG of the design, one phase per paragraph.

ingest -> validate -> measure (raw) -> gate -> split -> rebalance (train)
-> measure (train) -> publish. A failed validation or gate is final (never retried);
whatever was measured before it is published first, then the run ends Failed.
"""

from __future__ import annotations

import logging
from typing import Any

from prefect import flow, get_run_logger
from prefect.runtime import flow_run
from prefect.states import Failed

from biasgate.analysis import explain_mismatch
from biasgate.config import (
    ConfigPath,
    InlineConfig,
    OutputLocation,
    Override,
    load_config,
)
from biasgate.errors import BiasgateError, ConfigError, GateFailed, ValidationFailed
from biasgate.gate import gate_document
from biasgate.report import summary_lines, worsened
from biasgate.run import RunRecord, new_run_id
from biasgate.storage import join_uri, redact_uri
from biasgate.tasks.gate import gate
from biasgate.tasks.ingest import ingest
from biasgate.tasks.measure import measure
from biasgate.tasks.publish import publish
from biasgate.tasks.rebalance import rebalance
from biasgate.tasks.split import split
from biasgate.tasks.validate import validate

# Prefect attaches its handlers to the "biasgate" logger (PREFECT_LOGGING_EXTRA_LOGGERS)
# but leaves its level unset, which would drop the INFO progress of the plain functions.
logging.getLogger("biasgate").setLevel(logging.INFO)


@flow(name="pretraining-check", log_prints=False)
def pretraining_check(
    config: ConfigPath | InlineConfig,
    overrides: list[Override] | None = None,
    output: OutputLocation | None = None,
) -> dict[str, Any]:
    """Check a training table before a model learns from it.

    Args:
        config: path of a YAML config (or Clarify analysis_config.json), relative
            to the working directory, or the config itself as a mapping.
        overrides: ``key=value`` changes to the config, as ``biasgate run --set``.
        output: output folder or s3:// prefix replacing the config's ``output``.

    Returns:
        A summary: run folder, verdict, and the lines the CLI prints.
    """
    try:
        cfg = load_config(config, overrides, output=output)
    except ConfigError as err:
        # A bad config ends the run Failed before any work, naming the bad key; no
        # report is written because the output location is not known yet.
        get_run_logger().error("%s", err)
        return Failed(message=str(err), data=err)
    run_id = new_run_id(str(flow_run.get_id() or "").replace("-", ""))
    record = RunRecord(cfg, join_uri(cfg.output, cfg.name, run_id), run_id)
    where = redact_uri(record.run_uri)
    get_run_logger().info("run %s of %s writes to %s", run_id, cfg.name, where)
    try:
        _check(record)
    except Exception as err:
        # Nothing is lost: whatever was measured is published before the run fails.
        record.error = err
        with record.timed("publish"):
            publish.with_options(**_io_retries(cfg))(record)
        if not isinstance(err, BiasgateError):
            raise
        # An expected failure (bad input, validation, gate) ends the run Failed with
        # its reasons as the state message, without a traceback.
        err.run_uri = where
        get_run_logger().error("%s\nreport: %s", err, where)
        return Failed(message=str(err), data=err)
    return {"run_uri": where, "verdict": record.status,
            "summary": summary_lines(record.gate)}  # fmt: skip


def _io_retries(cfg: Any) -> dict[str, Any]:
    return {"retries": cfg.io.retries, "retry_delay_seconds": cfg.io.delays()}


def _check(record: RunRecord) -> None:
    cfg = record.config
    with record.timed("ingest"):
        frame, record.source = ingest.with_options(**_io_retries(cfg))(cfg)

    with record.timed("validate"):
        record.validation = validate(frame, cfg)
    if not record.validation["success"]:
        _fail_validation(record, frame)

    with record.timed("measure_raw"):
        record.raw = measure(frame, cfg, "raw")
    raw_gate = gate(record.raw, cfg, "raw")
    record.gate = gate_document(cfg.gate, raw_gate, None)
    if cfg.gate.mode == "fail" and not raw_gate["passed"]:
        _fail_gate(record)

    with record.timed("split"):
        splits = split(frame, cfg)
    with record.timed("rebalance"):
        splits["train"], record.rebalance = rebalance(splits["train"], cfg)
    with record.timed("measure_train"):
        record.after = measure(splits["train"], cfg, "rebalanced_train")
    record.splits = splits

    for line in worsened(record.raw, record.after):
        get_run_logger().warning("rebalancing made %s worse", line)
    after_gate = gate(record.after, cfg, "rebalanced_train")
    record.gate = gate_document(cfg.gate, raw_gate, after_gate)
    if record.gate["verdict"] == "failed":
        _fail_gate(record)

    with record.timed("publish"):
        publish.with_options(**_io_retries(cfg))(record)
    for line in summary_lines(record.gate):
        get_run_logger().info(line)


def _fail_validation(record: RunRecord, frame: Any) -> None:
    """Raise the validation failure: failed expectations, then what the data holds."""
    from biasgate.validation import failure_summary

    cfg = record.config
    hints = explain_mismatch(frame, cfg.label, cfg.facets, cfg.group)
    raise ValidationFailed(
        "validation failed:\n"
        + failure_summary(record.validation)
        + "".join(f"\n{hint}" for hint in hints),
        record.validation,
    )


def _fail_gate(record: RunRecord) -> None:
    """Raise the gate's failure: one line per violation, the full gate.json attached."""
    violations = "\n".join(f"- {line}" for line in record.gate["violations"])
    raise GateFailed(
        f"gate failed (mode {record.config.gate.mode}, "
        f"{len(record.gate['violations'])} violation(s)):\n{violations}",
        record.gate,
    )
