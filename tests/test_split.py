"""Tests of the stratified train / validation / test split.

Expected sizes are worked out by hand in the comments: validation and test get
``round(fraction * rows)`` rows, train the rest.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from biasgate.config import Config
from biasgate.errors import InputError
from biasgate.split import split_frame


def make_config(**split) -> Config:
    return Config(
        source="memory",
        label={"column": "outcome", "positive": ["yes"]},
        facets=[{"column": "sex", "values": ["F"]}],
        split=split,
    )


def cells_frame(counts: dict[tuple[str, str], int]) -> pd.DataFrame:
    """Rows per (sex, outcome) as given, with an int, a float and a str column."""
    rows = [(sex, out) for (sex, out), n in counts.items() for _ in range(n)]
    n = len(rows)
    return pd.DataFrame(
        {
            "sex": pd.array([r[0] for r in rows], dtype="str"),
            "age": np.arange(20, 20 + n, dtype=np.int64),
            "outcome": pd.array([r[1] for r in rows], dtype="str"),
            "score": np.linspace(0.0, 1.0, n),
        },
        # A non-default index, to see that it is kept.
        index=pd.Index(np.arange(1000, 1000 + n) * 3, name="row_id"),
    )


#: 40 rows, four strata of 10: with 0.6 / 0.2 / 0.2 each stratum gives 6 / 2 / 2.
EVEN = {("F", "yes"): 10, ("F", "no"): 10, ("M", "yes"): 10, ("M", "no"): 10}


def stratum_counts(part: pd.DataFrame) -> dict[tuple[str, str], int]:
    return {key: len(rows) for key, rows in part.groupby(["sex", "outcome"])}


def test_exact_sizes_and_per_stratum_counts():
    df = cells_frame(EVEN)
    parts = split_frame(df, make_config(train=0.6, validation=0.2, test=0.2))
    assert {k: len(v) for k, v in parts.items()} == {
        "train": 24,
        "validation": 8,
        "test": 8,
    }
    for name, per_stratum in (("train", 6), ("validation", 2), ("test", 2)):
        assert stratum_counts(parts[name]) == dict.fromkeys(EVEN, per_stratum)


def test_stratum_proportions_preserved_on_uneven_strata():
    # 1000 rows; strata of 500, 300 and 200 rows. 0.7 / 0.15 / 0.15 of each is a
    # whole number: 350/75/75, 210/45/45 and 140/30/30.
    counts = {("M", "no"): 500, ("F", "no"): 300, ("F", "yes"): 200}
    parts = split_frame(cells_frame(counts), make_config())
    assert stratum_counts(parts["train"]) == {
        ("M", "no"): 350,
        ("F", "no"): 210,
        ("F", "yes"): 140,
    }
    for name in ("validation", "test"):
        assert stratum_counts(parts[name]) == {
            ("M", "no"): 75,
            ("F", "no"): 45,
            ("F", "yes"): 30,
        }


def test_disjoint_complete_and_rows_unchanged():
    df = cells_frame(EVEN)
    parts = split_frame(df, make_config(train=0.6, validation=0.2, test=0.2))
    indexes = [set(p.index) for p in parts.values()]
    assert sum(len(i) for i in indexes) == len(df)
    assert set().union(*indexes) == set(df.index)
    for part in parts.values():
        assert list(part.columns) == list(df.columns)
        assert part.dtypes.equals(df.dtypes)
        assert part.index.name == "row_id"
        assert part.index.is_monotonic_increasing  # original order kept
        pd.testing.assert_frame_equal(part, df.loc[part.index])


def test_input_not_modified():
    df = cells_frame(EVEN)
    before = df.copy()
    split_frame(df, make_config(train=0.6, validation=0.2, test=0.2))
    pd.testing.assert_frame_equal(df, before)


def test_same_seed_same_split_other_seed_other_split():
    df = cells_frame(EVEN)

    def indexes(seed: int) -> list[list[int]]:
        config = make_config(train=0.6, validation=0.2, test=0.2, seed=seed)
        return [list(p.index) for p in split_frame(df, config).values()]

    assert indexes(7) == indexes(7)
    assert indexes(7) != indexes(8)


@pytest.mark.parametrize(
    ("fractions", "sizes"),
    [
        ({"train": 0.8, "validation": 0.0, "test": 0.2}, (32, 0, 8)),
        ({"train": 0.8, "validation": 0.2, "test": 0.0}, (32, 8, 0)),
        ({"train": 1.0, "validation": 0.0, "test": 0.0}, (40, 0, 0)),
    ],
)
def test_zero_fraction_gives_empty_frame_with_same_columns(fractions, sizes):
    df = cells_frame(EVEN)
    parts = split_frame(df, make_config(**fractions))
    assert tuple(len(parts[n]) for n in ("train", "validation", "test")) == sizes
    for part in parts.values():
        assert list(part.columns) == list(df.columns)
        assert part.dtypes.equals(df.dtypes)


def test_too_small_stratum_is_named_with_a_fix():
    # 100 rows at 0.7 / 0.15 / 0.15: validation and test get 15 rows, so a stratum
    # needs ceil(100 / 15) = 7 rows; (F, yes) has 4.
    counts = {("M", "no"): 60, ("M", "yes"): 20, ("F", "no"): 16, ("F", "yes"): 4}
    with pytest.raises(InputError) as info:
        split_frame(cells_frame(counts), make_config())
    message = str(info.value)
    assert "stratum label=positive, sex=F has 4 rows" in message
    assert "at least 7 rows" in message
    assert "label=negative, sex=F has 16" in message  # the next smallest
    assert "split.stratify: [label]" in message
    assert "merge rare values" in message
    assert "Traceback" not in message


def test_advice_fits_the_keys_and_missing_values():
    # Stratified on the label alone, "stratify on fewer keys" is no advice.
    counts = {("M", "no"): 95, ("M", "yes"): 5}
    with pytest.raises(InputError) as info:
        split_frame(cells_frame(counts), make_config(stratify=["label"]))
    assert "stratify on fewer keys" not in str(info.value)
    # A stratum of rows with a missing facet value: fill or drop them.
    frame = cells_frame({("M", "no"): 60, ("M", "yes"): 20, ("F", "no"): 18})
    frame.loc[frame.index[-2:], "sex"] = None
    with pytest.raises(InputError) as info:
        split_frame(frame, make_config())
    assert "sex=<missing> has 2 rows" in str(info.value)
    assert "fill or drop the rows with a missing facet value" in str(info.value)


def test_stratifying_on_label_alone_avoids_the_small_stratum():
    counts = {("M", "no"): 60, ("M", "yes"): 20, ("F", "no"): 16, ("F", "yes"): 4}
    parts = split_frame(cells_frame(counts), make_config(stratify=["label"]))
    # 24 positives: 0.15 * 24 = 3.6 -> validation and test 4 each (of 15), train 16.
    positives = {n: int((p["outcome"] == "yes").sum()) for n, p in parts.items()}
    assert sum(positives.values()) == 24
    assert all(3 <= positives[n] <= 4 for n in ("validation", "test"))


def test_label_stratum_is_the_outcome_not_the_raw_value():
    # Raw values 'hi' (3 rows) and 'top' (7 rows) are both positive: as raw values
    # 'hi' would be too small for 0.6 / 0.2 / 0.2 of 20 rows (needs 5), as an
    # outcome the positive stratum has 10 rows.
    df = pd.DataFrame(
        {
            "outcome": ["hi"] * 3 + ["top"] * 7 + ["low"] * 10,
            "sex": ["F", "M"] * 10,
        }
    )
    config = Config(
        source="memory",
        label={"column": "outcome", "positive": ["hi", "top"]},
        facets=[{"column": "sex"}],
        split={"train": 0.6, "validation": 0.2, "test": 0.2, "stratify": ["label"]},
    )
    parts = split_frame(df, config)
    for name, expected in (("train", 6), ("validation", 2), ("test", 2)):
        assert parts[name]["outcome"].isin(["hi", "top"]).sum() == expected


def test_threshold_facet_stratifies_on_the_boolean():
    # Ages 0..39: > 19 is True for 20 rows, False for 20; 0.5 / 0.25 / 0.25 of 20
    # rows is 10 / 5 / 5 per stratum.
    df = pd.DataFrame({"age": np.arange(40), "outcome": ["yes", "no"] * 20})
    config = Config(
        source="memory",
        label={"column": "outcome", "positive": ["yes"]},
        facets=[{"column": "age", "threshold": 19}],
        split={"train": 0.5, "validation": 0.25, "test": 0.25, "stratify": ["facets"]},
    )
    parts = split_frame(df, config)
    for name, expected in (("train", 10), ("validation", 5), ("test", 5)):
        assert int((parts[name]["age"] > 19).sum()) == expected


def test_missing_values_are_their_own_stratum():
    # 'region' is missing in 10 of 40 rows: 0.6 / 0.2 / 0.2 gives them 6 / 2 / 2.
    df = cells_frame(EVEN)
    df["region"] = pd.array(["north", "south", "east", None] * 10, dtype="str")
    parts = split_frame(
        df, make_config(train=0.6, validation=0.2, test=0.2, stratify=["region"])
    )
    missing = {n: int(p["region"].isna().sum()) for n, p in parts.items()}
    assert missing == {"train": 6, "validation": 2, "test": 2}


def test_too_small_missing_stratum_is_named():
    df = cells_frame(EVEN)
    df["region"] = pd.array(["north"] * 38 + [None] * 2, dtype="str")
    config = make_config(train=0.6, validation=0.2, test=0.2, stratify=["region"])
    with pytest.raises(InputError, match="stratum region=<missing> has 2 rows"):
        split_frame(df, config)


def test_missing_stratify_column_is_named():
    config = make_config(stratify=["label", "region"])
    with pytest.raises(InputError) as info:
        split_frame(cells_frame(EVEN), config)
    assert "split.stratify names column 'region'" in str(info.value)
    assert "'sex', 'age', 'outcome', 'score'" in str(info.value)


def test_too_few_rows_for_a_split():
    # 3 rows: 0.1 * 3 = 0.3 rounds to 0 rows of validation.
    df = pd.DataFrame({"outcome": ["yes", "no", "no"], "sex": ["F", "M", "F"]})
    config = make_config(train=0.8, validation=0.1, test=0.1, stratify=[])
    with pytest.raises(InputError, match="3 rows: too few for a validation split"):
        split_frame(df, config)


FRACTIONS = [(0.7, 0.15, 0.15), (0.8, 0.1, 0.1), (0.6, 0.2, 0.2), (0.5, 0.5, 0.0)]


@settings(max_examples=60, deadline=None)
@given(
    n_rows=st.integers(min_value=20, max_value=400),
    share=st.floats(min_value=0.05, max_value=0.95),
    fractions=st.sampled_from(FRACTIONS),
    seed=st.integers(min_value=0, max_value=2**31 - 1),
)
def test_split_sizes_within_one_row_and_every_row_once(n_rows, share, fractions, seed):
    train, validation, test = fractions
    n_pos = max(1, min(n_rows - 1, int(share * n_rows)))
    df = pd.DataFrame(
        {"outcome": ["yes"] * n_pos + ["no"] * (n_rows - n_pos), "sex": "F"}
    )
    config = make_config(
        train=train, validation=validation, test=test, stratify=["label"], seed=seed
    )
    # Validation and test get round(fraction * rows), train the rest; a stratum
    # needs n_rows / (smallest non-empty split) rows to reach every split.
    n_val, n_test = round(validation * n_rows), round(test * n_rows)
    smallest = min(n for n in (n_rows - n_val - n_test, n_val, n_test) if n > 0)
    if min(n_pos, n_rows - n_pos) * smallest < n_rows:
        with pytest.raises(InputError, match="has .* rows, too few"):
            split_frame(df, config)
        return
    parts = split_frame(df, config)
    for name, fraction in zip(("train", "validation", "test"), fractions, strict=True):
        # one row of rounding, plus float noise in fraction * n_rows (0.7 * 350)
        assert abs(len(parts[name]) - fraction * n_rows) <= 1 + 1e-9
        if fraction > 0:  # every stratum appears in every non-empty split
            assert set(parts[name]["outcome"]) == {"yes", "no"}
    positions = np.concatenate([p.index.to_numpy() for p in parts.values()])
    assert np.array_equal(np.sort(positions), np.arange(n_rows))
