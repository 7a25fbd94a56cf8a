"""The run configuration: one YAML file per dataset, validated before any work starts.

Every limit is declared once, here, so that a bad key fails with its path
(``gate.rules.0.max_abs``) before any data is read. SageMaker Clarify's
``analysis_config.json`` is accepted too and translated into the same model.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
    model_validator,
)

from biasgate.errors import ConfigError

#: A label or facet value as written in the config: compared with the column's
#: values as they are, never converted (``"1"`` does not match the integer 1).
Scalar = StrictBool | StrictInt | StrictFloat | StrictStr

METRICS = ("CI", "DPL", "KL", "JS", "LP", "TVD", "KS", "CDDL", "DI")
DEFAULT_METRICS = ["CI", "DPL", "KL", "JS", "LP", "TVD", "KS", "CDDL"]
STRATEGIES = (
    "none",
    "random_over",
    "random_under",
    "smote",
    "smotenc",
    "smoten",
    "adasyn",
    "borderline_smote",
    "smote_tomek",
    "smote_enn",
)
MetricName = Literal["CI", "DPL", "KL", "JS", "LP", "TVD", "KS", "CDDL", "DI"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LabelSpec(_Model):
    """The outcome column: positive means a value in ``positive`` or > ``threshold``."""

    column: str = Field(min_length=1)
    positive: list[Scalar] | None = Field(default=None, min_length=1)
    threshold: StrictInt | StrictFloat | None = None

    @model_validator(mode="after")
    def _one_of(self) -> LabelSpec:
        if (self.positive is None) == (self.threshold is None):
            raise ValueError(
                f"label '{self.column}' needs exactly one of 'positive' (a list of "
                "values) or 'threshold' (positive means value > threshold)"
            )
        return self

    def describe(self) -> str | float:
        """Clarify's ``label_value_or_threshold`` text."""
        if self.threshold is not None:
            return self.threshold
        return ",".join(str(v) for v in self.positive or [])


class FacetSpec(_Model):
    """A sensitive column; facet d is ``values``, ``> threshold`` or each value."""

    column: str = Field(min_length=1)
    values: list[Scalar] | None = Field(default=None, min_length=1)
    threshold: StrictInt | StrictFloat | None = None

    @model_validator(mode="after")
    def _at_most_one(self) -> FacetSpec:
        if self.values is not None and self.threshold is not None:
            raise ValueError(
                f"facet '{self.column}' takes 'values' or 'threshold', not both"
            )
        return self


class GateRule(_Model):
    """One policy rule: a metric compared with a bound, for all or some facets."""

    metric: MetricName
    max_abs: float | None = Field(default=None, ge=0)
    max: float | None = None
    min: float | None = None
    min_group_size: int = Field(default=0, ge=0)
    on_error: Literal["fail", "warn"] = "fail"
    facet: str | None = None
    value: Scalar | None = None

    @model_validator(mode="after")
    def _has_bound(self) -> GateRule:
        if self.max_abs is None and self.max is None and self.min is None:
            raise ValueError(
                f"rule for {self.metric} needs a bound: max_abs, max or min"
            )
        if self.value is not None and self.facet is None:
            raise ValueError("a rule with 'value' also needs 'facet'")
        return self


class GateSpec(_Model):
    mode: Literal["fail", "warn", "mitigate"] = "fail"
    rules: list[GateRule] = Field(default_factory=list)


class SplitSpec(_Model):
    """Fractions of the three splits, stratification keys and seed."""

    train: float = Field(default=0.7, gt=0, le=1)
    validation: float = Field(default=0.15, ge=0, lt=1)
    test: float = Field(default=0.15, ge=0, lt=1)
    #: "label", "facets" (every facet column) or column names.
    stratify: list[str] = Field(default_factory=lambda: ["label", "facets"])
    seed: int = 42

    @model_validator(mode="after")
    def _sums_to_one(self) -> SplitSpec:
        total = self.train + self.validation + self.test
        if abs(total - 1.0) > 1e-9:
            raise ValueError(
                f"train + validation + test must be 1, got {total:g} "
                f"({self.train:g} + {self.validation:g} + {self.test:g})"
            )
        return self


class RebalanceSpec(_Model):
    strategy: Literal[STRATEGIES] = "none"  # type: ignore[valid-type]
    #: "label" balances outcomes; "facet_label" every facet x outcome cell.
    target: Literal["label", "facet_label"] = "facet_label"
    #: Facet columns whose cells are balanced (default: every configured facet).
    facets: list[str] | None = None
    k_neighbors: int = Field(default=5, ge=1)
    seed: int = 42
    #: Name of a boolean column added to the training split, True on synthetic rows.
    mark_synthetic: str | None = None


class IOSpec(_Model):
    """Retries of the I/O steps (ingest and publish) with exponential back-off."""

    retries: int = Field(default=3, ge=0, le=20)
    retry_delay_seconds: float = Field(default=1.0, ge=0, le=600)
    backoff: float = Field(default=2.0, ge=1, le=10)

    def delays(self) -> list[float]:
        return [self.retry_delay_seconds * self.backoff**i for i in range(self.retries)]


class Config(_Model):
    """A resolved configuration; relative paths are already made absolute."""

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")] = "dataset"
    source: str = Field(min_length=1)
    read: dict[str, Any] = Field(default_factory=dict)
    storage_options: dict[str, Any] = Field(default_factory=dict)
    label: LabelSpec
    facets: list[FacetSpec] = Field(min_length=1)
    group: str | None = None
    metrics: list[MetricName] = Field(default_factory=lambda: list(DEFAULT_METRICS))
    expectations: str | None = None
    gate: GateSpec = Field(default_factory=GateSpec)
    split: SplitSpec = Field(default_factory=SplitSpec)
    rebalance: RebalanceSpec = Field(default_factory=RebalanceSpec)
    output: str = "runs"
    io: IOSpec = Field(default_factory=IOSpec)

    @model_validator(mode="after")
    def _consistent(self) -> Config:
        columns = [f.column for f in self.facets]
        if len(set(columns)) != len(columns):
            raise ValueError(f"facets name a column twice: {columns}")
        if self.label.column in columns:
            raise ValueError(f"'{self.label.column}' is both the label and a facet")
        for rule in self.gate.rules:
            if rule.facet is not None and rule.facet not in columns:
                raise ValueError(
                    f"gate rule for {rule.metric} names facet '{rule.facet}', "
                    f"which is not among the facets {columns}"
                )
        for col in self.rebalance.facets or []:
            if col not in columns:
                raise ValueError(
                    f"rebalance.facets names '{col}', which is not among the "
                    f"facets {columns}"
                )
        return self

    @property
    def facet_columns(self) -> list[str]:
        return [f.column for f in self.facets]

    @property
    def measured_metrics(self) -> list[str]:
        """``metrics`` plus any metric a gate rule needs, in the canonical order."""
        wanted = set(self.metrics) | {rule.metric for rule in self.gate.rules}
        return [name for name in METRICS if name in wanted]

    def redacted(self) -> dict[str, Any]:
        """The config as a dict with every storage option value hidden."""
        data = self.model_dump(mode="json")
        data["storage_options"] = {k: "***" for k in self.storage_options}
        return data


# ------------------------------------------------------------------ flow parameters


def _check_override(item: str) -> str:
    key, sep, _ = item.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"expected key=value (e.g. gate.mode=warn), got {item!r}")
    return item


#: Path or URI of a YAML config (or Clarify analysis_config.json), as a flow parameter.
#: A relative path is relative to the working directory of the run.
ConfigPath = Annotated[StrictStr, Field(min_length=1)]

#: The config itself as a flow parameter; its keys are checked by :func:`load_config`,
#: which names the path of a bad key.
InlineConfig = dict[StrictStr, Any]

#: One ``key.sub=value`` change to the config (``biasgate run --set``). The pattern is
#: only written into the parameter schema, so that a server enforcing the schema
#: rejects a malformed override when the run is created; a run started without that
#: check fails in Prefect's parameter validation with the message above.
Override = Annotated[
    StrictStr,
    AfterValidator(_check_override),
    Field(json_schema_extra={"pattern": r"^\s*[^=\s][^=]*="}),
]

#: ``--output`` as a flow parameter: a local folder or an s3:// prefix.
OutputLocation = Annotated[StrictStr, Field(min_length=1)]


# --------------------------------------------------------------------------- loading


def _is_uri(text: str) -> bool:
    return bool(re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", text))


def resolve_path(text: str, base: Path | None) -> str:
    """Make a relative local path absolute against ``base``; URIs pass through."""
    if _is_uri(text) or base is None:
        return text
    path = Path(text).expanduser()
    return str(path if path.is_absolute() else (base / path).resolve())


def _parse_override(item: str) -> tuple[list[str], Any]:
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(
            f"--set expects key=value (e.g. gate.mode=warn), got {item!r}"
        )
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as err:
        raise ConfigError(f"--set {key}: value {raw!r} is not valid YAML") from err
    return key.strip().split("."), value


def apply_overrides(
    data: dict[str, Any], overrides: list[str] | None
) -> dict[str, Any]:
    """Apply ``key.sub=value`` overrides (values parsed as YAML) to a raw config."""
    for item in overrides or []:
        path, value = _parse_override(item)
        node: Any = data
        for i, part in enumerate(path[:-1]):
            where = ".".join(path[: i + 1])
            if isinstance(node, list):
                if not part.isdigit() or int(part) >= len(node):
                    raise ConfigError(f"--set {item}: no list item '{where}'")
                node = node[int(part)]
            elif isinstance(node, dict):
                node = node.setdefault(part, {})
            else:
                raise ConfigError(f"--set {item}: '{where}' is not a mapping")
        last = path[-1]
        if isinstance(node, list):
            if not last.isdigit() or int(last) >= len(node):
                raise ConfigError(f"--set {item}: no list item '{'.'.join(path)}'")
            node[int(last)] = value
        elif isinstance(node, dict):
            node[last] = value
        else:
            raise ConfigError(f"--set {item}: '{'.'.join(path[:-1])}' is not a mapping")
    return data


def _format_validation_error(err: ValidationError, origin: str) -> str:
    lines = [f"invalid configuration in {origin}:"]
    for problem in err.errors():
        where = ".".join(str(p) for p in problem["loc"]) or "(top level)"
        if problem["type"] == "extra_forbidden":
            lines.append(f"  {where}: unknown key (check its spelling)")
        elif problem["type"] == "missing":
            lines.append(f"  {where}: required key is missing")
        else:
            hint = ""
            if problem["type"] == "string_type" and isinstance(problem["input"], bool):
                hint = " (YAML reads an unquoted yes/no/on/off as true/false: quote it)"
            lines.append(f"  {where}: {problem['msg']}{hint}")
    return "\n".join(lines)


def _from_clarify(data: dict[str, Any], stem: str) -> dict[str, Any]:
    """Translate SageMaker Clarify's analysis_config.json into biasgate's keys.

    A list in ``label_values_or_threshold`` / ``value_or_threshold`` is a list of
    values; a bare number is a threshold. Clarify's own type guessing is not copied.
    """
    known = {
        "dataset_type", "dataset_uri", "headers", "label", "label_values_or_threshold",
        "facet", "group_variable", "methods", "probability_threshold",
        "joinsource_name_or_index", "predictor", "excluded_columns",
    }  # fmt: skip
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"analysis_config: unknown key(s) {unknown}")

    def outcome(value: Any) -> dict[str, Any]:
        if isinstance(value, list):
            return {"positive": value}
        return {"threshold": value}

    label = {
        "column": data.get("label"),
        **outcome(data.get("label_values_or_threshold")),
    }
    facets = []
    headers = data.get("headers") or []

    def column(name_or_index: Any, where: str) -> Any:
        """Clarify allows a column's position; biasgate needs its name."""
        if not isinstance(name_or_index, int) or isinstance(name_or_index, bool):
            return name_or_index
        if 0 <= name_or_index < len(headers):
            return headers[name_or_index]
        raise ConfigError(
            f"analysis_config: {where} is the column index {name_or_index}; biasgate "
            "needs column names: give 'headers' (the column names) or the name itself"
        )

    label["column"] = column(label["column"], "label")
    for i, facet in enumerate(data.get("facet") or []):
        spec: dict[str, Any] = {
            "column": column(facet.get("name_or_index"), f"facet.{i}.name_or_index")
        }
        if facet.get("value_or_threshold") is not None:
            value = facet["value_or_threshold"]
            spec.update(
                {"values": value} if isinstance(value, list) else {"threshold": value}
            )
        facets.append(spec)
    out: dict[str, Any] = {"name": stem, "label": label, "facets": facets}
    if data.get("dataset_uri"):
        out["source"] = data["dataset_uri"]
    if data.get("group_variable") is not None:
        out["group"] = column(data["group_variable"], "group_variable")
    if data.get("headers"):
        out["read"] = {"header": None, "names": data["headers"]}
    methods = ((data.get("methods") or {}).get("pre_training_bias") or {}).get(
        "methods"
    )
    if methods and methods != "all":
        out["metrics"] = (
            [m.strip() for m in methods.split(",")]
            if isinstance(methods, str)
            else methods
        )
    return out


def load_config(
    source: str | Path | dict[str, Any],
    overrides: list[str] | None = None,
    *,
    output: str | None = None,
) -> Config:
    """Read, translate, override and validate a configuration.

    Parameters
    ----------
    source
        Path of a YAML file, a Clarify ``analysis_config.json``, or the config as a
        mapping (a flow parameter). Relative paths in a file are relative to the file.
    overrides
        ``key=value`` strings (``--set``); values are parsed as YAML.
    output
        ``--output``: replaces the configured output location.
    """
    base: Path | None = Path.cwd()
    if isinstance(source, dict):
        data, origin = json.loads(json.dumps(source)), "the inline configuration"
    else:
        path = Path(source).expanduser()
        origin = str(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError as err:
            raise ConfigError(f"config file {path} does not exist") from err
        except OSError as err:
            raise ConfigError(f"config file {path} cannot be read: {err}") from err
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise ConfigError(f"config file {path} is not valid YAML: {err}") from err
        if not isinstance(data, dict):
            raise ConfigError(f"config file {path} must hold a mapping of keys")
        if "label_values_or_threshold" in data or "methods" in data:
            data = _from_clarify(data, path.stem.replace("analysis_config", "clarify"))
        base = path.resolve().parent
    if overrides:
        origin += " with the --set overrides"
    data = apply_overrides(data, overrides)
    if output is not None:
        data["output"] = output
    for key in ("source", "expectations"):
        if isinstance(data.get(key), str) and key not in _override_keys(overrides):
            data[key] = resolve_path(data[key], base)
        elif isinstance(data.get(key), str):
            data[key] = resolve_path(data[key], Path.cwd())
    if isinstance(data.get("output"), str):
        from_file = output is None and "output" not in _override_keys(overrides)
        data["output"] = resolve_path(data["output"], base if from_file else Path.cwd())
    try:
        return Config.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format_validation_error(err, origin)) from None


def _override_keys(overrides: list[str] | None) -> set[str]:
    return {item.partition("=")[0].strip() for item in overrides or []}
