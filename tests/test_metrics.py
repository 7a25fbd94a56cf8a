"""Bias metrics from counts: Clarify's test vectors, exact small cases, properties."""

from __future__ import annotations

import math
from fractions import Fraction

import pandas as pd
import pytest
from conftest import load_clarify_vectors
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from biasgate import analysis
from biasgate.config import DEFAULT_METRICS, FacetSpec, LabelSpec
from biasgate.metrics import (
    METRIC_FUNCTIONS,
    FacetCounts,
    MetricError,
    class_imbalance,
    conditional_demographic_disparity,
    disparate_impact,
    js_divergence,
    kl_divergence,
    kolmogorov_smirnov_distance,
    lp_norm,
    positive_proportion_difference,
    total_variation_distance,
)

#: Absolute tolerance for metric values computed in floating point.
TOL = 1e-9

PROPERTY_SETTINGS = settings(max_examples=60, deadline=None)

# --------------------------------------------------------------- Clarify test vectors

VECTORS = load_clarify_vectors()
VECTOR_CASES = [
    pytest.param(case, value, id=f"{case['name']}-{value}")
    for case in VECTORS
    for value in case["facets"]
]


def _entry(section: dict, column: str, value: str) -> dict:
    matches = [e for e in section["facets"][column] if e["value_or_threshold"] == value]
    assert len(matches) == 1, section["facets"][column]
    return matches[0]


@pytest.mark.parametrize(("case", "value"), VECTOR_CASES)
def test_clarify_vector_through_analyze(case: dict, value: str) -> None:
    frame = pd.DataFrame(case["columns"])
    facet = FacetSpec(**case["facet"])
    section = analysis.analyze(
        frame, LabelSpec(**case["label"]), [facet], case["group"], DEFAULT_METRICS
    )
    entry = _entry(section, facet.column, value)
    got = {m["name"]: m for m in entry["metrics"]}
    expected = case["facets"][value]["expected"]
    for name, want in expected.items():
        if want == "Infinity":
            assert got[name]["value"] == "Infinity", name
        else:
            assert got[name]["value"] == pytest.approx(want, abs=TOL), name
    if case["group"] is None:
        assert got["CDDL"]["value"] is None
        assert "group" in got["CDDL"]["error"]


def test_every_vector_value_is_measured() -> None:
    # One-vs-rest must measure exactly the facet values the vectors list, no more.
    for case in VECTORS:
        frame = pd.DataFrame(case["columns"])
        facet = FacetSpec(**case["facet"])
        section = analysis.analyze(
            frame, LabelSpec(**case["label"]), [facet], case["group"], ["CI"]
        )
        measured = {e["value_or_threshold"] for e in section["facets"][facet.column]}
        assert measured == set(case["facets"]), case["name"]


# --------------------------------------------------------------- exact small cases

# Facet a: 4 rows, 3 positive; facet d: 2 rows, 1 positive.
# Group 1 holds d (1 negative, 1 positive) and a (2 positive); group 2 holds a
# (1 negative, 1 positive). Tuples are (negatives in d, negatives, positives in d,
# positives).
SMALL = FacetCounts(n_a=4, pos_a=3, n_d=2, pos_d=1, groups=((1, 1, 1, 3), (0, 1, 0, 1)))
P_A = (Fraction(3, 4), Fraction(1, 4))
P_D = (Fraction(1, 2), Fraction(1, 2))


def _kl_exact(p: tuple[Fraction, ...], q: tuple[Fraction, ...]) -> float:
    return sum(float(pi) * math.log(pi / qi) for pi, qi in zip(p, q, strict=True) if pi)


def test_class_imbalance_exact() -> None:
    assert class_imbalance(SMALL) == pytest.approx(float(Fraction(1, 3)), abs=TOL)


def test_positive_proportion_difference_exact() -> None:
    got = positive_proportion_difference(SMALL)
    assert got == pytest.approx(float(Fraction(1, 4)), abs=TOL)


def test_kl_divergence_exact() -> None:
    # 3/4 log(3/2) + 1/4 log(1/2)
    assert kl_divergence(SMALL) == pytest.approx(_kl_exact(P_A, P_D), abs=TOL)


def test_js_divergence_exact() -> None:
    m = tuple((a + d) / 2 for a, d in zip(P_A, P_D, strict=True))  # (5/8, 3/8)
    want = 0.5 * _kl_exact(P_A, m) + 0.5 * _kl_exact(P_D, m)
    assert js_divergence(SMALL) == pytest.approx(want, abs=TOL)


def test_lp_norm_exact() -> None:
    assert lp_norm(SMALL) == pytest.approx(math.sqrt(2) / 4, abs=TOL)


def test_total_variation_distance_exact() -> None:
    assert total_variation_distance(SMALL) == pytest.approx(0.25, abs=TOL)


def test_kolmogorov_smirnov_distance_exact() -> None:
    assert kolmogorov_smirnov_distance(SMALL) == pytest.approx(0.25, abs=TOL)


def test_conditional_demographic_disparity_exact() -> None:
    # Group 1 (4 rows): D = 1/1, A = 1/3; group 2 (2 rows): D = A = 0.
    # (4 * (1 - 1/3) + 2 * 0) / 6 = 4/9
    got = conditional_demographic_disparity(SMALL)
    assert got == pytest.approx(float(Fraction(4, 9)), abs=TOL)


def test_cddl_group_without_one_outcome_counts_the_other_share() -> None:
    # A group with only negative rows: A_g counts as 0, D_g = 1/2.
    # Group 1: one negative row in d, one in a. Group 2: d has one negative and one
    # positive row, a has two positive rows.
    counts = FacetCounts(
        n_a=3, pos_a=2, n_d=3, pos_d=1, groups=((1, 2, 0, 0), (1, 1, 1, 3))
    )
    # group 1: 2 rows, D = 1/2, A = 0 -> 2 * 1/2 = 1; group 2: 4 rows, D = 1, A = 1/3
    # -> 4 * 2/3 = 8/3; total (1 + 8/3) / 6 = 11/18
    got = conditional_demographic_disparity(counts)
    assert got == pytest.approx(float(Fraction(11, 18)), abs=TOL)


def test_disparate_impact_exact() -> None:
    assert disparate_impact(SMALL) == pytest.approx(float(Fraction(2, 3)), abs=TOL)


def test_disparate_impact_facet_a_without_positives_is_infinite() -> None:
    assert disparate_impact(FacetCounts(n_a=3, pos_a=0, n_d=2, pos_d=1)) == math.inf


def test_disparate_impact_without_any_positive_is_an_error() -> None:
    with pytest.raises(MetricError, match="positive"):
        disparate_impact(FacetCounts(n_a=3, pos_a=0, n_d=2, pos_d=0))


def test_kl_is_infinite_when_facet_d_lacks_an_outcome() -> None:
    # Facet d is all positive; facet a has negatives.
    assert kl_divergence(FacetCounts(n_a=4, pos_a=1, n_d=2, pos_d=2)) == math.inf


def test_identical_distributions_have_no_bias() -> None:
    counts = FacetCounts(n_a=10, pos_a=4, n_d=5, pos_d=2)
    for name in ("DPL", "KL", "JS", "LP", "TVD", "KS"):
        assert METRIC_FUNCTIONS[name](counts) == pytest.approx(0.0, abs=TOL), name
    assert disparate_impact(counts) == pytest.approx(1.0, abs=TOL)


# --------------------------------------------------------------- errors


@pytest.mark.parametrize("name", sorted(METRIC_FUNCTIONS))
def test_empty_facet_d_is_an_error(name: str) -> None:
    counts = FacetCounts(n_a=5, pos_a=2, n_d=0, pos_d=0, groups=((0, 3, 0, 2),))
    with pytest.raises(MetricError, match="facet d is empty"):
        METRIC_FUNCTIONS[name](counts)


@pytest.mark.parametrize("name", sorted(METRIC_FUNCTIONS))
def test_empty_facet_a_is_an_error(name: str) -> None:
    counts = FacetCounts(n_a=0, pos_a=0, n_d=5, pos_d=2, groups=((3, 3, 2, 2),))
    with pytest.raises(MetricError, match="facet a is empty"):
        METRIC_FUNCTIONS[name](counts)


def test_cddl_without_group_variable_is_an_error() -> None:
    with pytest.raises(MetricError, match="group"):
        conditional_demographic_disparity(FacetCounts(n_a=4, pos_a=3, n_d=2, pos_d=1))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n_a": -1, "pos_a": 0, "n_d": 1, "pos_d": 0},
        {"n_a": 2, "pos_a": 3, "n_d": 1, "pos_d": 0},
        {"n_a": 2, "pos_a": 1, "n_d": 1, "pos_d": 2},
    ],
)
def test_inconsistent_counts_are_rejected(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError, match="counts must not be negative|cannot exceed"):
        FacetCounts(**kwargs)


# --------------------------------------------------------------- properties

# One group of the group variable: (neg in d, neg in a, pos in d, pos in a).
_cell = st.integers(min_value=0, max_value=60)
_group = st.tuples(_cell, _cell, _cell, _cell)


@st.composite
def facet_counts(draw: st.DrawFn) -> FacetCounts:
    """Consistent counts with groups; both facets non-empty."""
    groups = draw(st.lists(_group, min_size=1, max_size=5))
    neg_d = sum(g[0] for g in groups)
    neg_a = sum(g[1] for g in groups)
    pos_d = sum(g[2] for g in groups)
    pos_a = sum(g[3] for g in groups)
    assume(neg_d + pos_d > 0 and neg_a + pos_a > 0)
    return FacetCounts(
        n_a=neg_a + pos_a,
        pos_a=pos_a,
        n_d=neg_d + pos_d,
        pos_d=pos_d,
        groups=tuple((nd, nd + na, pd_, pd_ + pa) for nd, na, pd_, pa in groups),
    )


def _swap(c: FacetCounts) -> FacetCounts:
    groups = None
    if c.groups is not None:
        groups = tuple(
            (neg - nd, neg, pos - pd_, pos) for nd, neg, pd_, pos in c.groups
        )
    return FacetCounts(
        n_a=c.n_d, pos_a=c.pos_d, n_d=c.n_a, pos_d=c.pos_a, groups=groups
    )


def _scale(c: FacetCounts, k: int) -> FacetCounts:
    groups = tuple(tuple(k * x for x in g) for g in c.groups or ())
    return FacetCounts(
        n_a=k * c.n_a,
        pos_a=k * c.pos_a,
        n_d=k * c.n_d,
        pos_d=k * c.pos_d,
        groups=groups,
    )


@PROPERTY_SETTINGS
@given(facet_counts())
def test_metric_ranges(c: FacetCounts) -> None:
    assert -1 - TOL <= class_imbalance(c) <= 1 + TOL
    assert -1 - TOL <= positive_proportion_difference(c) <= 1 + TOL
    assert kl_divergence(c) >= -TOL
    assert -TOL <= js_divergence(c) <= math.log(2) + TOL
    assert -TOL <= lp_norm(c) <= math.sqrt(2) + TOL
    assert -TOL <= total_variation_distance(c) <= 1 + TOL
    assert -TOL <= kolmogorov_smirnov_distance(c) <= 1 + TOL
    assert -1 - TOL <= conditional_demographic_disparity(c) <= 1 + TOL


@PROPERTY_SETTINGS
@given(facet_counts())
def test_swapping_facets(c: FacetCounts) -> None:
    s = _swap(c)
    assert class_imbalance(s) == pytest.approx(-class_imbalance(c), abs=TOL)
    got = positive_proportion_difference(s)
    assert got == pytest.approx(-positive_proportion_difference(c), abs=TOL)
    for fn in (js_divergence, lp_norm, total_variation_distance):
        assert fn(s) == pytest.approx(fn(c), abs=TOL), fn.__name__
    got = kolmogorov_smirnov_distance(s)
    assert got == pytest.approx(kolmogorov_smirnov_distance(c), abs=TOL)


@PROPERTY_SETTINGS
@given(facet_counts())
def test_binary_outcome_distances_agree_with_dpl(c: FacetCounts) -> None:
    dpl = abs(positive_proportion_difference(c))
    assert total_variation_distance(c) == pytest.approx(dpl, abs=TOL)
    assert kolmogorov_smirnov_distance(c) == pytest.approx(dpl, abs=TOL)
    assert lp_norm(c) == pytest.approx(math.sqrt(2) * dpl, abs=TOL)


@PROPERTY_SETTINGS
@given(facet_counts())
def test_kl_finite_iff_facet_d_has_every_outcome_of_facet_a(c: FacetCounts) -> None:
    neg_a, neg_d = c.n_a - c.pos_a, c.n_d - c.pos_d
    covered = (c.pos_a == 0 or c.pos_d > 0) and (neg_a == 0 or neg_d > 0)
    assert math.isfinite(kl_divergence(c)) == covered


@PROPERTY_SETTINGS
@given(facet_counts(), st.integers(min_value=2, max_value=1000))
def test_scaling_every_count_changes_no_metric(c: FacetCounts, k: int) -> None:
    scaled = _scale(c, k)
    for name, fn in METRIC_FUNCTIONS.items():
        try:
            want = fn(c)
        except MetricError:
            with pytest.raises(MetricError):
                fn(scaled)
            continue
        got = fn(scaled)
        if math.isinf(want):
            assert got == want, name
        else:
            assert got == pytest.approx(want, abs=TOL), name


_rows = st.lists(
    st.tuples(
        st.sampled_from(["a", "b", "c", None]),
        st.sampled_from([True, False, None]),
        st.sampled_from([0, 1, 2, None]),
    ),
    min_size=1,
    max_size=60,
)


@PROPERTY_SETTINGS
@given(_rows, st.lists(st.integers(min_value=0, max_value=60), max_size=4))
def test_chunk_counts_add_up_to_one_pass(rows: list[tuple], cuts: list[int]) -> None:
    facet = pd.Series([r[0] for r in rows], dtype="str")
    outcome = pd.Series([r[1] for r in rows], dtype="boolean")
    group = pd.Series([r[2] for r in rows], dtype="Int64")
    whole = analysis.count_outcomes(facet, outcome, group)

    bounds = sorted({0, len(rows), *(min(c, len(rows)) for c in cuts)})
    chunks = [
        analysis.count_outcomes(facet[lo:hi], outcome[lo:hi], group[lo:hi])
        for lo, hi in zip(bounds, bounds[1:], strict=False)
    ]
    combined = analysis.combine_counts(chunks)

    assert int(combined["n"].sum()) == len(rows)
    for selected in (["a"], ["b"], ["a", "c"]):
        for with_groups in (True, False):
            one_pass = analysis.facet_counts(whole, selected, with_groups)
            by_chunks = analysis.facet_counts(combined, selected, with_groups)
            assert by_chunks == one_pass
