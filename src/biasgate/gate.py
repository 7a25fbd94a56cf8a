"""The gate: compare measured metrics with the policy's rules (design §5)."""

from __future__ import annotations

import math
from typing import Any

from biasgate.config import GateRule, GateSpec
from biasgate.errors import ConfigError


def _as_float(value: Any) -> float:
    if value == "Infinity":
        return math.inf
    if value == "-Infinity":
        return -math.inf
    return float(value)


def bound_text(rule: GateRule) -> str:
    """The rule's bound as a reader would write it, e.g. ``|DPL| <= 0.1``."""
    parts = []
    if rule.max_abs is not None:
        parts.append(f"|{rule.metric}| <= {rule.max_abs:g}")
    if rule.min is not None and rule.max is not None:
        parts.append(f"{rule.min:g} <= {rule.metric} <= {rule.max:g}")
    elif rule.max is not None:
        parts.append(f"{rule.metric} <= {rule.max:g}")
    elif rule.min is not None:
        parts.append(f"{rule.metric} >= {rule.min:g}")
    return " and ".join(parts)


def breaks(rule: GateRule, value: float) -> bool:
    """True when ``value`` is outside the rule's bounds."""
    if math.isnan(value):
        return True
    if rule.max_abs is not None and abs(value) > rule.max_abs:
        return True
    if rule.max is not None and value > rule.max:
        return True
    return rule.min is not None and value < rule.min


def _targets(rule: GateRule, section: dict[str, Any]) -> list[tuple[str, dict]]:
    found = []
    for facet, entries in section["facets"].items():
        if rule.facet is not None and facet != rule.facet:
            continue
        for entry in entries:
            if rule.value is None or str(rule.value) == entry["value_or_threshold"]:
                found.append((facet, entry))
    if not found:
        measured = {
            f: [e["value_or_threshold"] for e in es]
            for f, es in section["facets"].items()
        }
        raise ConfigError(
            f"gate rule for {rule.metric} (facet={rule.facet!r}, value={rule.value!r}) "
            f"matches no measured facet value; measured: {measured}"
        )
    return found


def _check(rule: GateRule, facet: str, entry: dict[str, Any]) -> dict[str, Any]:
    metric = next((m for m in entry["metrics"] if m["name"] == rule.metric), None)
    n_d = entry["counts"]["n_d"]
    where = f"{rule.metric} for {facet}={entry['value_or_threshold']}"
    check = {
        "metric": rule.metric,
        "facet": facet,
        "value": entry["value_or_threshold"],
        "metric_value": None if metric is None else metric.get("value"),
        "bound": bound_text(rule),
        "n_d": n_d,
    }
    if n_d < rule.min_group_size:
        return check | {
            "status": "skipped",
            "message": f"{where} not checked: n_d={n_d} is below "
            f"min_group_size={rule.min_group_size}",
        }
    if metric is None or metric.get("value") is None:
        reason = "not measured" if metric is None else metric.get("error", "no value")
        status = "error" if rule.on_error == "fail" else "warned"
        return check | {
            "status": status,
            "message": f"{where} could not be computed ({reason}); the rule has "
            f"on_error: {rule.on_error}",
        }
    value, bound = _as_float(metric["value"]), bound_text(rule)
    if breaks(rule, value):
        return check | {
            "status": "violated",
            "message": f"{where} is {value:.3f}, allowed {bound} (n_d={n_d})",
        }
    return check | {
        "status": "passed",
        "message": f"{where} is {value:.3f}, within {bound} (n_d={n_d})",
    }


def evaluate_gate(section: dict[str, Any], spec: GateSpec, evaluated_on: str) -> dict:
    """Apply every rule to every facet value it covers.

    Returns ``{"evaluated_on", "passed", "checks", "violations", "warnings"}``:
    violations are the broken rules and the metrics that could not be computed under
    ``on_error: fail``; warnings are skipped small groups and ``on_error: warn``.
    """
    checks = [
        _check(rule, facet, entry)
        for rule in spec.rules
        for facet, entry in _targets(rule, section)
    ]
    violations = [c["message"] for c in checks if c["status"] in ("violated", "error")]
    warnings = [c["message"] for c in checks if c["status"] in ("skipped", "warned")]
    return {
        "evaluated_on": evaluated_on,
        "passed": not violations,
        "checks": checks,
        "violations": violations,
        "warnings": warnings,
    }


def gate_document(
    spec: GateSpec, raw: dict[str, Any], rebalanced: dict[str, Any] | None
) -> dict[str, Any]:
    """gate.json: the verdict of the mode, and every evaluation behind it.

    ``fail`` and ``warn`` decide on the raw data; ``mitigate`` on the rebalanced
    training split (the raw evaluation is kept for the record).
    """
    deciding = rebalanced if spec.mode == "mitigate" else raw
    if deciding is None:
        verdict = "failed" if not raw["passed"] else "pending"
    elif deciding["passed"]:
        verdict = "passed"
    else:
        verdict = "warned" if spec.mode == "warn" else "failed"
    return {
        "mode": spec.mode,
        "verdict": verdict,
        "passed": verdict in ("passed", "warned"),
        "decided_on": None if deciding is None else deciding["evaluated_on"],
        "violations": [] if deciding is None else deciding["violations"],
        "rules": [
            rule.model_dump(mode="json", exclude_none=True) for rule in spec.rules
        ],
        "raw": raw,
        "rebalanced_train": rebalanced,
    }
