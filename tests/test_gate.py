"""The gate on hand-built analysis sections: bounds, skips, errors, verdicts."""

from __future__ import annotations

from typing import Any

import pytest

from biasgate.config import GateRule, GateSpec
from biasgate.errors import ConfigError
from biasgate.gate import evaluate_gate, gate_document


def _entry(value: str, n_d: int, **metrics: Any) -> dict[str, Any]:
    """One facet value of an analysis section; a metric given as None has an error."""
    entries = []
    for name, metric_value in metrics.items():
        item: dict[str, Any] = {
            "name": name,
            "description": name,
            "value": metric_value,
        }
        if metric_value is None:
            item["error"] = "facet d is empty: no row has the selected facet value"
        entries.append(item)
    counts = {"n_a": 1000, "n_d": n_d, "pos_a": 300, "pos_d": 100}
    return {"value_or_threshold": value, "metrics": entries, "counts": counts}


def _section() -> dict[str, Any]:
    return {
        "label": "income",
        "label_value_or_threshold": ">50K",
        "facets": {
            "sex": [_entry("Female", 10771, CI=0.338411, DPL=0.196276, KL=0.141185)],
            "race": [
                _entry("Black", 3124, CI=0.808114, DPL=0.129339, KL="Infinity"),
                _entry("Other", 12, CI=0.983354, DPL=0.149805, KL=None),
            ],
        },
    }


def _gate(*rules: dict[str, Any], mode: str = "fail") -> GateSpec:
    return GateSpec(mode=mode, rules=[GateRule(**rule) for rule in rules])


def _statuses(result: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [(c["facet"], c["value"], c["status"]) for c in result["checks"]]


# --------------------------------------------------------------- bounds


def test_violation_message_format() -> None:
    spec = _gate({"metric": "DPL", "facet": "sex", "max_abs": 0.1})
    result = evaluate_gate(_section(), spec, "raw")
    assert result["violations"] == [
        "DPL for sex=Female is 0.196, allowed |DPL| <= 0.1 (n_d=10771)"
    ]
    assert result["passed"] is False
    assert result["evaluated_on"] == "raw"


def test_max_abs_checks_every_facet_value() -> None:
    result = evaluate_gate(_section(), _gate({"metric": "DPL", "max_abs": 0.14}), "raw")
    assert _statuses(result) == [
        ("sex", "Female", "violated"),
        ("race", "Black", "passed"),
        ("race", "Other", "violated"),
    ]


def test_max_abs_uses_the_absolute_value() -> None:
    section = {"facets": {"race": [_entry("White", 27816, DPL=-0.103278)]}}
    result = evaluate_gate(section, _gate({"metric": "DPL", "max_abs": 0.1}), "raw")
    assert result["violations"] == [
        "DPL for race=White is -0.103, allowed |DPL| <= 0.1 (n_d=27816)"
    ]


def test_max() -> None:
    spec = _gate({"metric": "CI", "max": 0.9})
    result = evaluate_gate(_section(), spec, "raw")
    assert _statuses(result) == [
        ("sex", "Female", "passed"),
        ("race", "Black", "passed"),
        ("race", "Other", "violated"),
    ]
    assert result["violations"] == [
        "CI for race=Other is 0.983, allowed CI <= 0.9 (n_d=12)"
    ]


def test_min() -> None:
    spec = _gate({"metric": "CI", "facet": "race", "min": 0.85})
    result = evaluate_gate(_section(), spec, "raw")
    assert result["violations"] == [
        "CI for race=Black is 0.808, allowed CI >= 0.85 (n_d=3124)"
    ]


def test_infinite_value_breaks_max() -> None:
    spec = _gate({"metric": "KL", "facet": "race", "value": "Black", "max": 0.05})
    result = evaluate_gate(_section(), spec, "raw")
    assert result["violations"] == [
        "KL for race=Black is inf, allowed KL <= 0.05 (n_d=3124)"
    ]


def test_all_within_bounds_passes() -> None:
    spec = _gate({"metric": "CI", "max_abs": 0.99}, {"metric": "DPL", "max": 0.2})
    result = evaluate_gate(_section(), spec, "raw")
    assert result["passed"] is True
    assert result["violations"] == []
    assert {c["status"] for c in result["checks"]} == {"passed"}


# --------------------------------------------------------------- small groups


def test_min_group_size_skips_with_a_warning() -> None:
    spec = _gate(
        {"metric": "DPL", "facet": "race", "max_abs": 0.1, "min_group_size": 30}
    )
    result = evaluate_gate(_section(), spec, "raw")
    assert _statuses(result) == [
        ("race", "Black", "violated"),
        ("race", "Other", "skipped"),
    ]
    assert result["warnings"] == [
        "DPL for race=Other not checked: n_d=12 is below min_group_size=30"
    ]
    assert len(result["violations"]) == 1


# --------------------------------------------------------------- metrics without value


def test_uncomputed_metric_fails_by_default() -> None:
    spec = _gate({"metric": "KL", "facet": "race", "value": "Other", "max": 1.0})
    result = evaluate_gate(_section(), spec, "raw")
    assert result["passed"] is False
    assert _statuses(result) == [("race", "Other", "error")]
    (message,) = result["violations"]
    assert message.startswith(
        "KL for race=Other could not be computed (facet d is empty"
    )
    assert "on_error: fail" in message


def test_uncomputed_metric_warns_with_on_error_warn() -> None:
    rule = {"metric": "KL", "facet": "race", "value": "Other", "max": 1.0}
    result = evaluate_gate(_section(), _gate({**rule, "on_error": "warn"}), "raw")
    assert result["passed"] is True
    assert _statuses(result) == [("race", "Other", "warned")]
    assert result["violations"] == []
    (message,) = result["warnings"]
    assert "could not be computed" in message and "on_error: warn" in message


def test_unmeasured_metric_is_an_error() -> None:
    # JS is not in the section at all.
    spec = _gate({"metric": "JS", "facet": "sex", "max": 0.1})
    result = evaluate_gate(_section(), spec, "raw")
    assert result["violations"] == [
        "JS for sex=Female could not be computed (not measured); the rule has "
        "on_error: fail"
    ]


# --------------------------------------------------------------- rule targets


def test_rule_filtered_by_facet() -> None:
    result = evaluate_gate(
        _section(), _gate({"metric": "CI", "facet": "sex", "max": 1}), "raw"
    )
    assert _statuses(result) == [("sex", "Female", "passed")]


def test_rule_filtered_by_facet_and_value() -> None:
    spec = _gate({"metric": "DPL", "facet": "race", "value": "Black", "max_abs": 0.1})
    result = evaluate_gate(_section(), spec, "raw")
    assert _statuses(result) == [("race", "Black", "violated")]


@pytest.mark.parametrize(
    "rule",
    [
        {"metric": "DPL", "facet": "age", "max_abs": 0.1},
        {"metric": "DPL", "facet": "race", "value": "Purple", "max_abs": 0.1},
    ],
    ids=["facet", "value"],
)
def test_rule_matching_nothing_is_a_config_error(rule: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match="matches no measured facet value"):
        evaluate_gate(_section(), _gate(rule), "raw")


# --------------------------------------------------------------- verdicts


def _raw(passed: bool) -> dict[str, Any]:
    bound = 0.5 if passed else 0.1
    return evaluate_gate(_section(), _gate({"metric": "DPL", "max_abs": bound}), "raw")


def _rebalanced(passed: bool) -> dict[str, Any]:
    bound = 0.5 if passed else 0.1
    return evaluate_gate(
        _section(), _gate({"metric": "DPL", "max_abs": bound}), "rebalanced_train"
    )


@pytest.mark.parametrize(
    ("mode", "raw_passes", "rebalanced_passes", "verdict", "passed"),
    [
        ("fail", True, None, "passed", True),
        ("fail", False, None, "failed", False),
        ("warn", True, None, "passed", True),
        ("warn", False, None, "warned", True),
        ("mitigate", False, True, "passed", True),
        ("mitigate", True, False, "failed", False),
        ("mitigate", False, None, "failed", False),
        ("mitigate", True, None, "pending", False),
    ],
)
def test_gate_document_verdict(
    mode: str,
    raw_passes: bool,
    rebalanced_passes: bool | None,
    verdict: str,
    passed: bool,
) -> None:
    spec = _gate({"metric": "DPL", "max_abs": 0.1}, mode=mode)
    raw = _raw(raw_passes)
    rebalanced = None if rebalanced_passes is None else _rebalanced(rebalanced_passes)
    doc = gate_document(spec, raw, rebalanced)
    assert doc["mode"] == mode
    assert doc["verdict"] == verdict
    assert doc["passed"] is passed
    assert doc["raw"] is raw
    assert doc["rebalanced_train"] is rebalanced
    assert doc["rules"] == [
        {"metric": "DPL", "max_abs": 0.1, "min_group_size": 0, "on_error": "fail"}
    ]


def test_mitigate_decides_on_the_rebalanced_split() -> None:
    spec = _gate({"metric": "DPL", "max_abs": 0.1}, mode="mitigate")
    doc = gate_document(spec, _raw(False), _rebalanced(False))
    assert doc["decided_on"] == "rebalanced_train"
    assert doc["violations"] == _rebalanced(False)["violations"]


def test_warn_keeps_the_violations() -> None:
    spec = _gate({"metric": "DPL", "max_abs": 0.1}, mode="warn")
    doc = gate_document(spec, _raw(False), None)
    assert doc["decided_on"] == "raw"
    assert (
        "DPL for sex=Female is 0.196, allowed |DPL| <= 0.1 (n_d=10771)"
        in (doc["violations"])
    )
