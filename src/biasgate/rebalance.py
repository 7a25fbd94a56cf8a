"""Rebalance the training split with imbalanced-learn.

The classes handed to the sampler are *cells*: the binary outcome (``target: label``)
or the outcome crossed with the facet keys (``target: facet_label``), so that every
facet x outcome cell ends with the same number of rows and CI and DPL move toward 0
together. The label column is not a feature: it is rebuilt from the cell. With
``facet_label`` the facet columns given by value are rebuilt from the cell too, so a
synthetic row always keeps its cell's facet value.

Categorical columns (anything not numeric: ``str``, ``object``, ``category``,
``bool``) are never turned into floats: they are factorized to integer codes and
passed to SMOTENC / SMOTEN by name as categorical features, then decoded to the
original values. Rows whose label or facet key is missing take no part in
resampling and are kept unchanged.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from biasgate.analysis import facet_key, label_outcome
from biasgate.config import Config, FacetSpec
from biasgate.errors import InputError
from biasgate.split import MISSING, combine_keys, facet_key_name, outcome_text

logger = logging.getLogger("biasgate.rebalance")

#: Strategies that interpolate between neighbours (numeric features only).
NUMERIC_ONLY = ("smote", "adasyn", "borderline_smote", "smote_tomek", "smote_enn")
_NO_NEIGHBOURS = "n_neighbors <= n_samples_fit"


@dataclass
class _Cells:
    """The cell of every row of the training split that takes part in resampling."""

    facets: list[FacetSpec]
    rows: np.ndarray  # positions in the training split of the rows that take part
    codes: np.ndarray  # cell code per taking-part row
    names: list[str]  # cell name per code
    keys: pd.DataFrame  # per code: the text of each key (label, facet keys)

    def counts(self) -> dict[str, int]:
        sizes = np.bincount(self.codes, minlength=len(self.names))
        return {name: int(size) for name, size in zip(self.names, sizes, strict=True)}


@dataclass
class _Features:
    """The sampler's X: encoded columns and how to decode them."""

    frame: pd.DataFrame  # encoded: float64 numbers, int64 category codes
    columns: list[Any]  # original column per encoded column
    categorical: list[Any]  # original names of the categorical columns
    numeric: list[Any]  # original names of the numeric columns


def is_categorical(series: pd.Series) -> bool:
    """True for columns resampled as categories: every non-numeric dtype and bool."""
    dtype = series.dtype
    return not pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_bool_dtype(dtype)


def _cell_facets(config: Config) -> list[FacetSpec]:
    if config.rebalance.target == "label":
        return []
    chosen = config.rebalance.facets
    return [f for f in config.facets if chosen is None or f.column in chosen]


def _training_cells(train: pd.DataFrame, config: Config) -> _Cells:
    """Cell of each row: outcome, or outcome x facet keys; rows with a gap left out."""
    facets = _cell_facets(config)
    keys = {"label": outcome_text(label_outcome(train, config.label))}
    for facet in facets:
        key = facet_key(train, facet)
        keys[facet_key_name(facet)] = key.astype(object).where(key.notna(), MISSING)
    frame = pd.DataFrame(keys).astype(str)
    complete = ~(frame == MISSING).any(axis=1).to_numpy()
    known = frame[complete].reset_index(drop=True)
    codes, uniques = pd.factorize(combine_keys(known), sort=True)
    first = _first_positions(codes, np.arange(len(uniques)))
    per_cell = known.iloc[first].reset_index(drop=True)
    rows = np.flatnonzero(complete)
    return _Cells(facets, rows, codes, [str(u) for u in uniques], per_cell)


def cell_counts(frame: pd.DataFrame, config: Config) -> dict[str, int]:
    """Rows per cell (rows with a missing label or facet key are not counted)."""
    return _training_cells(frame, config).counts()


# --------------------------------------------------------------------------- checks


def _names(columns: list[Any]) -> str:
    return ", ".join(f"'{c}'" for c in columns)


def _check_marker(train: pd.DataFrame, marker: str | None) -> None:
    if marker is not None and marker in train.columns:
        raise InputError(
            f"rebalance.mark_synthetic names column '{marker}', which the data already "
            "has; choose another name for the synthetic-row marker"
        )


def _check_kinds(strategy: str, categorical: list[Any], numeric: list[Any]) -> None:
    """Refuse column kinds a strategy cannot handle, suggesting one that can."""
    if not categorical and not numeric:
        raise InputError(
            f"rebalance strategy '{strategy}' needs feature columns, but only the "
            "label and facet columns are left; use random_over or random_under"
        )
    if strategy in NUMERIC_ONLY and categorical:
        better = "smoten" if not numeric else "smotenc"
        raise InputError(
            f"rebalance strategy '{strategy}' interpolates numbers, but columns "
            f"{_names(categorical)} hold categories; use rebalance.strategy: {better} "
            "(which keeps categories as categories) or drop those columns"
        )
    if strategy == "smoten" and numeric:
        raise InputError(
            f"rebalance strategy 'smoten' needs categorical columns only, but "
            f"{_names(numeric)} are numeric; use rebalance.strategy: smotenc"
        )
    if strategy == "smotenc" and not numeric:
        raise InputError(
            "rebalance strategy 'smotenc' needs at least one numeric column, but "
            "every feature column is categorical; use rebalance.strategy: smoten"
        )


def _check_no_nan(frame: pd.DataFrame, numeric: list[Any], strategy: str) -> None:
    gaps = {col: int(frame[col].isna().sum()) for col in numeric}
    gaps = {col: n for col, n in gaps.items() if n}
    if gaps:
        listed = ", ".join(f"'{col}' has {n}" for col, n in gaps.items())
        raise InputError(
            f"rebalance strategy '{strategy}' cannot interpolate missing numbers: "
            f"{listed} missing values. Impute or drop them before the run, or use "
            "rebalance.strategy: random_over or random_under"
        )


def _check_cell_sizes(cells: _Cells, strategy: str, k: int) -> None:
    """A cell to be oversampled needs more than k rows to have k neighbours."""
    counts = cells.counts()
    target = max(counts.values())
    small = {name: n for name, n in counts.items() if n < target and n <= k}
    if not small:
        return
    name, size = min(small.items(), key=lambda item: item[1])
    fix = f"set rebalance.k_neighbors to {size - 1} or less, or" if size > 1 else ""
    raise InputError(
        f"cell {name} has {size} rows, too few for '{strategy}' with k_neighbors={k} "
        f"(it needs at least {k + 1} rows to find {k} neighbours); {fix} use "
        "rebalance.strategy: random_over"
    )


# --------------------------------------------------------------------------- features


def _encode(part: pd.DataFrame, categorical: list[Any]) -> pd.DataFrame:
    """Numbers as float64, categories as integer codes (missing is code -1)."""
    data = {}
    for i, col in enumerate(part.columns):
        series = part[col]
        if col in categorical:
            data[f"c{i}"] = pd.factorize(series)[0].astype(np.int64)
        else:
            data[f"c{i}"] = series.to_numpy(dtype=np.float64, na_value=np.nan)
    return pd.DataFrame(data)


def _features(train: pd.DataFrame, cells: _Cells, config: Config) -> _Features:
    rebuilt = {config.label.column} | {
        f.column for f in cells.facets if f.threshold is None
    }
    columns = [c for c in train.columns if c not in rebuilt]
    part = train.iloc[cells.rows][columns]
    categorical = [c for c in columns if is_categorical(part[c])]
    numeric = [c for c in columns if c not in categorical]
    return _Features(_encode(part, categorical), columns, categorical, numeric)


# --------------------------------------------------------------------------- samplers


def _make_sampler(strategy: str, categorical: list[str], k: int, seed: int) -> Any:
    """The imbalanced-learn sampler; imported here because the import takes ~2 s."""
    from imblearn import combine, over_sampling, under_sampling

    smote = over_sampling.SMOTE(k_neighbors=k, random_state=seed)
    factories = {
        "random_over": lambda: over_sampling.RandomOverSampler(random_state=seed),
        "random_under": lambda: under_sampling.RandomUnderSampler(random_state=seed),
        "smote": lambda: smote,
        "smotenc": lambda: over_sampling.SMOTENC(
            categorical_features=categorical, k_neighbors=k, random_state=seed
        ),
        "smoten": lambda: over_sampling.SMOTEN(k_neighbors=k, random_state=seed),
        "adasyn": lambda: over_sampling.ADASYN(n_neighbors=k, random_state=seed),
        "borderline_smote": lambda: over_sampling.BorderlineSMOTE(
            k_neighbors=k, random_state=seed
        ),
        "smote_tomek": lambda: combine.SMOTETomek(smote=smote, random_state=seed),
        "smote_enn": lambda: combine.SMOTEENN(smote=smote, random_state=seed),
    }
    return factories[strategy]()


def _resample(sampler: Any, X: Any, y: np.ndarray, strategy: str) -> tuple[Any, Any]:
    """Run the sampler; its errors become InputErrors that name the strategy."""
    try:
        return sampler.fit_resample(X, y)
    except (ValueError, RuntimeError) as err:
        hint = ""
        if _NO_NEIGHBOURS in str(err):
            hint = (
                " Too few rows for the neighbour search: lower rebalance.k_neighbors "
                "or use rebalance.strategy: random_over."
            )
        message = f"rebalance strategy '{strategy}' failed on the training split"
        raise InputError(f"{message}: {err}.{hint}") from err


def _origin(sampler: Any, n_rows: int, n_out: int) -> np.ndarray:
    """For each output row of the sampler, its input position, or -1 if synthetic."""
    source = np.arange(n_out)
    for cleaner in ("tomek_", "enn_"):  # SMOTETomek / SMOTEENN clean SMOTE's output
        if hasattr(sampler, cleaner):
            source = np.asarray(getattr(sampler, cleaner).sample_indices_)
    return np.where(source < n_rows, source, -1)


# --------------------------------------------------------------------------- decoding


def _first_positions(keys: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """For each wanted key, the position of its first occurrence in ``keys``."""
    uniques, first = np.unique(keys, return_index=True)
    return first[np.searchsorted(uniques, wanted)]


def _label_sources(train: pd.DataFrame, cells: _Cells, label: str) -> np.ndarray:
    """Per cell, a row position holding the cell's most frequent label value."""
    sources = np.empty(len(cells.names), dtype=np.int64)
    values = train[label].iloc[cells.rows].reset_index(drop=True)
    for code in range(len(cells.names)):
        members = np.flatnonzero(cells.codes == code)
        in_cell = values.iloc[members]
        top = in_cell.value_counts(dropna=True).index[0]
        sources[code] = cells.rows[members[np.flatnonzero(in_cell == top)[0]]]
    return sources


def _decode_number(values: np.ndarray, dtype: Any) -> pd.Series:
    if pd.api.types.is_integer_dtype(dtype):
        values = np.rint(values)
    return pd.Series(values).astype(dtype)


def _decode(
    train: pd.DataFrame,
    synthetic: np.ndarray,
    syn_cells: np.ndarray,
    cells: _Cells,
    features: _Features,
    label: str,
) -> pd.DataFrame:
    """Synthetic rows in the original columns, order and dtypes."""
    cell_first = cells.rows[_first_positions(cells.codes, syn_cells)]
    label_rows = _label_sources(train, cells, label)[syn_cells]
    out: dict[Any, pd.Series] = {}
    for col in train.columns:
        if col in features.columns:
            j = features.columns.index(col)
            if col in features.categorical:
                codes = features.frame.iloc[:, j].to_numpy()
                chosen = np.rint(synthetic[:, j]).astype(np.int64)
                rows = cells.rows[_first_positions(codes, chosen)]
                out[col] = train[col].iloc[rows].reset_index(drop=True)
            else:
                out[col] = _decode_number(synthetic[:, j], train[col].dtype)
        else:
            rows = label_rows if col == label else cell_first
            out[col] = train[col].iloc[rows].reset_index(drop=True)
    return pd.DataFrame(out, columns=train.columns)


def _check_facets_kept(
    synthetic: pd.DataFrame, syn_cells: np.ndarray, cells: _Cells
) -> None:
    """Every synthetic row keeps the facet keys of the cell it was made for."""
    for facet in cells.facets:
        name = facet_key_name(facet)
        got = facet_key(synthetic, facet).astype(object).astype(str).to_numpy()
        wanted = cells.keys[name].to_numpy()[syn_cells]
        wrong = np.flatnonzero(got != wanted)
        if len(wrong):
            raise RuntimeError(
                f"{len(wrong)} synthetic rows left their cell for facet "
                f"'{facet.column}' (first: {cells.names[syn_cells[wrong[0]]]}, "
                f"{name}={got[wrong[0]]}); please report this as a bug"
            )


# --------------------------------------------------------------------------- assembly


def _assemble(
    train: pd.DataFrame, kept: np.ndarray, synthetic: pd.DataFrame, marker: str | None
) -> pd.DataFrame:
    """Kept original rows in their order, then synthetic rows; a fresh RangeIndex."""
    original = train.iloc[np.sort(kept)].reset_index(drop=True)
    out = pd.concat([original, synthetic.reset_index(drop=True)], ignore_index=True)
    out = out.astype(train.dtypes.to_dict())
    if marker is not None:
        flags = np.r_[np.zeros(len(original), bool), np.ones(len(synthetic), bool)]
        out[marker] = flags
    return out


def _unchanged(train: pd.DataFrame, marker: str | None) -> pd.DataFrame:
    out = train.copy()
    if marker is not None:
        out[marker] = np.zeros(len(out), dtype=bool)
    return out


def _summary(
    train: pd.DataFrame,
    out: pd.DataFrame,
    cells: _Cells,
    config: Config,
    n_new: int,
    sampler: str | None,
) -> dict[str, Any]:
    return {
        "strategy": config.rebalance.strategy,
        "target": config.rebalance.target,
        "facets": [f.column for f in cells.facets],
        "sampler": sampler,
        "rows_before": len(train),
        "rows_after": len(out),
        "synthetic_rows": n_new,
        "removed_rows": len(train) + n_new - len(out),
        "rows_not_resampled": len(train) - len(cells.rows),
        "counts_before": cells.counts(),
        "counts_after": cell_counts(out, config),
    }


def _rebalance_random(
    train: pd.DataFrame, cells: _Cells, config: Config
) -> tuple[np.ndarray, pd.DataFrame, str]:
    """Random over/under-sampling: output rows are copies of input rows."""
    spec = config.rebalance
    sampler = _make_sampler(spec.strategy, [], spec.k_neighbors, spec.seed)
    positions = np.arange(len(cells.rows)).reshape(-1, 1)
    _resample(sampler, positions, cells.codes, spec.strategy)
    chosen = cells.rows[np.asarray(sampler.sample_indices_)]
    n_part = len(cells.rows) if spec.strategy == "random_over" else len(chosen)
    kept = np.union1d(_left_out(train, cells), chosen[:n_part])
    return kept, train.iloc[chosen[n_part:]], type(sampler).__name__


def _left_out(train: pd.DataFrame, cells: _Cells) -> np.ndarray:
    return np.setdiff1d(np.arange(len(train)), cells.rows)


def _rebalance_synthetic(
    train: pd.DataFrame, cells: _Cells, config: Config
) -> tuple[np.ndarray, pd.DataFrame, str]:
    """SMOTE family: original rows kept (unless cleaned), synthetic rows decoded."""
    spec = config.rebalance
    features = _features(train, cells, config)
    strategy = spec.strategy
    if strategy == "smotenc" and not features.categorical and features.numeric:
        logger.info("no categorical feature column: smotenc runs as plain SMOTE")
        strategy = "smote"
    _check_kinds(strategy, features.categorical, features.numeric)
    _check_no_nan(train.iloc[cells.rows], features.numeric, spec.strategy)
    _check_cell_sizes(cells, spec.strategy, spec.k_neighbors)
    frame = features.frame
    names = [frame.columns[features.columns.index(c)] for c in features.categorical]
    sampler = _make_sampler(strategy, names, spec.k_neighbors, spec.seed)
    X_res, y_res = _resample(sampler, frame, cells.codes, spec.strategy)
    origin = _origin(sampler, len(frame), len(y_res))
    is_new = origin < 0
    syn_cells = np.asarray(y_res)[is_new]
    synthetic = _decode(
        train, np.asarray(X_res, dtype=np.float64)[is_new], syn_cells, cells,
        features, config.label.column,
    )  # fmt: skip
    _check_facets_kept(synthetic, syn_cells, cells)
    kept = np.union1d(_left_out(train, cells), cells.rows[origin[~is_new]])
    return kept, synthetic, type(sampler).__name__


def rebalance_training_split(
    train: pd.DataFrame, config: Config
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Resample the training split so that its cells have equal sizes.

    Parameters
    ----------
    train
        The training split; it is not modified.
    config
        ``config.rebalance`` gives the strategy, the target (``label`` or
        ``facet_label``), the facets, ``k_neighbors``, the seed and the name of an
        optional synthetic-row marker column.

    Returns
    -------
    frame : pandas.DataFrame
        The kept original rows (unchanged, in their order), then the new rows, with
        a fresh RangeIndex and the input's columns, column order and dtypes (plus the
        boolean marker column if configured: True on new rows, including the copies
        made by ``random_over``). ``none`` returns the input unchanged.
    summary : dict
        ``strategy``, ``target``, ``facets``, ``sampler``, ``rows_before``,
        ``rows_after``, ``synthetic_rows``, ``removed_rows``, ``rows_not_resampled``
        (missing label or facet key), ``counts_before`` and ``counts_after`` (rows per
        cell) and ``seconds``.

    Raises
    ------
    InputError
        The data does not suit the strategy: categorical columns for a numeric-only
        strategy, missing numbers, a cell smaller than ``k_neighbors + 1``, or any
        other error of the sampler (the message names the strategy).
    """
    start = time.perf_counter()
    spec = config.rebalance
    _check_marker(train, spec.mark_synthetic)
    cells = _training_cells(train, config)
    logger.info(
        "rebalancing %d training rows with %s on %s: %d cells",
        len(train), spec.strategy, spec.target, len(cells.names),
    )  # fmt: skip
    if spec.strategy == "none":
        out, n_new, sampler = _unchanged(train, spec.mark_synthetic), 0, None
    else:
        random = spec.strategy in ("random_over", "random_under")
        resample = _rebalance_random if random else _rebalance_synthetic
        kept, synthetic, sampler = resample(train, cells, config)
        out = _assemble(train, kept, synthetic, spec.mark_synthetic)
        n_new = len(synthetic)
    summary = _summary(train, out, cells, config, n_new, sampler)
    summary["seconds"] = round(time.perf_counter() - start, 3)
    logger.info(
        "rebalanced with %s: %d -> %d rows (%d synthetic, %d removed) in %.2f s",
        spec.strategy, len(train), len(out), n_new, summary["removed_rows"],
        summary["seconds"],
    )  # fmt: skip
    return out, summary
