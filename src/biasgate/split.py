"""Stratified train / validation / test split of a table.

The strata are the combinations of the keys named in ``split.stratify``: ``label``
(the binary outcome, not the raw value), ``facets`` (every facet's key: the value, or
for a threshold facet whether the value is above it) and any column name. A missing
value is a stratum value of its own, ``<missing>``. Every stratum must be large
enough to give at least one row to every non-empty split; a smaller one is an
:class:`~biasgate.errors.InputError` that names it, never a scikit-learn traceback.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from biasgate.analysis import facet_key, label_outcome
from biasgate.config import Config, FacetSpec
from biasgate.errors import InputError

#: How a missing key value is written in a stratum or cell name.
MISSING = "<missing>"
SPLITS = ("train", "validation", "test")
#: How many of the smallest strata an error message lists.
_SHOWN_STRATA = 5


def facet_key_name(facet: FacetSpec) -> str:
    """The name of a facet's key in stratum and cell names (``age>40`` or ``sex``)."""
    if facet.threshold is not None:
        return f"{facet.column}>{facet.threshold}"
    return facet.column


def outcome_text(outcome: pd.Series) -> pd.Series:
    """``positive`` / ``negative`` / ``<missing>`` for a boolean outcome."""
    text = outcome.map({True: "positive", False: "negative"}, na_action="ignore")
    return _with_missing(text)


def _with_missing(values: pd.Series) -> pd.Series:
    """Values as text, missing ones as ``<missing>``."""
    text = values.astype(object).where(values.notna(), MISSING)
    return text.map(str).astype(object)


def key_columns(df: pd.DataFrame, config: Config, keys: Sequence[str]) -> pd.DataFrame:
    """One text column per stratification key, named as it appears in stratum names.

    Parameters
    ----------
    df
        The table.
    config
        Supplies the label and facet definitions.
    keys
        ``"label"``, ``"facets"`` or column names, as in ``split.stratify``.

    Returns
    -------
    pandas.DataFrame
        Same index as ``df``; one column of strings per key, never missing.
    """
    columns: dict[str, pd.Series] = {}
    for key in keys:
        if key == "label":
            columns["label"] = outcome_text(label_outcome(df, config.label))
        elif key == "facets":
            for facet in config.facets:
                columns[facet_key_name(facet)] = _with_missing(facet_key(df, facet))
        elif key in df.columns:
            columns[key] = _with_missing(df[key])
        else:
            shown = ", ".join(repr(c) for c in df.columns[:40])
            raise InputError(
                f"split.stratify names column '{key}', which is not in the data; its "
                f"columns are: {shown}. Use 'label', 'facets' or one of those columns"
            )
    return pd.DataFrame(columns, index=df.index)


def combine_keys(keys: pd.DataFrame) -> pd.Series:
    """``name=value, name=value`` per row: the stratum (or cell) each row belongs to."""
    if keys.shape[1] == 0:
        return pd.Series("all rows", index=keys.index, dtype=object)
    parts = [name + "=" + keys[name] for name in keys.columns]
    combined = parts[0]
    for part in parts[1:]:
        combined = combined + ", " + part
    return combined.astype(object)


def split_sizes(n_rows: int, config: Config) -> dict[str, int]:
    """Rows per split: validation and test rounded, train takes the rest.

    Each size is within one row of ``fraction * n_rows``. A split with a non-zero
    fraction that would get no row is an error.
    """
    spec = config.split
    sizes = {
        "validation": round(spec.validation * n_rows),
        "test": round(spec.test * n_rows),
    }
    sizes = {"train": n_rows - sizes["validation"] - sizes["test"], **sizes}
    for name in SPLITS:
        fraction = getattr(spec, name)
        if fraction > 0 and sizes[name] < 1:
            raise InputError(
                f"the data has {n_rows} rows: too few for a {name} split of "
                f"{fraction:g} to get any row. Provide more rows or set split.{name} "
                "to 0 (and the other fractions so that they add up to 1)"
            )
    return sizes


def _check_strata(
    strata: pd.Series, sizes: dict[str, int], n_rows: int, keys: list[str]
) -> None:
    """Refuse strata too small to give each non-empty split at least one row."""
    smallest = min(size for size in sizes.values() if size > 0)
    counts = strata.value_counts(sort=False).sort_values(kind="stable")
    too_small = counts[counts * smallest < n_rows]
    if too_small.empty:
        return
    need = math.ceil(n_rows / smallest)
    first, first_count = too_small.index[0], int(too_small.iloc[0])
    shown = "; ".join(
        f"{name} has {int(count)}"
        for name, count in counts.iloc[:_SHOWN_STRATA].items()
    )
    fractions = ", ".join(f"{name} {size}" for name, size in sizes.items())
    raise InputError(
        f"stratum {first} has {first_count} rows, too few to appear in every split "
        f"({fractions} of {n_rows} rows): each stratum needs at least {need} rows; "
        f"{len(too_small)} of {len(counts)} strata are smaller. Smallest strata: "
        f"{shown}. {_stratum_advice(str(first), keys)}"
    )


def _stratum_advice(stratum: str, keys: list[str]) -> str:
    """What to do about a stratum too small to split, given what it is made of."""
    fixes = []
    if MISSING in stratum:
        fixes.append(
            "fill or drop the rows with a missing facet value (they form their own "
            "stratum)"
        )
    fixes.append("merge rare values into one (e.g. an 'Other' value)")
    if keys != ["label"]:
        fixes.append("stratify on fewer keys (e.g. split.stratify: [label])")
    fixes.append("provide more rows or change the split fractions")
    return "To fix: " + "; or ".join(fixes) + "."


def _split_positions(
    positions: np.ndarray,
    strata: np.ndarray | None,
    n_first: int,
    n_second: int,
    seed: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Stratified two-way split of ``positions`` into ``n_first`` and ``n_second``."""
    if n_second == 0:
        return positions, positions[:0]
    if n_first == 0:
        return positions[:0], positions
    try:
        first, second = train_test_split(
            positions,
            train_size=n_first,
            test_size=n_second,
            random_state=seed,
            shuffle=True,
            stratify=strata,
        )
    except ValueError as err:
        raise InputError(
            f"the stratified split failed: {err}. Merge rare values, stratify on "
            "fewer keys (e.g. split.stratify: [label]), or change the split fractions"
        ) from err
    return np.sort(first), np.sort(second)


def _check_presence(strata: pd.Series, parts: dict[str, np.ndarray]) -> None:
    """Every stratum appears in every non-empty split (rounding can still miss one)."""
    counts = strata.value_counts(sort=False)
    for name, positions in parts.items():
        if len(positions) == 0:
            continue
        seen = set(strata.iloc[positions])
        for stratum, count in counts.items():
            if stratum not in seen:
                raise InputError(
                    f"stratum {stratum} has {int(count)} rows and none of them fell "
                    f"into the {name} split. Merge rare values into one, stratify on "
                    "fewer keys (e.g. split.stratify: [label]), or change the split "
                    "fractions"
                )


def split_frame(df: pd.DataFrame, config: Config) -> dict[str, pd.DataFrame]:
    """Split a table into train, validation and test, stratified and seeded.

    Parameters
    ----------
    df
        The table; it is not modified.
    config
        ``config.split`` gives the fractions, the stratification keys and the seed.

    Returns
    -------
    dict of str to pandas.DataFrame
        ``train``, ``validation`` and ``test``: the rows in their original order with
        their original index, columns and dtypes. A split whose fraction is 0 is an
        empty frame with the same columns and dtypes.

    Raises
    ------
    InputError
        A stratification column is missing, or a stratum is too small to appear in
        every non-empty split (the message names it and suggests a fix).
    """
    spec = config.split
    n_rows = len(df)
    if n_rows == 0:
        raise InputError("the data has no rows to split")
    sizes = split_sizes(n_rows, config)
    strata = None
    if spec.stratify:
        strata = combine_keys(key_columns(df, config, spec.stratify))
        _check_strata(strata, sizes, n_rows, list(config.split.stratify))
    codes = pd.factorize(strata)[0] if strata is not None else None
    positions = np.arange(n_rows)
    n_rest = sizes["validation"] + sizes["test"]
    train, rest = _split_positions(positions, codes, sizes["train"], n_rest, spec.seed)
    rest_codes = codes[rest] if codes is not None else None
    validation, test = _split_positions(
        rest, rest_codes, sizes["validation"], sizes["test"], spec.seed
    )
    parts = {"train": train, "validation": validation, "test": test}
    if strata is not None:
        _check_presence(strata, parts)
    return {name: df.iloc[pos] for name, pos in parts.items()}
