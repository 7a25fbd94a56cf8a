"""From a table to Clarify-shaped bias metrics: outcome, counts, then formulas.

The table is reduced to counts per (facet value, group, outcome) in one pass; the
metrics of :mod:`biasgate.metrics` are evaluated on those counts. Counts from several
chunks of one dataset can be added with :func:`combine_counts` before measuring.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import pandas as pd

from biasgate.config import FacetSpec, LabelSpec
from biasgate.errors import InputError
from biasgate.metrics import (
    METRIC_DESCRIPTIONS,
    METRIC_FUNCTIONS,
    FacetCounts,
    MetricError,
)

#: One-vs-rest over more distinct values than this is refused (use a threshold).
MAX_ONE_VS_REST_VALUES = 200
_FACET, _GROUP, _POSITIVE, _N = "facet", "group", "positive", "n"


def held_values(series: pd.Series, limit: int = 12) -> str:
    """The distinct values a column holds, most frequent first, for error messages."""
    counts = series.value_counts(dropna=True)
    shown = ", ".join(repr(_plain(v)) for v in counts.index[:limit])
    more = f" and {len(counts) - limit} more" if len(counts) > limit else ""
    return (shown + more) if shown else "no values (every row is missing)"


def _plain(value: Any) -> Any:
    """numpy scalars as plain Python values, so that repr() reads naturally."""
    return value.item() if hasattr(value, "item") else value


def _mismatch_hint(series: pd.Series, wanted: Any) -> str:
    distinct = series.dropna().unique()[:1000]
    text = str(wanted)
    if any(isinstance(v, str) and v.strip() == text.strip() for v in distinct):
        return " (leading or trailing spaces? set read.skipinitialspace: true)"
    if any(str(_plain(v)) == text for v in distinct):
        kind = "numbers" if pd.api.types.is_numeric_dtype(series) else "text"
        return f" (the column holds {kind}: write the value as the column holds it)"
    return ""


def require_column(df: pd.DataFrame, column: str, role: str) -> pd.Series:
    if column not in df.columns:
        cols = ", ".join(repr(c) for c in df.columns[:40])
        raise InputError(
            f"{role} column '{column}' is not in the data; its columns are: "
            f"{cols}{_columns_hint(df)}"
        )
    return df[column]


def _columns_hint(df: pd.DataFrame) -> str:
    """Guess why a column is missing from how the column names look."""
    names = [str(c) for c in df.columns]
    if len(names) == 1 and any(sep in names[0] for sep in ";\t|"):
        return " (one column only: is the separator ';', a tab or '|'? set read.sep)"
    if any(name.strip().lstrip("-").replace(".", "", 1).isdigit() for name in names):
        return (
            " (names that look like data: no header row? set read.header: null "
            "and read.names)"
        )
    return ""


def require_values_present(series: pd.Series, values: Sequence[Any], role: str) -> None:
    present = set(series.dropna().unique().tolist())
    for value in values:
        if value not in present:
            raise InputError(
                f"{role} value {value!r} matches no row of column '{series.name}'; it "
                f"holds {held_values(series)}{_mismatch_hint(series, value)}"
            )


def _require_numeric(series: pd.Series, role: str) -> None:
    if not pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series):
        raise InputError(
            f"{role} threshold needs a numeric column, but '{series.name}' holds "
            f"{held_values(series, 6)}; list the values instead"
        )


def label_outcome(df: pd.DataFrame, label: LabelSpec) -> pd.Series:
    """Positive (True) / negative (False) per row; missing labels are <NA>."""
    series = require_column(df, label.column, "label")
    if label.threshold is not None:
        _require_numeric(series, "label")
        positive = series > label.threshold
    else:
        require_values_present(series, label.positive or [], "label")
        positive = series.isin(label.positive or [])
    outcome = positive.astype("boolean")
    outcome[series.isna()] = pd.NA
    known = outcome.dropna()
    if known.empty:
        raise InputError(f"label column '{label.column}' has no non-missing value")
    if known.nunique() < 2:
        which = "positive" if bool(known.iloc[0]) else "negative"
        rule = f"> {label.threshold}" if label.threshold is not None else label.positive
        raise InputError(
            f"label '{label.column}' has a single outcome: all {len(known)} rows are "
            f"{which} (positive means {rule}); it holds {held_values(series)}. Bias "
            "cannot be measured without both outcomes: check 'positive' or 'threshold'"
        )
    return outcome


def facet_key(df: pd.DataFrame, facet: FacetSpec) -> pd.Series:
    """The facet column, or for a threshold facet whether each value is above it."""
    series = require_column(df, facet.column, "facet")
    if facet.threshold is not None:
        _require_numeric(series, "facet")
        key = (series > facet.threshold).astype("boolean")
        key[series.isna()] = pd.NA
        return key
    if series.isna().all():
        raise InputError(f"facet column '{facet.column}' has no non-missing value")
    if facet.values is not None:
        require_values_present(series, facet.values, "facet")
    return series


def count_outcomes(
    facet: pd.Series, outcome: pd.Series, group: pd.Series | None = None
) -> pd.DataFrame:
    """Rows per (facet value, group, outcome): the only input the metrics need.

    Missing facet values and missing labels are kept as their own keys so that they
    can be reported; :func:`facet_counts` leaves them out.
    """
    frame = pd.DataFrame({_FACET: facet.to_numpy(), _POSITIVE: outcome.to_numpy()})
    frame[_GROUP] = group.to_numpy() if group is not None else 0
    sizes = frame.groupby(
        [_FACET, _GROUP, _POSITIVE], dropna=False, observed=True
    ).size()
    return sizes.rename(_N).reset_index()


def combine_counts(tables: Iterable[pd.DataFrame]) -> pd.DataFrame:
    """Add count tables of several chunks of the same dataset."""
    stacked = pd.concat(list(tables), ignore_index=True)
    keys = [_FACET, _GROUP, _POSITIVE]
    return stacked.groupby(keys, dropna=False, observed=True)[_N].sum().reset_index()


def facet_counts(
    table: pd.DataFrame, selected: Iterable[Any], with_groups: bool
) -> FacetCounts:
    """Counts of facet d (facet value in ``selected``) against facet a."""
    known = table[table[_FACET].notna() & table[_POSITIVE].notna()]
    is_d = known[_FACET].isin(list(selected))
    positive = known[_POSITIVE].astype(bool)
    n = known[_N]
    groups = None
    if with_groups:
        in_group = known[_GROUP].notna()
        per_group = (
            pd.DataFrame(
                {
                    "neg_d": n.where(is_d & ~positive & in_group, 0),
                    "neg": n.where(~positive & in_group, 0),
                    "pos_d": n.where(is_d & positive & in_group, 0),
                    "pos": n.where(positive & in_group, 0),
                    _GROUP: known[_GROUP],
                }
            )
            .groupby(_GROUP, dropna=True, observed=True)
            .sum()
        )
        groups = tuple(tuple(int(x) for x in row) for row in per_group.to_numpy())
    return FacetCounts(
        n_a=int(n[~is_d].sum()),
        pos_a=int(n[~is_d & positive].sum()),
        n_d=int(n[is_d].sum()),
        pos_d=int(n[is_d & positive].sum()),
        groups=groups,
    )


def json_number(value: float) -> float | str:
    """Floats for JSON: infinities as the strings Clarify's readers accept."""
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return value


def metric_entries(counts: FacetCounts, metrics: Sequence[str]) -> list[dict[str, Any]]:
    entries = []
    for name in metrics:
        entry: dict[str, Any] = {"name": name, "description": METRIC_DESCRIPTIONS[name]}
        try:
            entry["value"] = json_number(METRIC_FUNCTIONS[name](counts))
        except MetricError as err:
            entry["value"] = None
            entry["error"] = str(err)
        entries.append(entry)
    return entries


def _selections(facet: FacetSpec, key: pd.Series) -> list[tuple[str, list[Any]]]:
    """(value_or_threshold text, facet-d keys) for each measurement of a facet."""
    if facet.threshold is not None:
        return [(f"> {facet.threshold}", [True])]
    if facet.values is not None:
        return [(",".join(str(v) for v in facet.values), list(facet.values))]
    values = sorted(key.dropna().unique().tolist(), key=lambda v: (str(type(v)), v))
    if len(values) > MAX_ONE_VS_REST_VALUES:
        raise InputError(
            f"facet '{facet.column}' has {len(values)} distinct values, too many to "
            "measure one against the rest; give 'values' or a 'threshold'"
        )
    return [(str(_plain(v)), [v]) for v in values]


def analyze(
    df: pd.DataFrame,
    label: LabelSpec,
    facets: Sequence[FacetSpec],
    group: str | None,
    metrics: Sequence[str],
) -> dict[str, Any]:
    """Measure every facet value; returns the ``pre_training_bias_metrics`` section.

    Besides Clarify's keys (``label``, ``label_value_or_threshold``, ``facets``) each
    facet value carries its ``counts``, and ``rows`` says how many rows were left out
    of which measurement because a value was missing.
    """
    if df.empty:
        raise InputError("the data has no rows")
    outcome = label_outcome(df, label)
    group_series = require_column(df, group, "group") if group else None
    section: dict[str, Any] = {
        "label": label.column,
        "label_value_or_threshold": label.describe(),
        "facets": {},
        "rows": {
            "total": len(df),
            "missing_label": int(outcome.isna().sum()),
            "missing_group": int(group_series.isna().sum()) if group else 0,
            "missing_facet": {},
        },
    }
    for facet in facets:
        key = facet_key(df, facet)
        table = count_outcomes(key, outcome, group_series)
        section["rows"]["missing_facet"][facet.column] = int(key.isna().sum())
        entries = []
        for text, selected in _selections(facet, key):
            counts = facet_counts(table, selected, with_groups=group is not None)
            entries.append(
                {
                    "value_or_threshold": text,
                    "metrics": metric_entries(counts, metrics),
                    "counts": {
                        "n_a": counts.n_a,
                        "n_d": counts.n_d,
                        "pos_a": counts.pos_a,
                        "pos_d": counts.pos_d,
                    },
                }
            )
        section["facets"][facet.column] = entries
    return section


def explain_mismatch(
    df: pd.DataFrame, label: LabelSpec, facets: Sequence[FacetSpec], group: str | None
) -> list[str]:
    """Why the data does not fit the label, facet and group settings, in words.

    Used after a failed validation to add what the columns do hold to the list of
    failed expectations; returns an empty list when they fit.
    """
    problems = []
    checks = [lambda: label_outcome(df, label)]
    checks += [lambda f=facet: facet_key(df, f) for facet in facets]
    if group:
        checks.append(lambda: require_column(df, group, "group"))
    for check in checks:
        try:
            check()
        except InputError as err:
            problems.append(str(err))
    return problems
