"""Loading and validating configurations: YAML, --set overrides, Clarify's JSON."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from conftest import ADULT_COLUMNS, EXAMPLES_DIR, REPO_ROOT

from biasgate.config import DEFAULT_METRICS, Config, load_config
from biasgate.errors import ConfigError

EXAMPLE_CONFIGS = sorted(EXAMPLES_DIR.glob("*.yaml"))

MINIMAL = {
    "source": "data.csv",
    "label": {"column": "y", "positive": [1]},
    "facets": [{"column": "sex", "values": ["F"]}],
}


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[..., Path]:
    """Write a mapping as YAML (or JSON for a .json name) into tmp_path."""

    def write(data: dict, name: str = "config.yaml") -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if name.endswith(".json"):
            path.write_text(json.dumps(data), encoding="utf-8")
        else:
            path.write_text(yaml.safe_dump(data), encoding="utf-8")
        return path

    return write


# --------------------------------------------------------------- example configs


def test_there_are_example_configs() -> None:
    assert EXAMPLE_CONFIGS


@pytest.mark.parametrize("path", EXAMPLE_CONFIGS, ids=lambda p: p.name)
def test_example_config_validates(path: Path) -> None:
    config = load_config(path)
    assert config.source == str(REPO_ROOT / "data" / "adult.csv.gz")
    assert Path(config.source).is_file()
    assert config.label.column == "income"
    assert config.label.positive == [">50K"]
    assert config.read["names"] == ADULT_COLUMNS
    assert config.gate.rules


def test_example_config_defaults() -> None:
    config = load_config(EXAMPLES_DIR / "adult.yaml")
    assert config.metrics == DEFAULT_METRICS
    assert [f.column for f in config.facets] == ["sex", "race", "age"]
    assert config.facets[2].threshold == 40
    assert config.gate.mode == "mitigate"


# --------------------------------------------------------------- unknown keys


def test_unknown_top_level_key_names_it(write_config: Callable[..., Path]) -> None:
    path = write_config({**MINIMAL, "labell": "x"})
    with pytest.raises(ConfigError, match=r"labell: unknown key"):
        load_config(path)


def test_unknown_nested_key_names_its_path(write_config: Callable[..., Path]) -> None:
    rules = [{"metric": "DPL", "maxabs": 0.1}]
    path = write_config({**MINIMAL, "gate": {"rules": rules}})
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "gate.rules.0.maxabs: unknown key" in str(info.value)
    assert str(path) in str(info.value)


def test_missing_required_key_is_named(write_config: Callable[..., Path]) -> None:
    data = {k: v for k, v in MINIMAL.items() if k != "facets"}
    with pytest.raises(ConfigError, match=r"facets: required key is missing"):
        load_config(write_config(data))


# --------------------------------------------------------------- cross-field rules


@pytest.mark.parametrize(
    "label",
    [
        {"column": "y", "positive": [1], "threshold": 0.5},
        {"column": "y"},
    ],
    ids=["both", "neither"],
)
def test_label_needs_exactly_one_of_positive_or_threshold(
    write_config: Callable[..., Path], label: dict
) -> None:
    path = write_config({**MINIMAL, "label": label})
    with pytest.raises(ConfigError, match=r"label: .*exactly one of 'positive'"):
        load_config(path)


def test_split_fractions_must_sum_to_one(write_config: Callable[..., Path]) -> None:
    split = {"train": 0.6, "validation": 0.2, "test": 0.1}
    path = write_config({**MINIMAL, "split": split})
    with pytest.raises(ConfigError, match=r"split: .*must be 1, got 0\.9"):
        load_config(path)


# --------------------------------------------------------------- --set overrides


def test_set_gate_mode() -> None:
    config = load_config(EXAMPLES_DIR / "adult.yaml", ["gate.mode=warn"])
    assert config.gate.mode == "warn"


def test_set_split_seed_is_read_as_yaml() -> None:
    config = load_config(EXAMPLES_DIR / "adult.yaml", ["split.seed=7"])
    assert config.split.seed == 7


def test_set_list_item() -> None:
    config = load_config(EXAMPLES_DIR / "adult.yaml", ["gate.rules.0.max_abs=0.2"])
    assert config.gate.rules[0].max_abs == 0.2
    assert config.gate.rules[1].max_abs == 0.5


def test_set_does_not_change_the_file() -> None:
    before = (EXAMPLES_DIR / "adult.yaml").read_bytes()
    load_config(EXAMPLES_DIR / "adult.yaml", ["gate.mode=warn"])
    assert (EXAMPLES_DIR / "adult.yaml").read_bytes() == before


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("gate.mode", r"--set expects key=value"),
        ("=warn", r"--set expects key=value"),
        ("gate.rules.9.max_abs=0.2", r"no list item 'gate\.rules\.9'"),
        ("gate.mode=panic", r"gate\.mode: "),
        ("gate.maxabs=1", r"gate\.maxabs: unknown key"),
    ],
)
def test_bad_set_is_a_config_error(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(EXAMPLES_DIR / "adult.yaml", [override])


# --------------------------------------------------------------- paths


def test_relative_paths_resolve_against_the_config_folder(
    tmp_path: Path,
    write_config: Callable[..., Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = {**MINIMAL, "expectations": "suites/e.json", "output": "../runs"}
    path = write_config(data, "configs/config.yaml")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    config = load_config(path)
    assert config.source == str(tmp_path / "configs" / "data.csv")
    assert config.expectations == str(tmp_path / "configs" / "suites" / "e.json")
    assert config.output == str(tmp_path / "runs")


def test_copied_example_resolves_against_its_new_folder(
    tmp_copy: Callable[..., Path], tmp_path: Path
) -> None:
    config = load_config(tmp_copy(EXAMPLES_DIR / "adult.yaml"))
    assert config.source == str(tmp_path.parent / "data" / "adult.csv.gz")


def test_uri_source_is_kept(write_config: Callable[..., Path]) -> None:
    path = write_config({**MINIMAL, "source": "s3://bucket/key.csv"})
    assert load_config(path).source == "s3://bucket/key.csv"


# --------------------------------------------------------------- Clarify's JSON


@pytest.mark.parametrize(
    ("methods", "metrics"),
    [(["CI", "DPL", "KL"], ["CI", "DPL", "KL"]), ("all", DEFAULT_METRICS)],
    ids=["list", "all"],
)
def test_clarify_analysis_config_translates(
    write_config: Callable[..., Path], methods: object, metrics: list[str]
) -> None:
    clarify = {
        "dataset_type": "text/csv",
        "dataset_uri": "adult.csv",
        "headers": ADULT_COLUMNS,
        "label": "income",
        "label_values_or_threshold": [">50K"],
        "facet": [
            {"name_or_index": "sex", "value_or_threshold": ["Female"]},
            {"name_or_index": "race"},
            {"name_or_index": "age", "value_or_threshold": 40},
        ],
        "group_variable": "education",
        "methods": {"pre_training_bias": {"methods": methods}},
    }
    native = {
        "name": "clarify",
        "source": "adult.csv",
        "read": {"header": None, "names": ADULT_COLUMNS},
        "label": {"column": "income", "positive": [">50K"]},
        "facets": [
            {"column": "sex", "values": ["Female"]},
            {"column": "race"},
            {"column": "age", "threshold": 40},
        ],
        "group": "education",
        "metrics": metrics,
    }
    from_clarify = load_config(write_config(clarify, "analysis_config.json"))
    from_yaml = load_config(write_config(native, "native.yaml"))
    assert isinstance(from_clarify, Config)
    assert from_clarify == from_yaml


def test_clarify_unknown_key_is_named(write_config: Callable[..., Path]) -> None:
    clarify = {
        "label": "y",
        "label_values_or_threshold": [1],
        "facet": [{"name_or_index": "s"}],
        "dataset_uri": "d.csv",
        "probablity_threshold": 0.5,
    }
    with pytest.raises(ConfigError, match="probablity_threshold"):
        load_config(write_config(clarify, "analysis_config.json"))


def test_clarify_column_indexes_map_through_headers(
    write_config: Callable[..., Path],
) -> None:
    clarify = {
        "dataset_uri": "d.csv",
        "headers": ["y", "s", "g"],
        "label": 0,
        "label_values_or_threshold": [1],
        "facet": [{"name_or_index": 1}],
        "group_variable": 2,
    }
    config = load_config(write_config(clarify, "analysis_config.json"))
    assert (config.label.column, config.facet_columns, config.group) == (
        "y",
        ["s"],
        "g",
    )
    del clarify["headers"]
    with pytest.raises(
        ConfigError, match="column index 0; biasgate needs column names"
    ):
        load_config(write_config(clarify, "analysis_config.json"))


def test_unquoted_yes_gets_a_quoting_hint(write_config: Callable[..., Path]) -> None:
    path = write_config({**MINIMAL, "label": {"column": True, "positive": [1]}})
    with pytest.raises(ConfigError, match="label.column: .*quote it"):
        load_config(path)


def test_an_override_error_says_it_came_with_set(
    write_config: Callable[..., Path],
) -> None:
    with pytest.raises(ConfigError, match="with the --set overrides:\n  gate.moed"):
        load_config(write_config(MINIMAL), ["gate.moed=warn"])


# --------------------------------------------------------------- secrets


def test_redacted_hides_storage_option_values(
    write_config: Callable[..., Path],
) -> None:
    secrets = {
        "key": "AKIAEXAMPLEKEY",
        "secret": "s3cr3t-value",
        "token": "session-token-value",
    }
    config = load_config(write_config({**MINIMAL, "storage_options": secrets}))
    assert config.storage_options == secrets
    redacted = config.redacted()
    assert redacted["storage_options"] == {k: "***" for k in secrets}
    text = json.dumps(redacted)
    for value in secrets.values():
        assert value not in text
