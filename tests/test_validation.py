"""Tests of biasgate.validation: baseline checks, suite files and the document."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from biasgate.config import Config
from biasgate.errors import ConfigError
from biasgate.validation import failure_summary, validate_frame

REPO = Path(__file__).resolve().parents[1]
ADULT_SUITE = REPO / "expectations" / "adult.json"
ADULT_COLUMNS = [
    "age", "workclass", "fnlwgt", "education", "education-num", "marital-status",
    "occupation", "relationship", "race", "sex", "capital-gain", "capital-loss",
    "hours-per-week", "native-country", "income",
]  # fmt: skip
ADULT_SOURCES = [REPO / "data" / "adult.csv.gz", Path("/work/shared/data/adult.data")]
RESULT_KEYS = {
    "expectation_type", "kwargs", "meta", "success", "unexpected_count",
    "unexpected_percent", "partial_unexpected_list", "exception",
}  # fmt: skip


def make_config(**overrides: Any) -> Config:
    """A small valid config: label y (positive "yes"), facet sex (d = "F")."""
    data: dict[str, Any] = {
        "source": "unused.csv",
        "label": {"column": "y", "positive": ["yes"]},
        "facets": [{"column": "sex", "values": ["F"]}],
    }
    data.update(overrides)
    return Config.model_validate(data)


def small_frame(**columns: list[Any]) -> pd.DataFrame:
    data = {"y": ["yes", "no", "no", "yes", "no"], "sex": ["F", "M", "F", "M", "M"]}
    data.update(columns)
    return pd.DataFrame(data)


def write_suite(path: Path, expectations: list[dict[str, Any]]) -> Path:
    """A suite file shaped like ExpectationSuite.to_json_dict()."""
    suite = {"name": "tiny", "id": None, "expectations": expectations, "meta": {}}
    path.write_text(json.dumps(suite), encoding="utf-8")
    return path


def results_for(document: dict[str, Any], kind: str, column: str) -> list[dict]:
    return [
        r
        for r in document["results"]
        if r["expectation_type"] == kind and r["kwargs"].get("column") == column
    ]


def only_result(document: dict[str, Any], kind: str, column: str) -> dict[str, Any]:
    found = results_for(document, kind, column)
    assert len(found) == 1, f"{kind} on {column}: {len(found)} results"
    return found[0]


def read_adult(skipinitialspace: bool = True) -> pd.DataFrame:
    """adult.data as the pipeline reads it (the repo's gzipped copy when present)."""
    path = next((p for p in ADULT_SOURCES if p.exists()), None)
    if path is None:
        pytest.skip("no copy of adult.data found in data/ or /work/shared/data/")
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        has_header = handle.readline().startswith("age")
    return pd.read_csv(
        path,
        header=0 if has_header else None,
        names=ADULT_COLUMNS,
        skipinitialspace=skipinitialspace,
        na_values="?" if skipinitialspace else None,
    )


@pytest.fixture(scope="module")
def adult() -> pd.DataFrame:
    return read_adult()


@pytest.fixture(scope="module")
def adult_config() -> Config:
    return make_config(
        label={"column": "income", "positive": [">50K"]},
        facets=[
            {"column": "sex", "values": ["Female"]},
            {"column": "race"},
            {"column": "age", "threshold": 40},
        ],
        group="education",
        expectations=str(ADULT_SUITE),
    )


# ------------------------------------------------------------------------ baseline


def test_baseline_passes_on_a_clean_frame() -> None:
    document = validate_frame(small_frame(), make_config())

    assert document["success"] is True
    assert document["suite"] is None
    assert document["statistics"] == {
        "evaluated": 5,
        "successful": 5,
        "unsuccessful": 0,
    }
    kinds = [
        (r["expectation_type"], r["kwargs"]["column"]) for r in document["results"]
    ]
    assert kinds == [
        ("expect_column_to_exist", "y"),
        ("expect_column_values_to_not_be_null", "y"),
        ("expect_column_distinct_values_to_contain_set", "y"),
        ("expect_column_to_exist", "sex"),
        ("expect_column_distinct_values_to_contain_set", "sex"),
    ]
    assert all(r["meta"]["source"] == "baseline" for r in document["results"])
    assert failure_summary(document) == ""


def test_result_entries_have_the_documented_keys() -> None:
    document = validate_frame(small_frame(), make_config())

    assert set(document) == {"success", "suite", "statistics", "results"}
    for entry in document["results"]:
        assert RESULT_KEYS <= set(entry)
        assert entry["exception"] is None


def test_missing_label_column_fails_and_is_named() -> None:
    frame = small_frame().rename(columns={"y": "outcome"})

    document = validate_frame(frame, make_config())

    assert document["success"] is False
    exists = only_result(document, "expect_column_to_exist", "y")
    assert exists["success"] is False
    # No value check runs on the missing column, so nothing raised inside GE.
    assert [r for r in document["results"] if r["kwargs"]["column"] == "y"] == [exists]
    assert all(r["exception"] is None for r in document["results"])
    assert "expect_column_to_exist on column 'y'" in failure_summary(document)


def test_positive_value_matching_no_row_fails() -> None:
    config = make_config(label={"column": "y", "positive": ["yes", "Yes "]})

    document = validate_frame(small_frame(), config)

    assert document["success"] is False
    check = only_result(document, "expect_column_distinct_values_to_contain_set", "y")
    assert check["success"] is False
    assert check["missing_values"] == ["Yes "]
    assert "'Yes '" in failure_summary(document)


def test_nan_in_label_fails_with_its_count() -> None:
    frame = small_frame(y=["yes", None, "no", np.nan, "no"])

    document = validate_frame(frame, make_config())

    check = only_result(document, "expect_column_values_to_not_be_null", "y")
    assert check["success"] is False
    assert check["unexpected_count"] == 2
    assert check["unexpected_percent"] == pytest.approx(40.0)
    assert check["partial_unexpected_list"] == [None, None]
    assert document["statistics"]["unsuccessful"] == 1
    assert "2 unexpected (40%)" in failure_summary(document)


def test_facet_value_matching_no_row_fails() -> None:
    config = make_config(facets=[{"column": "sex", "values": ["F", "X"]}])

    document = validate_frame(small_frame(), config)

    check = only_result(document, "expect_column_distinct_values_to_contain_set", "sex")
    assert (check["success"], check["missing_values"]) == (False, ["X"])


def test_missing_facet_and_group_columns_fail() -> None:
    config = make_config(
        facets=[{"column": "sex"}, {"column": "race", "values": ["A"]}], group="region"
    )

    document = validate_frame(small_frame(), config)

    failed = {r["kwargs"]["column"] for r in document["results"] if not r["success"]}
    assert failed == {"race", "region"}
    summary = failure_summary(document)
    assert "'race'" in summary and "'region'" in summary
    assert only_result(document, "expect_column_to_exist", "region")["meta"] == {
        "source": "baseline",
        "role": "group",
    }


@pytest.mark.parametrize(
    ("values", "dtype", "numeric"),
    [
        ([30, 45, 50, 22, 61], "int64", True),
        ([30.5, np.nan, 50.0, 22.0, 61.0], "float64", True),
        ([30, None, 50, 22, 61], "Int64", True),
        ([30, 45, 50, 22, 61], "UInt16", True),
        ([30.5, None, 50.0, 22.0, 61.0], "Float64", True),
        ([30.5, 45.0, 50.0, 22.0, 61.0], "float32", True),
        ([30, 45, 50, 22, 61], "uint8", True),
        (["30", "45", "50", "22", "61"], "str", False),
        ([True, False, True, False, True], "bool", False),
        (["a", "b", "a", "b", "a"], "category", False),
    ],
)
def test_threshold_facet_needs_a_numeric_column(
    values: list[Any], dtype: str, numeric: bool
) -> None:
    frame = small_frame(age=pd.array(values, dtype=dtype))
    config = make_config(facets=[{"column": "age", "threshold": 40}])

    document = validate_frame(frame, config)

    check = only_result(document, "expect_column_values_to_be_in_type_list", "age")
    assert check["success"] is numeric
    if not numeric:
        assert "expected a numeric type" in failure_summary(document)


def test_threshold_label_needs_a_numeric_column() -> None:
    config = make_config(label={"column": "score", "threshold": 0.5})
    frame = small_frame(score=["0.1", "0.9", "0.7", "0.2", "0.4"])

    document = validate_frame(frame, config)

    check = only_result(document, "expect_column_values_to_be_in_type_list", "score")
    assert check["success"] is False
    assert check["observed_value"] == "str"


# --------------------------------------------------------------------------- suite


def test_suite_results_follow_the_baseline_and_are_tagged(tmp_path: Path) -> None:
    suite = write_suite(
        tmp_path / "suite.json",
        [
            {
                "type": "expect_table_row_count_to_be_between",
                "kwargs": {"min_value": 1},
            },
            {
                "type": "expect_column_values_to_be_in_set",
                "kwargs": {"column": "sex", "value_set": ["F"]},
                "meta": {"owner": "data team"},
            },
        ],
    )

    document = validate_frame(small_frame(), make_config(expectations=str(suite)))

    assert document["suite"] == "tiny"
    sources = [r["meta"]["source"] for r in document["results"]]
    assert sources == ["baseline"] * 5 + ["suite"] * 2
    in_set = document["results"][-1]
    assert in_set["meta"] == {"owner": "data team", "source": "suite"}
    assert (in_set["success"], in_set["unexpected_count"]) == (False, 3)
    assert in_set["partial_unexpected_list"] == ["M", "M", "M"]
    assert document["statistics"] == {
        "evaluated": 7,
        "successful": 6,
        "unsuccessful": 1,
    }
    line = "expect_column_values_to_be_in_set on column 'sex' (suite)"
    assert failure_summary(document).startswith(line)


def test_table_column_mismatch_lists_both_sides(tmp_path: Path) -> None:
    suite = write_suite(
        tmp_path / "suite.json",
        [
            {
                "type": "expect_table_columns_to_match_set",
                "kwargs": {"column_set": ["y", "sex", "age"], "exact_match": True},
            }
        ],
    )
    frame = small_frame(region=["n", "s", "n", "s", "n"])

    document = validate_frame(frame, make_config(expectations=str(suite)))

    entry = document["results"][-1]
    assert entry["success"] is False
    assert (entry["partial_unexpected_list"], entry["missing_values"]) == (
        ["region"],
        ["age"],
    )
    assert failure_summary(document).endswith(
        "unexpected ['region']; missing from the data: ['age']"
    )


def test_expectation_raising_inside_gx_counts_as_failed(tmp_path: Path) -> None:
    suite = write_suite(
        tmp_path / "suite.json",
        [
            {
                "type": "expect_column_values_to_be_between",
                "kwargs": {"column": "no_such_column", "min_value": 0},
            }
        ],
    )

    document = validate_frame(small_frame(), make_config(expectations=str(suite)))

    entry = document["results"][-1]
    assert entry["success"] is False
    assert "no_such_column" in entry["exception"]
    assert document["success"] is False
    assert document["statistics"]["unsuccessful"] == 1
    assert "raised" in failure_summary(document)


def test_gx_failing_as_a_whole_fails_every_expectation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from great_expectations.datasource.fluent.interfaces import Batch

    def broken(self: Batch, expect: Any, **kwargs: Any) -> None:
        raise RuntimeError("metric backend unavailable")

    monkeypatch.setattr(Batch, "validate", broken)

    document = validate_frame(small_frame(), make_config())

    assert document["success"] is False
    assert document["statistics"] == {
        "evaluated": 5,
        "successful": 0,
        "unsuccessful": 5,
    }
    assert {r["exception"] for r in document["results"]} == {
        "RuntimeError: metric backend unavailable"
    }
    assert len(failure_summary(document).splitlines()) == 5


def test_too_many_unexpected_values_are_cut_to_ten(tmp_path: Path) -> None:
    suite = write_suite(
        tmp_path / "suite.json",
        [
            {
                "type": "expect_column_values_to_be_between",
                "kwargs": {"column": "n", "max_value": 0},
            }
        ],
    )
    frame = pd.DataFrame(
        {"y": ["yes", "no"] * 15, "sex": ["F", "M"] * 15, "n": range(1, 31)}
    )

    document = validate_frame(frame, make_config(expectations=str(suite)))

    entry = document["results"][-1]
    assert entry["unexpected_count"] == 30
    assert entry["partial_unexpected_list"] == list(range(1, 11))


def test_document_is_plain_json(tmp_path: Path) -> None:
    suite = write_suite(
        tmp_path / "suite.json",
        [
            {
                "type": "expect_column_values_to_be_between",
                "kwargs": {"column": "x", "min_value": 0, "max_value": 1},
            },
            {
                "type": "expect_column_pair_values_to_be_equal",
                "kwargs": {"column_A": "a", "column_B": "b"},
            },
            {
                "type": "expect_column_mean_to_be_between",
                "kwargs": {"column": "x", "max_value": 0},
            },
        ],
    )
    frame = small_frame(
        x=[0.5, np.inf, np.nan, 2.0, -np.inf],
        a=np.array([1, 2, 3, 4, 5], dtype=np.int64),
        b=np.array([1, 2, 0, 4, 0], dtype=np.int32),
        y=["yes", "no", None, "yes", "no"],
    )

    document = validate_frame(frame, make_config(expectations=str(suite)))

    text = json.dumps(document, allow_nan=False)
    assert json.loads(text) == document
    between, pairs = document["results"][-3], document["results"][-2]
    assert between["partial_unexpected_list"] == ["Infinity", 2.0, "-Infinity"]
    assert pairs["partial_unexpected_list"] == [[3, 0], [5, 0]]


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (None, "does not exist"),
        ("{not json", "not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
        ('{"name": "s", "expectations": [{"kwargs": {}}]}', "needs a 'type'"),
        (
            '{"name": "s", "expectations": [{"type": "expect_column_to_be_great", '
            '"kwargs": {"column": "y"}}]}',
            "unknown expectation type 'expect_column_to_be_great'",
        ),
        (
            '{"name": "s", "expectations": [{"type": '
            '"expect_column_values_to_be_between", "kwargs": {"column": "y"}}]}',
            "is not valid",
        ),
        ('{"name": "", "expectations": []}', "not a valid suite"),
    ],
)
def test_broken_suite_file_raises_config_error(
    tmp_path: Path, content: str | None, problem: str
) -> None:
    path = tmp_path / "broken.json"
    if content is not None:
        path.write_text(content, encoding="utf-8")

    with pytest.raises(ConfigError, match=problem) as caught:
        validate_frame(small_frame(), make_config(expectations=str(path)))

    assert str(path) in str(caught.value)


# --------------------------------------------------------------------------- Adult


def test_adult_suite_passes_on_adult(adult: pd.DataFrame, adult_config: Config) -> None:
    document = validate_frame(adult, adult_config)

    assert failure_summary(document) == ""
    assert document["success"] is True
    assert document["suite"] == "adult"
    suite_results = [r for r in document["results"] if r["meta"]["source"] == "suite"]
    assert len(suite_results) == len(
        json.loads(ADULT_SUITE.read_text())["expectations"]
    )


def test_adult_suite_catches_leading_spaces(adult_config: Config) -> None:
    raw = read_adult(skipinitialspace=False)

    document = validate_frame(raw, adult_config)

    assert document["success"] is False
    sex = only_result(document, "expect_column_values_to_be_in_set", "sex")
    assert sex["unexpected_count"] == len(raw)
    assert set(sex["partial_unexpected_list"]) <= {" Male", " Female"}
    contain = results_for(
        document, "expect_column_distinct_values_to_contain_set", "income"
    )
    positive = [r for r in contain if r["meta"]["source"] == "baseline"]
    assert [r["missing_values"] for r in positive] == [[">50K"]]


# -------------------------------------------------------------------------- import


def test_importing_the_module_does_not_import_great_expectations() -> None:
    code = (
        "import sys, biasgate.validation; sys.exit('great_expectations' in sys.modules)"
    )
    completed = subprocess.run([sys.executable, "-c", code], check=False, timeout=60)

    assert completed.returncode == 0
