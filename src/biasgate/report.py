"""The readable report (report.md) and the short summary the CLI prints."""

from __future__ import annotations

from typing import Any

from biasgate.config import Config
from biasgate.gate import bound_text

_VERDICT = {
    "passed": "PASSED",
    "warned": "PASSED WITH WARNINGS",
    "failed": "FAILED",
    "pending": "NOT DECIDED",
}


def _fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, str):
        return "inf" if value == "Infinity" else value
    return f"{value:.4f}"


def _values(section: dict[str, Any] | None) -> dict[tuple[str, str, str], Any]:
    if not section:
        return {}
    return {
        (facet, entry["value_or_threshold"], metric["name"]): metric.get("value")
        for facet, entries in section["facets"].items()
        for entry in entries
        for metric in entry["metrics"]
    }


def _limits(config: Config) -> dict[tuple[str, str | None, str], str]:
    limits: dict[tuple[str, str | None, str], str] = {}
    for rule in config.gate.rules:
        value = None if rule.value is None else str(rule.value)
        limits[(rule.facet or "*", value, rule.metric)] = bound_text(rule)
    return limits


def _limit_for(limits: dict, facet: str, value: str, metric: str) -> str:
    for key in ((facet, value, metric), (facet, None, metric), ("*", None, metric)):
        if key in limits:
            return limits[key]
    return ""


def metrics_table(
    config: Config, raw: dict[str, Any], after: dict[str, Any] | None
) -> list[str]:
    """Markdown rows: each metric of each facet value, raw, after rebalancing, limit."""
    before, later, limits = _values(raw), _values(after), _limits(config)
    rows = [
        "| facet | value | n_d | metric | raw data | train, rebalanced | limit |",
        "|---|---|---:|---|---:|---:|---|",
    ]
    for facet, entries in raw["facets"].items():
        for entry in entries:
            value = entry["value_or_threshold"]
            for metric in entry["metrics"]:
                key = (facet, value, metric["name"])
                shown = _fmt(metric.get("value"))
                if metric.get("error"):
                    shown = f"n/a ({metric['error']})"
                rows.append(
                    f"| {facet} | {value} | {entry['counts']['n_d']} | {metric['name']} "
                    f"| {shown} | {_fmt(later.get(key)) if after else ''} "
                    f"| {_limit_for(limits, facet, value, metric['name'])} |"
                )
    return rows


def render_report(
    config: Config,
    run_uri: str,
    gate: dict[str, Any] | None,
    raw: dict[str, Any] | None,
    after: dict[str, Any] | None,
    validation: dict[str, Any] | None,
    rebalance: dict[str, Any] | None,
    source: dict[str, Any] | None,
    error: str | None = None,
) -> str:
    """report.md: verdict first, then the numbers a fairness reviewer reads."""
    lines = [f"# biasgate report: {config.name}", ""]
    if error:
        lines += ["**Verdict: ERROR** (bad input or configuration)", "", f"    {error}", ""]
    elif gate:
        lines += [f"**Verdict: {_VERDICT[gate['verdict']]}** (mode `{gate['mode']}`)", ""]
        for line in gate["violations"]:
            lines.append(f"- violation: {line}")
        for evaluation in (gate["raw"], gate.get("rebalanced_train")):
            for line in (evaluation or {}).get("warnings", []):
                lines.append(f"- warning ({evaluation['evaluated_on']}): {line}")
        lines.append("")
    lines += [f"Run folder: `{run_uri}`", ""]
    if source:
        lines += [
            f"Source: `{source['uri']}` ({source['rows']} rows, {source['bytes']} bytes, "
            f"sha256 `{source['sha256'][:16]}…`)",
            "",
        ]
    if validation is not None:
        stats = validation["statistics"]
        lines += [
            "## Validation",
            "",
            f"{stats['successful']} of {stats['evaluated']} expectations met.",
            "",
        ]
        for result in validation["results"]:
            if not result["success"]:
                lines.append(
                    f"- failed: `{result['expectation_type']}` "
                    f"{result['kwargs'].get('column', '')} "
                    f"(unexpected: {result.get('unexpected_count')})"
                )
        lines.append("")
    if raw:
        label = raw["label"]
        lines += [
            "## Pre-training bias",
            "",
            f"Label `{label}`, positive: `{raw['label_value_or_threshold']}`. "
            "CI > 0: facet d is the smaller group; DPL > 0: facet d gets fewer "
            "positive labels; KL, JS, LP, TVD, KS: 0 means the outcome is distributed "
            "alike in both facets.",
            "",
            *metrics_table(config, raw, after),
            "",
        ]
        missing = {k: v for k, v in raw["rows"]["missing_facet"].items() if v}
        if missing or raw["rows"]["missing_label"]:
            lines += [
                f"Rows left out for a missing value: facet {missing or 'none'}, "
                f"label {raw['rows']['missing_label']}.",
                "",
            ]
    if rebalance:
        lines += [
            "## Rebalancing (training split only)",
            "",
            f"Strategy `{rebalance.get('strategy')}`, target `{rebalance.get('target')}`:"
            f" {rebalance.get('rows_before')} rows before, {rebalance.get('rows_after')} "
            f"after ({rebalance.get('synthetic_rows', 0)} synthetic).",
            "",
        ]
    return "\n".join(lines).rstrip() + "\n"


def summary_lines(gate: dict[str, Any]) -> list[str]:
    """The CLI's closing lines: verdict, then each checked metric beside its limit."""
    lines = [f"gate: {_VERDICT[gate['verdict']]} (mode {gate['mode']})"]
    for evaluation in (gate["raw"], gate.get("rebalanced_train")):
        if not evaluation:
            continue
        lines.append(f"  on {evaluation['evaluated_on']}:")
        lines += [f"    [{c['status']}] {c['message']}" for c in evaluation["checks"]]
    return lines
