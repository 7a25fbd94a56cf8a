"""Tests of rebalancing the training split.

Cell counts after resampling, CI and DPL are worked out by hand in the comments
from the counts of the small frames built here.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from biasgate.config import STRATEGIES, Config
from biasgate.errors import InputError
from biasgate.rebalance import rebalance_training_split
from biasgate.split import split_frame

TOL = 1e-12
MARK = "is_synthetic"


def make_config(label=None, facets=None, **rebalance) -> Config:
    return Config(
        source="memory",
        label=label or {"column": "outcome", "positive": ["yes"]},
        facets=facets or [{"column": "sex", "values": ["F"]}],
        rebalance=rebalance,
    )


def cells_frame(counts: dict[tuple[str, str], int], seed: int = 0) -> pd.DataFrame:
    """Rows per (sex, outcome) as given, with numeric columns of several dtypes."""
    rng = np.random.default_rng(seed)
    rows = [key for key, n in counts.items() for _ in range(n)]
    n = len(rows)
    return pd.DataFrame(
        {
            "sex": pd.array([r[0] for r in rows], dtype="str"),
            "age": rng.integers(18, 80, n).astype(np.int64),
            "score": rng.normal(0.0, 1.0, n),
            "ratio": rng.uniform(0, 1, n).astype(np.float32),
            "visits": pd.array(rng.integers(0, 9, n), dtype="Int64"),
            "level": rng.integers(0, 5, n).astype(np.uint8),
            "outcome": pd.array([r[1] for r in rows], dtype="str"),
        },
        index=pd.RangeIndex(100, 100 + n),
    )


def add_categories(df: pd.DataFrame, seed: int = 1) -> pd.DataFrame:
    """Add str (with gaps), category, bool and object columns."""
    rng = np.random.default_rng(seed)
    n = len(df)
    out = df.copy()
    colors = rng.choice(["red", "green", "blue"], n).astype(object)
    colors[::7] = None
    out.insert(1, "color", pd.array(colors, dtype="str"))
    out["grade"] = pd.Categorical(
        rng.choice(["A", "B", "C"], n), categories=list("ABCD")
    )
    out["member"] = rng.integers(0, 2, n).astype(bool)
    mixed = np.array([1, "x", 2.5], dtype=object)[rng.integers(0, 3, n)]
    out["code"] = pd.Series(mixed, dtype=object, index=out.index)  # mixed types
    return out


#: 28 rows: (M, no) 12, (M, yes) 6, (F, no) 8, (F, yes) 2.
SMALL = {("M", "no"): 12, ("M", "yes"): 6, ("F", "no"): 8, ("F", "yes"): 2}
#: 95 rows, every cell larger than k_neighbors + 1 = 4.
MEDIUM = {("M", "no"): 40, ("M", "yes"): 20, ("F", "no"): 25, ("F", "yes"): 10}


def is_ordered_subset(part: pd.DataFrame, whole: pd.DataFrame) -> bool:
    """Whether ``part``'s rows are rows of ``whole``, unchanged and in its order."""
    rows = iter(map(tuple, whole.astype(str).to_numpy()))
    return all(
        any(row == other for other in rows)
        for row in map(tuple, part.astype(str).to_numpy())
    )


def counts_by_cell(df: pd.DataFrame) -> dict[tuple[str, str], int]:
    return {key: len(rows) for key, rows in df.groupby(["sex", "outcome"])}


def ci_and_dpl(df: pd.DataFrame) -> tuple[float, float]:
    """CI and DPL of facet d = F from the counts, as in design §4."""
    n_d = int((df["sex"] == "F").sum())
    n_a = len(df) - n_d
    q_d = ((df["sex"] == "F") & (df["outcome"] == "yes")).sum() / n_d
    q_a = ((df["sex"] != "F") & (df["outcome"] == "yes")).sum() / n_a
    return (n_a - n_d) / (n_a + n_d), q_a - q_d


# ------------------------------------------------------------------ random samplers


def test_random_over_facet_label_equalises_cells_and_zeroes_ci_dpl():
    train = cells_frame(SMALL)
    out, summary = rebalance_training_split(train, make_config(strategy="random_over"))
    # Every cell grows to the largest, 12: 48 rows, 24 M and 24 F, 12 positive each:
    # CI = (24 - 24) / 48 = 0 and DPL = 12/24 - 12/24 = 0.
    assert counts_by_cell(out) == dict.fromkeys(SMALL, 12)
    ci, dpl = ci_and_dpl(out)
    assert ci == pytest.approx(0.0, abs=TOL)
    assert dpl == pytest.approx(0.0, abs=TOL)
    assert summary["rows_before"] == 28
    assert summary["rows_after"] == 48
    assert summary["synthetic_rows"] == 20
    assert summary["removed_rows"] == 0
    assert summary["counts_before"] == {
        "label=negative, sex=F": 8,
        "label=negative, sex=M": 12,
        "label=positive, sex=F": 2,
        "label=positive, sex=M": 6,
    }
    assert summary["counts_after"] == dict.fromkeys(summary["counts_before"], 12)


def test_ci_dpl_before_rebalancing_are_not_zero():
    # Guards the test above: before, n_a = 18, n_d = 10, q_a = 6/18, q_d = 2/10.
    ci, dpl = ci_and_dpl(cells_frame(SMALL))
    assert ci == pytest.approx(8 / 28, abs=TOL)
    assert dpl == pytest.approx(6 / 18 - 2 / 10, abs=TOL)


def test_random_over_label_target_balances_outcomes():
    train = cells_frame(SMALL)
    config = make_config(strategy="random_over", target="label")
    out, summary = rebalance_training_split(train, config)
    # 20 negative, 8 positive -> 20 and 20.
    assert out["outcome"].value_counts().to_dict() == {"no": 20, "yes": 20}
    assert summary["counts_after"] == {"label=negative": 20, "label=positive": 20}
    assert summary["facets"] == []


def test_random_under_shrinks_every_cell_to_the_smallest():
    train = cells_frame(SMALL)
    config = make_config(strategy="random_under", mark_synthetic=MARK)
    out, summary = rebalance_training_split(train, config)
    assert counts_by_cell(out) == dict.fromkeys(SMALL, 2)
    assert summary["removed_rows"] == 20
    assert not out[MARK].any()
    # Every output row is an input row, unchanged, in the input's order.
    merged = out.drop(columns=MARK).merge(train, how="left", indicator=True)
    assert (merged["_merge"] == "both").all()


def test_random_over_keeps_originals_first_and_marks_copies():
    train = cells_frame(SMALL)
    config = make_config(strategy="random_over", mark_synthetic=MARK)
    out, _ = rebalance_training_split(train, config)
    assert list(out.columns) == [*train.columns, MARK]
    assert out[MARK].dtype == bool
    assert out[MARK].tolist() == [False] * 28 + [True] * 20
    assert out.index.equals(pd.RangeIndex(48))
    original = out.iloc[:28].drop(columns=MARK)
    pd.testing.assert_frame_equal(original, train.reset_index(drop=True))


def test_none_returns_the_input_unchanged():
    train = cells_frame(SMALL)
    out, summary = rebalance_training_split(train, make_config(strategy="none"))
    pd.testing.assert_frame_equal(out, train)
    assert summary["synthetic_rows"] == 0
    assert summary["counts_after"] == summary["counts_before"]


# ------------------------------------------------------------------ every strategy

FRAME_FOR = {
    "none": "mixed",
    "random_over": "mixed",
    "random_under": "mixed",
    "smotenc": "mixed",
    "smoten": "categorical",
    "smote": "numeric",
    "adasyn": "numeric",
    "borderline_smote": "numeric",
    "smote_tomek": "numeric",
    "smote_enn": "numeric",
}


def frame_of_kind(kind: str) -> pd.DataFrame:
    numeric = cells_frame(MEDIUM)
    if kind == "numeric":
        return numeric
    mixed = add_categories(numeric)
    if kind == "mixed":
        return mixed
    return mixed[["sex", "color", "grade", "member", "code", "outcome"]]


def test_every_configured_strategy_is_covered():
    assert set(FRAME_FOR) == set(STRATEGIES)


@pytest.mark.parametrize("strategy", sorted(FRAME_FOR))
def test_columns_dtypes_and_originals_preserved(strategy):
    train = frame_of_kind(FRAME_FOR[strategy])
    before = train.copy()
    config = make_config(strategy=strategy, k_neighbors=3, mark_synthetic=MARK)
    out, summary = rebalance_training_split(train, config)
    pd.testing.assert_frame_equal(train, before)  # the input is not modified
    assert list(out.columns) == [*train.columns, MARK]
    assert out.drop(columns=MARK).dtypes.equals(train.dtypes)
    assert summary["rows_after"] == len(out)
    assert summary["synthetic_rows"] == int(out[MARK].sum())
    if strategy not in ("none", "random_under"):
        assert summary["synthetic_rows"] > 0
    kept = out[~out[MARK]].drop(columns=MARK).reset_index(drop=True)
    assert len(kept) == summary["rows_before"] - summary["removed_rows"]
    assert is_ordered_subset(kept, train)
    assert out[MARK].is_monotonic_increasing  # originals first


@pytest.mark.parametrize("strategy", ["smote", "smotenc", "smoten", "random_over"])
def test_oversamplers_grow_every_cell_to_the_largest(strategy):
    train = frame_of_kind(FRAME_FOR[strategy])
    config = make_config(strategy=strategy, k_neighbors=3)
    out, summary = rebalance_training_split(train, config)
    # The largest cell, (M, no), has 40 rows: 4 * 40 = 160 rows, CI = DPL = 0.
    assert counts_by_cell(out) == dict.fromkeys(MEDIUM, 40)
    assert summary["synthetic_rows"] == 160 - 95
    ci, dpl = ci_and_dpl(out)
    assert ci == pytest.approx(0, abs=TOL)
    assert dpl == pytest.approx(0, abs=TOL)


def test_adasyn_grows_the_smaller_cells():
    # ADASYN rounds the rows it makes per seed row, so cells only come near 40.
    config = make_config(strategy="adasyn", k_neighbors=3)
    out, _ = rebalance_training_split(frame_of_kind("numeric"), config)
    after = counts_by_cell(out)
    assert after[("M", "no")] == 40
    assert all(after[key] > MEDIUM[key] for key in MEDIUM if key != ("M", "no"))
    # CI was (60 - 35) / 95 = 0.263; the cells now hold about as many F as M rows.
    assert abs(ci_and_dpl(out)[0]) < 0.1


def test_smotenc_synthetic_values_come_from_the_cell():
    train = frame_of_kind("mixed")
    config = make_config(strategy="smotenc", k_neighbors=3, mark_synthetic=MARK)
    out, _ = rebalance_training_split(train, config)
    synthetic = out[out[MARK]]
    assert len(synthetic) == 4 * 40 - 95
    for key, rows in synthetic.groupby(["sex", "outcome"]):
        cell = train[(train["sex"] == key[0]) & (train["outcome"] == key[1])]
        for col in ("color", "grade", "member", "code"):
            assert set(rows[col].dropna()) <= set(cell[col].dropna())
        for col in ("age", "visits", "level"):  # integers stay integers, in range
            assert rows[col].between(cell[col].min(), cell[col].max()).all()
        assert rows["score"].between(cell["score"].min(), cell["score"].max()).all()


def test_no_synthetic_gap_where_the_neighbours_have_none():
    # 'color' is missing only in the (M, no) cell, which is the largest and not
    # oversampled: no synthetic row may get a missing colour.
    train = frame_of_kind("mixed")
    majority = (train["sex"] == "M") & (train["outcome"] == "no")
    filled = train["color"].fillna("red")
    train["color"] = train["color"].where(majority, filled)
    config = make_config(strategy="smotenc", k_neighbors=3, mark_synthetic=MARK)
    out, _ = rebalance_training_split(train, config)
    assert out.loc[out[MARK], "color"].notna().all()
    assert out.loc[~out[MARK], "color"].isna().sum() == train["color"].isna().sum()


def test_synthetic_label_is_the_cells_most_frequent_original_value():
    # Positive values 'hi' and 'top': in (F, positive) 'top' is more frequent (3 of
    # 4), in (M, positive) 'hi' (5 of 6). Negative rows are all 'low'.
    rng = np.random.default_rng(3)
    outcome = ["top", "top", "top", "hi"] + ["hi"] * 5 + ["top"] + ["low"] * 20
    sex = ["F"] * 4 + ["M"] * 6 + ["F"] * 10 + ["M"] * 10
    train = pd.DataFrame({"sex": sex, "x": rng.normal(size=30), "outcome": outcome})
    config = make_config(
        label={"column": "outcome", "positive": ["hi", "top"]},
        strategy="smote",
        k_neighbors=2,
        mark_synthetic=MARK,
    )
    out, _ = rebalance_training_split(train, config)
    synthetic = out[out[MARK]]
    # Cells grow to 10: (F, positive) gets 6 rows 'top', (M, positive) 4 rows 'hi'.
    assert synthetic.groupby(["sex", "outcome"]).size().to_dict() == {
        ("F", "top"): 6,
        ("M", "hi"): 4,
    }


def test_threshold_facet_keeps_its_side_of_the_threshold():
    # Facet age > 40 with target facet_label: synthetic ages are interpolated within
    # a cell, so they stay on their cell's side.
    rng = np.random.default_rng(5)
    age = np.r_[rng.integers(20, 41, 30), rng.integers(41, 70, 12)]
    outcome = ["no"] * 24 + ["yes"] * 6 + ["no"] * 4 + ["yes"] * 8
    train = pd.DataFrame(
        {"age": age, "hours": rng.normal(40, 5, 42), "outcome": outcome}
    )
    config = make_config(
        facets=[{"column": "age", "threshold": 40}],
        strategy="smote",
        k_neighbors=3,
        mark_synthetic=MARK,
    )
    out, summary = rebalance_training_split(train, config)
    assert summary["counts_after"] == {
        "label=negative, age>40=False": 24,
        "label=negative, age>40=True": 24,
        "label=positive, age>40=False": 24,
        "label=positive, age>40=True": 24,
    }
    assert out["age"].dtype == np.int64


def test_rows_with_missing_facet_are_kept_but_not_resampled():
    train = cells_frame(SMALL)
    train["sex"] = train["sex"].where(train["age"] != train["age"].iloc[0])
    gaps = int(train["sex"].isna().sum())
    config = make_config(strategy="random_over", mark_synthetic=MARK)
    out, summary = rebalance_training_split(train, config)
    assert gaps >= 1
    assert summary["rows_not_resampled"] == gaps
    assert out.loc[~out[MARK], "sex"].isna().sum() == gaps
    assert out.loc[out[MARK], "sex"].notna().all()


def test_same_seed_same_output():
    train = frame_of_kind("mixed")
    config = make_config(strategy="smotenc", k_neighbors=3, seed=11)
    first, _ = rebalance_training_split(train, config)
    second, _ = rebalance_training_split(train, config)
    pd.testing.assert_frame_equal(first, second)


def test_progress_is_logged(caplog):
    with caplog.at_level(logging.INFO, logger="biasgate.rebalance"):
        rebalance_training_split(
            cells_frame(SMALL), make_config(strategy="random_over")
        )
    text = caplog.text
    assert "random_over" in text
    assert "4 cells" in text
    assert "28 -> 48 rows (20 synthetic, 0 removed)" in text


# ------------------------------------------------------------------ errors


def test_smote_with_categorical_columns_names_them_and_suggests_smotenc():
    config = make_config(strategy="smote", k_neighbors=3)
    with pytest.raises(InputError) as info:
        rebalance_training_split(frame_of_kind("mixed"), config)
    message = str(info.value)
    assert "'color', 'grade', 'member', 'code' hold categories" in message
    assert "rebalance.strategy: smotenc" in message


def test_smote_with_only_categorical_columns_suggests_smoten():
    config = make_config(strategy="borderline_smote", k_neighbors=3)
    with pytest.raises(InputError, match="rebalance.strategy: smoten "):
        rebalance_training_split(frame_of_kind("categorical"), config)


def test_smoten_with_numbers_suggests_smotenc():
    config = make_config(strategy="smoten", k_neighbors=3)
    with pytest.raises(InputError, match="'age', 'score'.* are numeric; use .*smotenc"):
        rebalance_training_split(frame_of_kind("mixed"), config)


def test_missing_numbers_are_named_with_their_count():
    train = cells_frame(MEDIUM)
    train["score"] = train["score"].mask(train.index.isin([100, 150]))
    config = make_config(strategy="smote", k_neighbors=3)
    with pytest.raises(InputError) as info:
        rebalance_training_split(train, config)
    message = str(info.value)
    assert "'score' has 2 missing values" in message
    assert "Impute or drop" in message
    assert "random_over" in message


def test_cell_smaller_than_k_neighbors_is_named():
    # (F, yes) has 2 rows; k_neighbors=5 needs 6.
    config = make_config(strategy="smote")
    with pytest.raises(InputError) as info:
        rebalance_training_split(cells_frame(SMALL), config)
    message = str(info.value)
    assert "cell label=positive, sex=F has 2 rows" in message
    assert "k_neighbors to 1 or less" in message
    assert "random_over" in message


def test_other_sampler_errors_name_the_strategy():
    # 10 rows: borderline SMOTE looks for 10 + 1 neighbours among all rows.
    counts = {("M", "no"): 4, ("M", "yes"): 2, ("F", "no"): 2, ("F", "yes"): 2}
    config = make_config(strategy="borderline_smote", k_neighbors=1)
    with pytest.raises(InputError) as info:
        rebalance_training_split(cells_frame(counts), config)
    message = str(info.value)
    assert "rebalance strategy 'borderline_smote' failed" in message
    assert "n_samples_fit = 10" in message  # imbalanced-learn's own words
    assert "random_over" in message
    assert isinstance(info.value.__cause__, ValueError)


def test_marker_column_must_be_new():
    config = make_config(strategy="random_over", mark_synthetic="age")
    with pytest.raises(InputError, match="mark_synthetic names column 'age'"):
        rebalance_training_split(cells_frame(SMALL), config)


# ------------------------------------------------------------------ properties


@settings(max_examples=40, deadline=None)
@given(
    sizes=st.lists(st.integers(min_value=1, max_value=15), min_size=4, max_size=4),
    seed=st.integers(min_value=0, max_value=10_000),
)
def test_random_over_keeps_every_original_row_and_equalises(sizes, seed):
    counts = dict(zip(SMALL, sizes, strict=True))
    train = cells_frame(counts, seed=seed)
    config = make_config(strategy="random_over", seed=seed)
    out, summary = rebalance_training_split(train, config)
    pd.testing.assert_frame_equal(out.iloc[: len(train)], train.reset_index(drop=True))
    assert counts_by_cell(out) == dict.fromkeys(SMALL, max(sizes))
    assert summary["synthetic_rows"] == 4 * max(sizes) - len(train)


# ------------------------------------------------------------------ Adult

ADULT_COLUMNS = [
    "age", "workclass", "fnlwgt", "education", "education-num", "marital-status",
    "occupation", "relationship", "race", "sex", "capital-gain", "capital-loss",
    "hours-per-week", "native-country", "income",
]  # fmt: skip
ADULT_FILES = [
    Path(__file__).resolve().parents[1] / "data" / "adult.csv.gz",
    Path("/work/shared/data/adult.data"),
]


@pytest.fixture(scope="module")
def adult_train() -> pd.DataFrame:
    path = next((p for p in ADULT_FILES if p.exists()), None)
    if path is None:
        pytest.skip("Adult data not found in data/adult.csv.gz or the shared folder")
    df = pd.read_csv(
        path, header=None, names=ADULT_COLUMNS, skipinitialspace=True, na_values="?"
    )
    config = adult_config()
    return split_frame(df, config)["train"]


def adult_config(**rebalance) -> Config:
    return Config(
        source="memory",
        label={"column": "income", "positive": [">50K"]},
        facets=[{"column": "sex", "values": ["Female"]}, {"column": "race"}],
        split={"stratify": ["label", "sex"], "seed": 42},
        rebalance=rebalance,
    )


def adult_dpl_sex(df: pd.DataFrame) -> float:
    female = df["sex"] == "Female"
    positive = df["income"] == ">50K"
    return (positive & ~female).sum() / (~female).sum() - (
        positive & female
    ).sum() / female.sum()


def test_adult_smotenc_facet_label_brings_dpl_sex_near_zero(adult_train):
    assert adult_dpl_sex(adult_train) > 0.15  # about 0.196 before
    config = adult_config(
        strategy="smotenc", target="facet_label", facets=["sex"], mark_synthetic=MARK
    )
    out, summary = rebalance_training_split(adult_train, config)
    assert abs(adult_dpl_sex(out)) < 0.01
    assert out.drop(columns=MARK).dtypes.equals(adult_train.dtypes)
    assert summary["sampler"] == "SMOTENC"
    synthetic = out[out[MARK]]
    for col in ("workclass", "education", "race", "native-country"):
        assert set(synthetic[col].dropna()) <= set(adult_train[col].dropna())
    assert set(synthetic["income"]) <= {"<=50K", ">50K"}
