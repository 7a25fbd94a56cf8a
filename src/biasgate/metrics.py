"""Pre-training bias metrics (the SageMaker Clarify set) computed from counts.

Every metric takes a :class:`FacetCounts` and returns a float. The counts come from
one pass over three columns (facet, label, group), so they can be summed over chunks
of a file or partitions of a Dask frame without touching the formulas.

Notation: facet *d* is the group under study (rows whose facet value is selected),
facet *a* every other row with a known facet value. ``q = positives / rows`` and
``P = (q, 1 - q)`` is the distribution of the outcome. Logarithms are natural.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


class MetricError(ValueError):
    """A metric is undefined for these counts; the message says why."""


@dataclass(frozen=True)
class FacetCounts:
    """Row counts of one facet split: facet d against facet a.

    ``groups`` holds, for each group of the group variable, the tuple
    ``(negatives in d, negatives, positives in d, positives)``; it is None when no
    group variable is configured.
    """

    n_a: int
    pos_a: int
    n_d: int
    pos_d: int
    groups: tuple[tuple[int, int, int, int], ...] | None = None

    def __post_init__(self) -> None:
        if min(self.n_a, self.pos_a, self.n_d, self.pos_d) < 0:
            raise ValueError(f"counts must not be negative, got {self}")
        if self.pos_a > self.n_a or self.pos_d > self.n_d:
            raise ValueError(f"positives cannot exceed rows, got {self}")


def _require_both_facets(c: FacetCounts) -> None:
    if c.n_d == 0:
        raise MetricError("facet d is empty: no row has the selected facet value")
    if c.n_a == 0:
        raise MetricError(
            "facet a is empty: every row with a known value is in facet d"
        )


def _outcome_distributions(c: FacetCounts) -> tuple[np.ndarray, np.ndarray]:
    _require_both_facets(c)
    q_a, q_d = c.pos_a / c.n_a, c.pos_d / c.n_d
    return np.array([q_a, 1.0 - q_a]), np.array([q_d, 1.0 - q_d])


def _kl(p: np.ndarray, q: np.ndarray) -> float:
    """KL(p || q) with 0 log 0 = 0 and p log(p / 0) = infinity."""
    total = 0.0
    for pi, qi in zip(p, q, strict=True):
        if pi == 0:
            continue
        if qi == 0:
            return math.inf
        total += pi * math.log(pi / qi)
    return total


def class_imbalance(c: FacetCounts) -> float:
    """Class imbalance (CI): ``(n_a - n_d) / (n_a + n_d)``.

    Range [-1, 1]; 0 means no imbalance, positive means facet d is the smaller group.
    """
    _require_both_facets(c)
    return (c.n_a - c.n_d) / (c.n_a + c.n_d)


def positive_proportion_difference(c: FacetCounts) -> float:
    """Difference in positive proportions in labels (DPL): ``q_a - q_d``.

    Range [-1, 1]; 0 means no bias, positive means facet d gets fewer positive labels.
    """
    p_a, p_d = _outcome_distributions(c)
    return float(p_a[0] - p_d[0])


def kl_divergence(c: FacetCounts) -> float:
    """Kullback-Leibler divergence (KL): ``sum P_a log(P_a / P_d)``.

    Range [0, inf); 0 means the outcome is distributed alike. Infinite when facet d
    lacks an outcome that facet a has.
    """
    p_a, p_d = _outcome_distributions(c)
    return _kl(p_a, p_d)


def js_divergence(c: FacetCounts) -> float:
    """Jensen-Shannon divergence (JS): ``(KL(P_a || M) + KL(P_d || M)) / 2``.

    ``M = (P_a + P_d) / 2``. Range [0, log 2]; 0 means no divergence. Symmetric in
    the two facets and finite even when a facet lacks an outcome.
    """
    p_a, p_d = _outcome_distributions(c)
    m = (p_a + p_d) / 2
    return 0.5 * _kl(p_a, m) + 0.5 * _kl(p_d, m)


def lp_norm(c: FacetCounts) -> float:
    """L2 norm of the difference of outcome distributions (LP): ``||P_a - P_d||_2``.

    Range [0, sqrt 2]; 0 means no difference.
    """
    p_a, p_d = _outcome_distributions(c)
    return float(np.sqrt(np.sum((p_a - p_d) ** 2)))


def total_variation_distance(c: FacetCounts) -> float:
    """Total variation distance (TVD): ``||P_a - P_d||_1 / 2``.

    Range [0, 1]; 0 means no difference. Equals ``|DPL|`` for a binary outcome.
    """
    p_a, p_d = _outcome_distributions(c)
    return float(0.5 * np.sum(np.abs(p_a - p_d)))


def kolmogorov_smirnov_distance(c: FacetCounts) -> float:
    """Kolmogorov-Smirnov distance (KS): ``max over outcomes of |P_a - P_d|``.

    Range [0, 1]; 0 means no difference.
    """
    p_a, p_d = _outcome_distributions(c)
    return float(np.max(np.abs(p_a - p_d)))


def conditional_demographic_disparity(c: FacetCounts) -> float:
    """Conditional demographic disparity in labels (CDDL).

    ``sum_g n_g (D_g - A_g) / sum_g n_g`` where, within group g, ``D_g`` is the share
    of facet d among the negative rows and ``A_g`` the share of facet d among the
    positive rows (0 when the group has no such rows). Range [-1, 1]; 0 means no
    disparity, positive means facet d holds more of the rejections than of the
    acceptances once the group variable is accounted for.
    """
    if c.groups is None:
        raise MetricError("no group variable configured (set 'group' to compute CDDL)")
    _require_both_facets(c)
    weighted, total = 0.0, 0
    for neg_d, neg, pos_d, pos in c.groups:
        n_g = neg + pos
        share_rejected = neg_d / neg if neg else 0.0
        share_accepted = pos_d / pos if pos else 0.0
        weighted += n_g * (share_rejected - share_accepted)
        total += n_g
    if total == 0:
        raise MetricError("every row has a missing group value")
    return weighted / total


def disparate_impact(c: FacetCounts) -> float:
    """Disparate impact (DI): ``q_d / q_a``.

    Range [0, inf); 1 means parity, below 1 means facet d gets fewer positive labels.
    """
    p_a, p_d = _outcome_distributions(c)
    if p_a[0] == 0:
        if p_d[0] == 0:
            raise MetricError("undefined: neither facet has a positive label")
        return math.inf
    return float(p_d[0] / p_a[0])


METRIC_FUNCTIONS = {
    "CI": class_imbalance,
    "DPL": positive_proportion_difference,
    "KL": kl_divergence,
    "JS": js_divergence,
    "LP": lp_norm,
    "TVD": total_variation_distance,
    "KS": kolmogorov_smirnov_distance,
    "CDDL": conditional_demographic_disparity,
    "DI": disparate_impact,
}

METRIC_DESCRIPTIONS = {
    "CI": "Class Imbalance (CI)",
    "DPL": "Difference in Positive Proportions in Labels (DPL)",
    "KL": "Kullback-Leibler Divergence (KL)",
    "JS": "Jensen-Shannon Divergence (JS)",
    "LP": "L-p Norm (LP)",
    "TVD": "Total Variation Distance (TVD)",
    "KS": "Kolmogorov-Smirnov Distance (KS)",
    "CDDL": "Conditional Demographic Disparity in Labels (CDDL)",
    "DI": "Disparate Impact (DI)",
}
