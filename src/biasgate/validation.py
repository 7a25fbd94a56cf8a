"""Validate a table with Great Expectations before any bias is measured.

Two sets of expectations run together on one batch:

* the **suite** named by ``config.expectations``: a JSON file as written by
  ``ExpectationSuite.to_json_dict()``;
* the **baseline**, derived from the configuration and run even without a suite: the
  label, facet and group columns exist, the label has no missing value, every
  configured positive label value and facet value occurs, and a column compared with
  a ``threshold`` is numeric.

Each result carries ``meta.source`` (``"baseline"`` or ``"suite"``). The returned
document is what ``validation.json`` holds: plain JSON values only (no numpy scalars,
no NaN), one entry per expectation, in the order baseline then suite.

Great Expectations is imported inside the functions that need it: the import costs
seconds, and commands that do not validate must not pay for it.
"""

from __future__ import annotations

import json
import logging
import math
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from biasgate.analysis import json_number
from biasgate.config import Config
from biasgate.errors import ConfigError

if TYPE_CHECKING:
    from great_expectations.core import ExpectationSuite
    from great_expectations.core.expectation_validation_result import (
        ExpectationValidationResult,
    )
    from great_expectations.datasource.fluent.interfaces import Batch
    from great_expectations.expectations.expectation_configuration import (
        ExpectationConfiguration,
    )

logger = logging.getLogger(__name__)

#: How many unexpected values each result keeps.
PARTIAL_LIMIT = 10
#: Dtype names that Great Expectations accepts as numeric. It compares the column's
#: dtype with ``np.dtype(name)`` or ``getattr(pd, name)()``, so pandas' nullable
#: columns need their class names (``Int64Dtype``), although the result then reports
#: their scalar type (``int64``). ``bool`` is left out on purpose: not a threshold.
NUMERIC_TYPES = [
    *(f"int{bits}" for bits in (8, 16, 32, 64)),
    *(f"uint{bits}" for bits in (8, 16, 32, 64)),
    *(f"float{bits}" for bits in (16, 32, 64, 128)),
    *(f"{kind}{bits}Dtype" for kind in ("Int", "UInt") for bits in (8, 16, 32, 64)),
    "Float32Dtype",
    "Float64Dtype",
]
_RESULT_FORMAT = {"result_format": "SUMMARY", "partial_unexpected_count": PARTIAL_LIMIT}
#: Great Expectations resolves a suite that belongs to no context through one
#: process-wide "current" context, which every ``get_context`` call replaces: two
#: validations in two threads could cross. They are serialised instead (each takes
#: well under a second once the package is imported).
_GX_LOCK = threading.Lock()


def validate_frame(df: pd.DataFrame, config: Config) -> dict[str, Any]:
    """Run the configured suite and the baseline expectations on a table.

    Parameters
    ----------
    df
        The table as read (string values without stray spaces, missing values as NaN).
    config
        The run configuration: ``expectations`` names the suite file (or is None) and
        ``label`` / ``facets`` / ``group`` give the baseline checks.

    Returns
    -------
    dict
        The ``validation.json`` document: ``success``, ``suite`` (the suite's name or
        None), ``statistics`` (``evaluated``, ``successful``, ``unsuccessful``) and
        ``results``, one entry per expectation with ``expectation_type``, ``kwargs``,
        ``meta``, ``success``, ``unexpected_count``, ``unexpected_percent``,
        ``partial_unexpected_list`` (at most :data:`PARTIAL_LIMIT` values),
        ``observed_value``, ``missing_values`` and ``exception``. An expectation that
        raised inside Great Expectations counts as failed, with its message.

    Raises
    ------
    ConfigError
        The suite file does not exist, is not JSON, or holds an expectation that
        Great Expectations does not know or cannot build.
    """
    suite = load_suite(config.expectations) if config.expectations else None
    expectations = baseline_expectations(config, df.columns)
    if suite is not None:
        expectations += [_tagged(e.configuration, "suite") for e in suite.expectations]
    entries = _run_expectations(df, expectations, suite.name if suite else "baseline")
    document = _document(entries, suite.name if suite else None)
    stats = document["statistics"]
    logger.info(
        "validated %d rows: %d of %d expectations met",
        len(df),
        stats["successful"],
        stats["evaluated"],
    )
    return document


def failure_summary(result: Mapping[str, Any]) -> str:
    """Describe every failed expectation of a validation document, one per line.

    Parameters
    ----------
    result
        A document returned by :func:`validate_frame`.

    Returns
    -------
    str
        Lines such as ``expect_column_values_to_not_be_null on column 'income'
        (baseline): 1 unexpected (25%), e.g. [None]``; empty when all passed.
    """
    return "\n".join(_describe(e) for e in result["results"] if not e["success"])


# ------------------------------------------------------------------------ the suite


def load_suite(path: str | Path) -> ExpectationSuite:
    """Read a Great Expectations suite file, refusing anything it would drop.

    ``ExpectationSuite(**data)`` logs and skips an expectation it cannot build, so a
    misspelt type would silently validate nothing; each one is built first here.

    Raises
    ------
    ConfigError
        Naming the path and what is wrong with it.
    """
    import great_expectations as gx

    data = _read_suite_json(Path(path))
    for index, item in enumerate(data["expectations"]):
        _build_expectation(item, index, path)
    try:
        suite = gx.ExpectationSuite(**data)
    except (TypeError, ValueError) as err:
        raise ConfigError(
            f"expectation suite {path} is not a valid suite: {err}"
        ) from err
    if len(suite.expectations) != len(data["expectations"]):
        raise ConfigError(
            f"expectation suite {path}: Great Expectations kept "
            f"{len(suite.expectations)} of its {len(data['expectations'])} expectations"
        )
    return suite


def _read_suite_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise ConfigError(
            f"expectation suite {path} does not exist; fix 'expectations' in the "
            "config or remove the key to run the baseline checks only"
        ) from err
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"expectation suite {path} cannot be read: {err}") from err
    except json.JSONDecodeError as err:
        raise ConfigError(f"expectation suite {path} is not valid JSON: {err}") from err
    if not isinstance(data, dict) or not isinstance(data.get("expectations"), list):
        raise ConfigError(
            f"expectation suite {path} must be a JSON object with a list under "
            "'expectations' (as written by ExpectationSuite.to_json_dict())"
        )
    return data


def _build_expectation(item: Any, index: int, path: str | Path) -> None:
    from great_expectations.exceptions import ExpectationNotFoundError
    from great_expectations.expectations.expectation_configuration import (
        ExpectationConfiguration,
    )

    where = f"expectation suite {path}, expectation {index}"
    if not isinstance(item, dict) or not isinstance(item.get("type"), str):
        raise ConfigError(f"{where}: needs a 'type' and 'kwargs', got {item!r:.200}")
    try:
        ExpectationConfiguration(**item).to_domain_obj()
    except ExpectationNotFoundError as err:
        raise ConfigError(
            f"{where}: unknown expectation type '{item['type']}'; check its spelling "
            "against https://greatexpectations.io/expectations/"
        ) from err
    except Exception as err:  # pydantic, TypeError or GX errors: all a bad entry
        raise ConfigError(f"{where} ({item['type']}) is not valid: {err}") from err


def _tagged(configuration: ExpectationConfiguration, source: str) -> Any:
    configuration.meta = {**(configuration.meta or {}), "source": source}
    return configuration


# --------------------------------------------------------------------- the baseline


def baseline_expectations(config: Config, columns: Sequence[Any]) -> list[Any]:
    """The expectations every run checks, derived from the configuration.

    Value checks are added only for columns present in ``columns``: on a missing
    column they would fail with an exception, while its existence check already
    fails and names it.
    """
    present = set(columns)
    label = config.label
    checks = _column_checks(
        label.column, "label", present, label.positive, label.threshold
    )
    for facet in config.facets:
        checks += _column_checks(
            facet.column, "facet", present, facet.values, facet.threshold
        )
    if config.group is not None:
        checks += _column_checks(config.group, "group", present)
    return checks


def _column_checks(
    column: str,
    role: str,
    present: set[Any],
    values: list[Any] | None = None,
    threshold: float | None = None,
) -> list[Any]:
    """Existence, then (if the column is there) the checks its role calls for."""
    checks = [_expect("ExpectColumnToExist", column, role)]
    if column not in present:
        return checks
    if role == "label":
        checks.append(_expect("ExpectColumnValuesToNotBeNull", column, role))
    if values:
        checks.append(
            _expect(
                "ExpectColumnDistinctValuesToContainSet", column, role, value_set=values
            )
        )
    if threshold is not None:
        checks.append(
            _expect(
                "ExpectColumnValuesToBeInTypeList",
                column,
                role,
                type_list=NUMERIC_TYPES,
            )
        )
    return checks


def _expect(kind: str, column: str, role: str, **kwargs: Any) -> Any:
    import great_expectations.expectations as gxe

    meta = {"source": "baseline", "role": role}
    return getattr(gxe, kind)(column=column, meta=meta, **kwargs)


# ------------------------------------------------------------------------- running


def _run_expectations(
    df: pd.DataFrame, expectations: list[Any], name: str
) -> list[dict[str, Any]]:
    """Validate all expectations on one batch; entries come back in input order."""
    import great_expectations as gx

    with _GX_LOCK:
        batch = _dataframe_batch(df)
        suite = gx.ExpectationSuite(name=name, expectations=expectations)
        try:
            outcome = batch.validate(suite, result_format=_RESULT_FORMAT)
        except Exception:  # GX failed as a whole: find out expectation by expectation
            logger.warning(
                "suite validation raised; validating one by one", exc_info=True
            )
            return [_validate_one(batch, e) for e in suite.expectations]
    return [_entry(r) for r in _in_suite_order(suite, outcome.results)]


def _dataframe_batch(df: pd.DataFrame) -> Batch:
    """A batch of the whole frame in a fresh in-memory context without progress bars."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    # tqdm's TQDM_DISABLE does not reach these bars; the context setting does.
    context.variables.progress_bars = ProgressBarsConfig(
        globally=False, metric_calculations=False
    )
    asset = context.data_sources.add_pandas("biasgate").add_dataframe_asset("table")
    definition = asset.add_batch_definition_whole_dataframe("whole table")
    return definition.get_batch(batch_parameters={"dataframe": df})


def _validate_one(batch: Batch, expectation: Any) -> dict[str, Any]:
    try:
        return _entry(batch.validate(expectation, result_format=_RESULT_FORMAT))
    except Exception as err:
        config = expectation.configuration
        return _entry_from_parts(config, False, {}, f"{type(err).__name__}: {err}")


def _in_suite_order(
    suite: ExpectationSuite, results: list[ExpectationValidationResult]
) -> list[ExpectationValidationResult]:
    """Results reordered to follow the suite (Great Expectations groups them)."""
    by_key: dict[str, list[ExpectationValidationResult]] = {}
    for result in results:
        by_key.setdefault(_config_key(result.expectation_config), []).append(result)
    ordered = []
    for expectation in suite.expectations:
        matches = by_key.get(_config_key(expectation.configuration))
        if matches:
            ordered.append(matches.pop(0))
    return ordered + [r for rest in by_key.values() for r in rest]


def _config_key(config: Any) -> str:
    kwargs = {k: v for k, v in config.kwargs.items() if k != "batch_id"}
    body = [config.type, kwargs, config.meta]
    return json.dumps(_json_safe(body), sort_keys=True)


# ------------------------------------------------------------------------ document


def _entry(result: ExpectationValidationResult) -> dict[str, Any]:
    exception = _exception_message(result.exception_info)
    detail = result.result or {}
    return _entry_from_parts(
        result.expectation_config, bool(result.success), detail, exception
    )


def _entry_from_parts(
    config: Any, success: bool, detail: Mapping[str, Any], exception: str | None
) -> dict[str, Any]:
    # Table-level column checks report their differences under details.mismatched.
    mismatched = (detail.get("details") or {}).get("mismatched") or {}
    unexpected = detail.get("partial_unexpected_list") or mismatched.get("unexpected")
    missing = detail.get("partial_missing_list") or mismatched.get("missing")
    entry = {
        "expectation_type": config.type,
        "kwargs": {k: v for k, v in config.kwargs.items() if k != "batch_id"},
        "meta": dict(config.meta or {}),
        # An expectation that raised never passes, whatever GX says.
        "success": success and exception is None,
        "unexpected_count": detail.get("unexpected_count"),
        "unexpected_percent": detail.get("unexpected_percent"),
        "partial_unexpected_list": list(unexpected or [])[:PARTIAL_LIMIT],
        "observed_value": _shortened(detail.get("observed_value")),
        "missing_values": list(missing or [])[:PARTIAL_LIMIT],
        "exception": exception,
    }
    return _json_safe(entry)


def _exception_message(info: Any) -> str | None:
    """The first exception message in GX's exception_info (flat or per metric)."""
    if not isinstance(info, Mapping):
        return None
    if "raised_exception" in info:
        if not info.get("raised_exception"):
            return None
        return str(info.get("exception_message") or "raised an exception")
    for value in info.values():
        message = _exception_message(value)
        if message is not None:
            return message
    return None


def _shortened(value: Any) -> Any:
    if isinstance(value, list | tuple) and len(value) > 2 * PARTIAL_LIMIT:
        return [
            *value[: 2 * PARTIAL_LIMIT],
            f"... {len(value) - 2 * PARTIAL_LIMIT} more",
        ]
    return value


def _document(entries: list[dict[str, Any]], suite_name: str | None) -> dict[str, Any]:
    successful = sum(1 for e in entries if e["success"])
    return {
        "success": successful == len(entries),
        "suite": suite_name,
        "statistics": {
            "evaluated": len(entries),
            "successful": successful,
            "unsuccessful": len(entries) - successful,
        },
        "results": entries,
    }


def _json_safe(value: Any) -> Any:
    """Plain JSON values: numpy scalars unwrapped, NaN / NA as None, tuples as lists.

    Infinities become ``"Infinity"`` / ``"-Infinity"``; anything else is text.
    """
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_json_safe(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        try:
            value = value.item()
        except (TypeError, ValueError):
            return str(value)
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return None if math.isnan(value) else json_number(value)
    if value is pd.NA or value is pd.NaT:
        return None
    return str(value)


# ------------------------------------------------------------------------- summary


def _describe(entry: Mapping[str, Any]) -> str:
    kwargs = dict(entry.get("kwargs") or {})
    column = kwargs.pop("column", None)
    where = f" on column {column!r}" if column is not None else ""
    source = (entry.get("meta") or {}).get("source", "suite")
    parts = [f"{entry['expectation_type']}{where} ({source})"]
    if kwargs:
        parts.append(
            "expected " + ", ".join(_expected(k, v) for k, v in kwargs.items())
        )
    parts.append(_what_happened(entry))
    return ": ".join(parts)


def _expected(key: str, value: Any) -> str:
    if key == "type_list" and value == NUMERIC_TYPES:
        return "a numeric type"
    return f"{key}={_brief(value)}"


def _what_happened(entry: Mapping[str, Any]) -> str:
    if entry.get("exception"):
        return f"raised {entry['exception']}"
    shown = entry["partial_unexpected_list"] or entry.get("unexpected_count")
    found = [_unexpected_text(entry)] if shown else []
    if entry.get("missing_values"):
        found.append(f"missing from the data: {_brief(entry['missing_values'], 5)}")
    if not found and entry.get("observed_value") is not None:
        found.append(f"observed {_brief(entry['observed_value'])}")
    if not found and entry["expectation_type"] == "expect_column_to_exist":
        found.append("the column is not in the data")
    return "; ".join(found) or "not met"


def _unexpected_text(entry: Mapping[str, Any]) -> str:
    sample = _brief(entry["partial_unexpected_list"], limit=5)
    if entry.get("unexpected_count") is None:
        return f"unexpected {sample}"
    percent = entry.get("unexpected_percent")
    share = f" ({percent:.3g}%)" if isinstance(percent, int | float) else ""
    return f"{entry['unexpected_count']} unexpected{share}, e.g. {sample}"


def _brief(value: Any, limit: int = 8) -> str:
    """A short repr: long lists are cut after ``limit`` items."""
    if isinstance(value, list) and len(value) > limit:
        shown = ", ".join(repr(v) for v in value[:limit])
        return f"[{shown}, ... {len(value) - limit} more]"
    return repr(value)
