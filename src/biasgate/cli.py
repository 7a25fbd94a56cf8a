"""Command line: ``biasgate run`` (the Prefect flow) and ``biasgate check`` (an audit).

Exit codes: 0 passed, 1 the gate failed (report written), 2 bad input or
configuration, 3 an unexpected error (a bug: please report it with the traceback).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import Any

import yaml

from biasgate.errors import BiasgateError, ConfigError, GateFailed
from biasgate.report import summary_lines

logger = logging.getLogger("biasgate")

EXIT_PASSED, EXIT_GATE_FAILED, EXIT_BAD_INPUT, EXIT_BUG = 0, 1, 2, 3


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="biasgate",
        description="Stop a skewed training set before a model learns from it.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the pretraining-check flow on a config")
    run.add_argument("config", help="YAML config or Clarify analysis_config.json")
    run.add_argument("--output", help="output folder or URI (replaces 'output')")
    run.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="change a config key, e.g. --set gate.mode=warn (value read as YAML)",
    )  # fmt: skip

    check = sub.add_parser(
        "check", help="measure bias metrics of a table and print them"
    )
    check.add_argument("data", help="local path or URI of a CSV / Parquet / JSONL file")
    check.add_argument("--label", required=True, help="label column")
    outcome = check.add_mutually_exclusive_group(required=True)
    outcome.add_argument(
        "--positive", action="append", metavar="V",
        help="positive label value (repeat for several)",
    )  # fmt: skip
    outcome.add_argument(
        "--threshold", type=threshold, metavar="T", help="positive means label > T"
    )
    check.add_argument(
        "--facet", action="append", required=True, metavar="COL[=V,...]|COL>T",
        help="facet column; =V,... selects facet d, >T a threshold, none: each value",
    )  # fmt: skip
    check.add_argument("--group", help="group column for CDDL")
    check.add_argument(
        "--metrics", help="comma-separated subset, e.g. CI,DPL (default: all)"
    )
    check.add_argument(
        "--read", action="append", default=[], metavar="KEY=VALUE",
        help="reader option, e.g. --read sep=';' --read header=null (YAML value)",
    )  # fmt: skip
    check.add_argument(
        "--storage-option", action="append", default=[], metavar="KEY=VALUE",
        help="fsspec / s3fs option, e.g. --storage-option endpoint_url=http://...",
    )  # fmt: skip
    check.add_argument("--json", action="store_true", help="print the JSON document")
    return parser


def _key_values(items: list[str], flag: str) -> dict[str, Any]:
    options = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"{flag} expects KEY=VALUE, got {item!r}")
        try:
            options[key] = yaml.safe_load(raw)
        except yaml.YAMLError as err:
            raise ConfigError(f"{flag} {key}: {raw!r} is not valid YAML") from err
    return options


def threshold(text: str) -> int | float:
    """A threshold as typed: ``40`` stays an int (shown ``> 40``), ``0.5`` a float."""
    try:
        return int(text)
    except ValueError:
        return float(text)


def _typed(series: Any, text: str) -> Any:
    """A command-line value as the column holds it (the shell has only strings)."""
    import pandas as pd

    if pd.api.types.is_bool_dtype(series) and text.lower() in ("true", "false"):
        return text.lower() == "true"
    if pd.api.types.is_integer_dtype(series):
        try:
            return int(text)
        except ValueError:
            return text
    if pd.api.types.is_float_dtype(series):
        try:
            return float(text)
        except ValueError:
            return text
    return text


def _facet_spec(text: str, frame: Any) -> dict[str, Any]:
    if ">" in text and "=" not in text:
        column, _, limit = text.partition(">")
        try:
            return {"column": column.strip(), "threshold": threshold(limit)}
        except ValueError as err:
            raise ConfigError(f"--facet {text!r}: threshold must be a number") from err
    column, sep, values = text.partition("=")
    if not sep:
        return {"column": column}
    series = frame[column] if column in frame.columns else None
    parsed = [v if series is None else _typed(series, v) for v in values.split(",")]
    return {"column": column, "values": parsed}


def _check(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from biasgate.analysis import analyze
    from biasgate.config import DEFAULT_METRICS, FacetSpec, LabelSpec
    from biasgate.storage import read_table

    read_options = _key_values(args.read, "--read")
    storage_options = _key_values(args.storage_option, "--storage-option")
    frame, _ = read_table(args.data, read_options, storage_options)
    if args.threshold is not None:
        label = LabelSpec(column=args.label, threshold=args.threshold)
    else:
        series = frame[args.label] if args.label in frame.columns else None
        positive = [v if series is None else _typed(series, v) for v in args.positive]
        label = LabelSpec(column=args.label, positive=positive)
    if any(
        text.partition("=")[0].partition(">")[0] == args.label for text in args.facet
    ):
        raise ConfigError(
            f"--facet: '{args.label}' is the label; a facet is another column"
        )
    try:
        facets = [FacetSpec(**_facet_spec(text, frame)) for text in args.facet]
    except ValidationError as err:
        raise ConfigError(f"--facet: {err.errors()[0]['msg']}") from None
    metrics = args.metrics.split(",") if args.metrics else list(DEFAULT_METRICS)
    unknown = [m for m in metrics if m not in ("DI", *DEFAULT_METRICS)]
    if unknown:
        raise ConfigError(
            f"--metrics: unknown metric(s) {unknown}; choose from "
            f"{', '.join((*DEFAULT_METRICS, 'DI'))}"
        )
    section = analyze(frame, label, facets, args.group, metrics)
    if args.json:
        json.dump({"pre_training_bias_metrics": section}, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(_metrics_text(section))
    return EXIT_PASSED


def _metrics_text(section: dict[str, Any]) -> str:
    names = [m["name"] for m in next(iter(section["facets"].values()))[0]["metrics"]]
    lines = [f"label {section['label']} positive {section['label_value_or_threshold']}"]
    lines.append(f"{'facet':<24}{'n_d':>8}" + "".join(f"{name:>10}" for name in names))
    for facet, entries in section["facets"].items():
        for entry in entries:
            cells = []
            for metric in entry["metrics"]:
                value = metric["value"]
                cells.append(
                    f"{value:>10.4f}"
                    if isinstance(value, float)
                    else f"{value or 'n/a':>10}"
                )
            name = f"{facet}={entry['value_or_threshold']}"[:23]
            lines.append(f"{name:<24}{entry['counts']['n_d']:>8}" + "".join(cells))
    errors = {
        f"{facet}={e['value_or_threshold']} {m['name']}": m["error"]
        for facet, entries in section["facets"].items()
        for e in entries
        for m in e["metrics"]
        if m.get("error")
    }
    lines += [f"  n/a {where}: {why}" for where, why in errors.items()]
    rows = section["rows"]
    left_out = {k: v for k, v in rows["missing_facet"].items() if v}
    if rows["missing_label"] or left_out:
        lines.append(
            f"left out for a missing value: {rows['missing_label']} rows without a "
            f"label; facet {left_out or 'none'} (of {rows['total']} rows)"
        )
    return "\n".join(lines) + "\n"


def _prefect_defaults() -> None:
    """Settings for the Prefect run; must happen before Prefect is imported.

    Telemetry cannot be sent from closed networks and would log errors.
    """
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # Show biasgate's own log records (e.g. rebalancing progress) in the run logs.
    os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "biasgate")
    os.environ.setdefault("PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW", "ignore")


def _preflight(config: Any) -> None:
    """Local paths the run will need: the suite must exist, the output be a folder."""
    from biasgate.storage import is_remote

    suite = config.expectations
    if suite and not is_remote(suite) and not os.path.isfile(suite):
        raise ConfigError(f"expectations: suite file {suite} does not exist")
    output = config.output
    if not is_remote(output) and os.path.exists(output) and not os.path.isdir(output):
        raise ConfigError(f"output: {os.path.abspath(output)} is a file, not a folder")


def _run(args: argparse.Namespace) -> int:
    from biasgate.config import load_config

    # Everything that can be checked without the data fails here, before Prefect.
    _preflight(load_config(args.config, args.overrides, output=args.output))
    _prefect_defaults()
    from biasgate.flows.pretraining_check import pretraining_check

    state = pretraining_check(
        config=os.path.abspath(args.config),
        overrides=args.overrides,
        output=args.output,
        return_state=True,
    )
    if state.is_completed():
        result = state.result()
        sys.stdout.write(f"wrote {result['run_uri']}\n")
        sys.stdout.write("\n".join(result["summary"]) + "\n")
        return EXIT_PASSED
    error = state.result(raise_on_failure=False)
    if isinstance(error, GateFailed):
        sys.stdout.write("\n".join(summary_lines(error.result)) + "\n")
    if isinstance(error, BiasgateError):
        where = getattr(error, "run_uri", None)
        if where:
            sys.stderr.write(f"report written to {where}\n")
        raise error
    raise RuntimeError(f"the flow ended {state.type.value}: {state.message}")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``biasgate`` command and ``python -m biasgate``."""
    args = _parser().parse_args(argv)
    if args.command == "check":
        # `run` leaves logging to Prefect, which formats and ships the run's logs.
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    try:
        return _check(args) if args.command == "check" else _run(args)
    except BiasgateError as err:
        sys.stderr.write(f"biasgate: {err}\n")
        return err.exit_code
    except BrokenPipeError:
        # The reader of stdout stopped early (e.g. `| head`): not an error of ours.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_PASSED
    except KeyboardInterrupt:
        sys.stderr.write("biasgate: interrupted\n")
        return 130
    except Exception:
        logger.exception("unexpected error (a bug in biasgate: please report it)")
        return EXIT_BUG


if __name__ == "__main__":
    sys.exit(main())
