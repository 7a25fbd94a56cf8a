"""`biasgate check` on bad input: exit code 2 and a message naming what is wrong."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from conftest import ADULT_CSV_GZ, adult_read_args

from biasgate.cli import main

EXIT_BAD_INPUT = 2


def _check(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["check", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _adult(*argv: str, skipinitialspace: bool = True) -> list[str]:
    return [
        str(ADULT_CSV_GZ),
        *argv,
        *adult_read_args(skipinitialspace=skipinitialspace),
    ]


def _csv(tmp_path: Path, text: str, name: str = "table.csv") -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


SMALL_CSV = "y,s,g\n1,F,0\n0,F,1\n1,M,0\n0,M,1\n1,M,1\n"


def _assert_bad_input(code: int, out: str, err: str, *needles: str) -> None:
    assert code == EXIT_BAD_INPUT, err
    assert out == ""
    assert err.startswith("biasgate: ")
    assert "Traceback" not in err
    for needle in needles:
        assert needle in err, f"{needle!r} not in {err!r}"


# --------------------------------------------------------------- columns and values


def test_missing_label_column(capsys: pytest.CaptureFixture[str]) -> None:
    result = _check(
        capsys, *_adult("--label", "incme", "--positive", ">50K", "--facet", "sex")
    )
    _assert_bad_input(*result, "label column 'incme'", "'income'")


def test_missing_facet_column(capsys: pytest.CaptureFixture[str]) -> None:
    result = _check(
        capsys,
        *_adult("--label", "income", "--positive", ">50K", "--facet", "gender=Female"),
    )
    _assert_bad_input(*result, "facet column 'gender'", "'sex'")


def test_positive_value_matching_no_row_shows_held_values(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Read without skipinitialspace, every text value keeps its leading space.
    argv = _adult(
        "--label",
        "income",
        "--positive",
        ">50K",
        "--facet",
        "sex",
        skipinitialspace=False,
    )
    result = _check(capsys, *argv)
    _assert_bad_input(
        *result, "'>50K'", "'income'", "' >50K'", "' <=50K'", "skipinitialspace"
    )


def test_unknown_facet_value(capsys: pytest.CaptureFixture[str]) -> None:
    result = _check(
        capsys,
        *_adult("--label", "income", "--positive", ">50K", "--facet", "sex=Nonbinary"),
    )
    _assert_bad_input(*result, "'Nonbinary'", "'sex'", "'Male'", "'Female'")


def test_label_with_a_single_outcome(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    data = _csv(tmp_path, "y,s\n1,F\n1,M\n1,M\n")
    result = _check(capsys, data, "--label", "y", "--positive", "1", "--facet", "s")
    _assert_bad_input(*result, "label 'y' has a single outcome", "positive")


def test_unknown_metric_name(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    data = _csv(tmp_path, SMALL_CSV)
    argv = [data, "--label", "y", "--positive", "1", "--facet", "s"]
    result = _check(capsys, *argv, "--metrics", "CI,XYZ")
    _assert_bad_input(*result, "--metrics", "'XYZ'")


# --------------------------------------------------------------- files


def test_empty_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    data = _csv(tmp_path, "", "empty.csv")
    result = _check(capsys, data, "--label", "y", "--positive", "1", "--facet", "s")
    _assert_bad_input(*result, data, "0 bytes")


def test_header_only_csv(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    data = _csv(tmp_path, "y,s\n", "header.csv")
    result = _check(capsys, data, "--label", "y", "--positive", "1", "--facet", "s")
    _assert_bad_input(*result, data, "no data rows")


def test_source_that_does_not_exist(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    missing = str(tmp_path / "nowhere" / "missing.csv")
    result = _check(capsys, missing, "--label", "y", "--positive", "1", "--facet", "s")
    _assert_bad_input(*result, missing, "does not exist")


# --------------------------------------------------------------- not errors


def test_missing_facet_values_are_left_out_and_counted(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    data = _csv(tmp_path, SMALL_CSV + "1,,0\n0,,1\n")
    code, out, err = _check(
        capsys, data, "--label", "y", "--positive", "1", "--facet", "s=F", "--json"
    )
    assert code == 0, err
    section = json.loads(out)["pre_training_bias_metrics"]
    assert section["rows"]["total"] == 7
    assert section["rows"]["missing_facet"] == {"s": 2}
    (entry,) = section["facets"]["s"]
    assert entry["value_or_threshold"] == "F"
    assert entry["counts"] == {"n_a": 3, "n_d": 2, "pos_a": 2, "pos_d": 1}
    ci = next(m["value"] for m in entry["metrics"] if m["name"] == "CI")
    assert ci == pytest.approx(1 / 5)


def test_threshold_facet(
    capsys: pytest.CaptureFixture[str], adult_frame: pd.DataFrame
) -> None:
    code, out, err = _check(
        capsys,
        *_adult(
            "--label", "income", "--positive", ">50K", "--facet", "age>40", "--json"
        ),
    )
    assert code == 0, err
    section = json.loads(out)["pre_training_bias_metrics"]
    (entry,) = section["facets"]["age"]
    assert entry["value_or_threshold"] == "> 40"
    older = adult_frame["age"] > 40
    assert entry["counts"]["n_d"] == int(older.sum())
    assert entry["counts"]["n_a"] == int((~older).sum())
    assert entry["counts"]["pos_d"] == int(
        (adult_frame.loc[older, "income"] == ">50K").sum()
    )


# ------------------------------------------------- found by trying it as a new user


def test_corrupt_gzip_is_bad_input_not_a_crash(tmp_path, capsys) -> None:
    broken = tmp_path / "broken.csv.gz"
    broken.write_bytes(ADULT_CSV_GZ.read_bytes()[:5000])  # truncated stream
    result = _check(
        capsys, str(broken), "--label", "y", "--positive", "1", "--facet", "s"
    )
    _assert_bad_input(*result, str(broken), "gzip", "whole")


def test_header_row_read_as_data_is_refused(tmp_path, capsys) -> None:
    path = _csv(tmp_path, SMALL_CSV)
    result = _check(
        capsys, path, "--label", "y", "--positive", "1", "--facet", "s",
        "--read", "header=null", "--read", "names=[y, s, g]",
    )  # fmt: skip
    _assert_bad_input(*result, "repeats the column names", "read.header: 0")


def test_text_output_counts_rows_left_out(tmp_path, capsys) -> None:
    path = _csv(tmp_path, "y,s\n1,F\n0,F\n1,M\n0,\n1,M\n0,M\n")
    code, out, _ = _check(
        capsys, path, "--label", "y", "--positive", "1", "--facet", "s"
    )
    assert code == 0
    assert "left out for a missing value: 0 rows without a label; facet {'s': 1}" in out


def test_unknown_metric_lists_the_known_ones(capsys) -> None:
    result = _check(
        capsys, *_adult("--label", "income", "--positive", ">50K", "--facet", "sex",
                        "--metrics", "CI,FOO"),
    )  # fmt: skip
    _assert_bad_input(*result, "'FOO'", "CI, DPL, KL, JS, LP, TVD, KS, CDDL, DI")


def test_a_reader_closing_the_pipe_early_is_not_an_error(tmp_path) -> None:
    import subprocess
    import sys

    command = [sys.executable, "-m", "biasgate", "check",
               *_adult("--label", "income", "--positive", ">50K", "--facet", "race",
                       "--json")]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdout.readline().startswith(b"{")
    process.stdout.close()  # like `| head -1`
    stderr = process.stderr.read().decode()
    process.stderr.close()
    assert process.wait(timeout=60) == 0, stderr
    assert "Traceback" not in stderr


def test_hints_for_a_wrong_separator_or_a_missing_header(tmp_path, capsys) -> None:
    path = _csv(tmp_path, "y;s\n1;F\n0;M\n")
    result = _check(capsys, path, "--label", "y", "--positive", "1", "--facet", "s")
    _assert_bad_input(*result, "'y;s'", "set read.sep")
    path = _csv(tmp_path, "1,F\n0,M\n1,M\n", name="noheader.csv")
    result = _check(capsys, path, "--label", "y", "--positive", "1", "--facet", "s")
    _assert_bad_input(*result, "no header row? set read.header: null")


def test_the_label_cannot_be_a_facet(tmp_path, capsys) -> None:
    path = _csv(tmp_path, SMALL_CSV)
    result = _check(capsys, path, "--label", "y", "--positive", "1", "--facet", "y=1")
    _assert_bad_input(*result, "'y' is the label")
