"""The readable report (report.md) and the short summary the CLI prints."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from biasgate.storage import redact_uri

if TYPE_CHECKING:
    from biasgate.run import RunRecord

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


def _cell(text: str) -> str:
    """Markdown table cells cannot hold a bare ``|`` (as in ``|DPL| <= 0.1``)."""
    return text.replace("|", "\\|")


def metrics_table(section: dict[str, Any]) -> list[str]:
    """Markdown rows: one row per facet value, one column per metric."""
    first = next(iter(section["facets"].values()))[0]
    names = [m["name"] for m in first["metrics"]]
    rows = [
        "| facet = value | n_d | n_a | " + " | ".join(names) + " |",
        "|---|---:|---:|" + "---:|" * len(names),
    ]
    for facet, entries in section["facets"].items():
        for entry in entries:
            values = [_fmt(m.get("value")) for m in entry["metrics"]]
            counts = entry["counts"]
            rows.append(
                f"| {_cell(facet)} = {_cell(entry['value_or_threshold'])} "
                f"| {counts['n_d']} | {counts['n_a']} | " + " | ".join(values) + " |"
            )
    errors = [
        f"- {facet} = {e['value_or_threshold']}, {m['name']}: {m['error']}"
        for facet, entries in section["facets"].items()
        for e in entries
        for m in e["metrics"]
        if m.get("error")
    ]
    return rows + ([""] + sorted(set(errors)) if errors else [])


def checks_table(gate: dict[str, Any]) -> list[str]:
    """Markdown rows: each rule on each facet value, raw and after rebalancing."""
    after = {
        (c["metric"], c["facet"], c["value"]): c
        for c in (gate.get("rebalanced_train") or {}).get("checks", [])
    }
    rows = [
        "| metric | facet = value | raw data | train, rebalanced | limit | status |",
        "|---|---|---:|---:|---|---|",
    ]
    for check in gate["raw"]["checks"]:
        later = after.get((check["metric"], check["facet"], check["value"]))
        status = (
            check["status"]
            if later is None
            else f"{check['status']} → {later['status']}"
        )
        rows.append(
            f"| {check['metric']} | {_cell(check['facet'])} = {_cell(check['value'])} "
            f"| {_fmt(check['metric_value'])} "
            f"| {_fmt(later['metric_value']) if later else ''} "
            f"| {_cell(check['bound'])} | {status} |"
        )
    return rows


def _verdict(record: RunRecord) -> list[str]:
    if record.status == "error":
        return [
            "**Verdict: ERROR** (bad input or configuration)",
            "",
            f"    {record.error}",
        ]
    gate = record.gate
    if gate is None:
        return []
    notes = [f"- violation: {line}" for line in gate["violations"]]
    for evaluation in (gate["raw"], gate.get("rebalanced_train")):
        for line in (evaluation or {}).get("warnings", []):
            notes.append(f"- warning ({evaluation['evaluated_on']}): {line}")
    verdict = f"**Verdict: {_VERDICT[gate['verdict']]}** (mode `{gate['mode']}`)"
    return [verdict, "", *notes] if notes else [verdict]


def _where(record: RunRecord) -> list[str]:
    lines = [f"Run folder: `{redact_uri(record.run_uri)}`"]
    if record.source:
        src = record.source
        lines += [
            "",
            f"Source: `{src['uri']}` ({src['rows']} rows, {src['bytes']} bytes, "
            f"sha256 `{src['sha256'][:16]}…`)",
        ]
    return lines


def _validation(validation: dict[str, Any] | None) -> list[str]:
    if validation is None:
        return []
    stats = validation["statistics"]
    lines = ["## Validation", "", f"{stats['successful']} of {stats['evaluated']} "
             "expectations met."]  # fmt: skip
    failed = [r for r in validation["results"] if not r["success"]]
    if failed:
        lines.append("")
    for result in failed:
        lines.append(
            f"- failed: `{result['expectation_type']}` "
            f"{result['kwargs'].get('column', '')} "
            f"(unexpected: {result.get('unexpected_count')})"
        )
    return lines


def _raw_bias(raw: dict[str, Any] | None) -> list[str]:
    if not raw:
        return []
    lines = [
        "## Pre-training bias, raw data",
        "",
        f"Label `{raw['label']}`, positive: `{raw['label_value_or_threshold']}`. "
        "CI > 0: facet d is the smaller group; DPL > 0: facet d gets fewer positive "
        "labels; KL, JS, LP, TVD, KS: 0 means the outcome is distributed alike in both "
        "facets; CDDL > 0: facet d holds more of the rejections than of the "
        "acceptances within groups.",
        "",
        *metrics_table(raw),
    ]
    missing = {k: v for k, v in raw["rows"]["missing_facet"].items() if v}
    if missing or raw["rows"]["missing_label"]:
        lines += [
            "",
            f"Rows left out for a missing value: facet {missing or 'none'}, "
            f"label {raw['rows']['missing_label']}.",
        ]
    return lines


#: A rebalanced |CI| or |DPL| this much above the raw one is pointed out in the report.
WORSENED_BY = 0.05


def worsened(raw: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """Facet values whose |CI| or |DPL| grew by more than WORSENED_BY in rebalancing.

    Balancing the cells of one facet can skew another (on Adult, balancing sex x
    income raises DPL for most race values): a reviewer must see that.
    """
    lines = []
    for facet, entries in raw["facets"].items():
        later = {e["value_or_threshold"]: e for e in after["facets"].get(facet, [])}
        for entry in entries:
            value = entry["value_or_threshold"]
            before_values = {m["name"]: m.get("value") for m in entry["metrics"]}
            for metric in later.get(value, {}).get("metrics", []):
                was, now = before_values.get(metric["name"]), metric.get("value")
                if metric["name"] not in ("CI", "DPL") or not all(
                    isinstance(v, float) for v in (was, now)
                ):
                    continue
                if abs(now) - abs(was) > WORSENED_BY:
                    lines.append(
                        f"{metric['name']} for {facet}={value}: {was:.3f} -> {now:.3f}"
                    )
    return lines


def _rebalanced(record: RunRecord) -> list[str]:
    summary, after = record.rebalance, record.after
    if not (summary or after):
        return []
    lines = ["## Training split after rebalancing"]
    if summary:
        lines += [
            "",
            f"Strategy `{summary.get('strategy')}`, target `{summary.get('target')}`: "
            f"{summary.get('rows_before')} rows before, {summary.get('rows_after')} "
            f"after ({summary.get('synthetic_rows', 0)} synthetic). Validation and "
            "test splits keep the real distribution.",
        ]
    if after and record.raw:
        worse = worsened(record.raw, after)
        if worse:
            lines += [
                "",
                f"**Rebalancing made these worse** (|value| up by more than "
                f"{WORSENED_BY}; rebalance.facets or the policy may need them):",
                "",
                *[f"- {line}" for line in worse],
            ]
    if after:
        lines += ["", *metrics_table(after)]
    return lines


def render_report(record: RunRecord) -> str:
    """report.md: verdict first, then the numbers a fairness reviewer reads."""
    policy = []
    if record.gate and record.gate["raw"]["checks"]:
        policy = ["## Policy", "", *checks_table(record.gate)]
    sections = [
        [f"# biasgate report: {record.config.name}"],
        _verdict(record),
        _where(record),
        _validation(record.validation),
        policy,
        _raw_bias(record.raw),
        _rebalanced(record),
    ]
    return "\n\n".join("\n".join(section) for section in sections if section) + "\n"


def summary_lines(gate: dict[str, Any]) -> list[str]:
    """The CLI's closing lines: verdict, then each checked metric beside its limit."""
    lines = [f"gate: {_VERDICT[gate['verdict']]} (mode {gate['mode']})"]
    if not gate["rules"]:
        return [*lines, "  no rules configured: nothing was checked (see gate.rules)"]
    for evaluation in (gate["raw"], gate.get("rebalanced_train")):
        if not evaluation:
            continue
        lines.append(f"  on {evaluation['evaluated_on']}:")
        lines += [f"    [{c['status']}] {c['message']}" for c in evaluation["checks"]]
    return lines
