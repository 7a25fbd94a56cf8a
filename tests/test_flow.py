"""End-to-end: the real pretraining-check flow on the bundled Adult data.

Every run goes through ``biasgate run`` in-process against one temporary Prefect
server (the ``prefect_harness`` fixture). Expected numbers are the reference values
of the Adult tables (shared/data/README.md §4), typed in here.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from conftest import ADULT_COLUMNS, ADULT_CSV_GZ, EXAMPLES_DIR

from biasgate.cli import main

TOL = 1e-6
pytestmark = pytest.mark.usefixtures("prefect_harness")


def _run_folder(output: Path, name: str) -> Path:
    folders = list((output / name).iterdir())
    assert len(folders) == 1, folders
    return folders[0]


def _metric(section: dict, facet: str, value: str, name: str):
    entry = next(
        e for e in section["facets"][facet] if e["value_or_threshold"] == value
    )
    return next(m for m in entry["metrics"] if m["name"] == name)["value"]


def _assert_manifest_matches(folder: Path) -> dict:
    manifest = json.loads((folder / "manifest.json").read_text())
    listed = set(manifest["files"]) | {"manifest.json"}
    assert listed == {p.name for p in folder.iterdir()}, "stray or missing files"
    for name, meta in manifest["files"].items():
        data = (folder / name).read_bytes()
        assert meta == {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    return manifest


@pytest.fixture(scope="module")
def mitigated_run(tmp_path_factory) -> tuple[int, Path]:
    output = tmp_path_factory.mktemp("runs")
    code = main(["run", str(EXAMPLES_DIR / "adult.yaml"), "--output", str(output)])
    return code, _run_folder(output, "adult")


def test_mitigate_run_passes_and_writes_every_output(mitigated_run, capsys):
    code, folder = mitigated_run
    assert code == 0
    expected = {
        "train.parquet", "validation.parquet", "test.parquet", "analysis.json",
        "validation.json", "gate.json", "report.md", "manifest.json",
    }  # fmt: skip
    assert {p.name for p in folder.iterdir()} == expected
    manifest = _assert_manifest_matches(folder)
    source = ADULT_CSV_GZ.read_bytes()
    assert manifest["status"] == "passed"
    assert manifest["input"]["sha256"] == hashlib.sha256(source).hexdigest()
    assert manifest["input"]["bytes"] == len(source)
    assert manifest["input"]["rows"] == 32561
    assert manifest["versions"]["prefect"].startswith("3.")
    assert manifest["config"]["gate"]["mode"] == "mitigate"


def test_analysis_has_raw_reference_values_and_the_rebalanced_split(mitigated_run):
    _, folder = mitigated_run
    analysis = json.loads((folder / "analysis.json").read_text())
    raw = analysis["pre_training_bias_metrics"]
    assert raw["label"] == "income"
    assert _metric(raw, "sex", "Female", "CI") == pytest.approx(0.338411, abs=TOL)
    assert _metric(raw, "sex", "Female", "DPL") == pytest.approx(0.196276, abs=TOL)
    assert _metric(raw, "sex", "Female", "KL") == pytest.approx(0.141185, abs=TOL)
    assert _metric(raw, "sex", "Female", "JS") == pytest.approx(0.030241, abs=TOL)
    assert _metric(raw, "sex", "Female", "LP") == pytest.approx(0.277576, abs=TOL)
    assert _metric(raw, "sex", "Female", "CDDL") == pytest.approx(0.250282, abs=TOL)
    assert _metric(raw, "race", "Black", "DPL") == pytest.approx(0.129339, abs=TOL)
    assert _metric(raw, "race", "White", "CI") == pytest.approx(-0.708547, abs=TOL)
    after = analysis["rebalanced_training_bias_metrics"]
    assert abs(_metric(after, "sex", "Female", "DPL")) <= 0.1
    assert abs(_metric(after, "sex", "Female", "CI")) <= 0.5


def test_splits_are_stratified_and_only_train_is_rebalanced(mitigated_run):
    _, folder = mitigated_run
    original = pd.read_csv(
        ADULT_CSV_GZ, header=None, names=ADULT_COLUMNS, skipinitialspace=True,
        na_values="?",
    )  # fmt: skip
    train = pd.read_parquet(folder / "train.parquet")
    validation = pd.read_parquet(folder / "validation.parquet")
    test = pd.read_parquet(folder / "test.parquet")
    gate = json.loads((folder / "gate.json").read_text())
    assert gate["verdict"] == "passed" and gate["decided_on"] == "rebalanced_train"
    assert gate["raw"]["passed"] is False  # the raw data breaks |DPL(sex)| <= 0.1

    assert list(validation.columns) == ADULT_COLUMNS
    assert list(train.columns) == [*ADULT_COLUMNS, "synthetic"]
    assert len(validation) == len(test) == round(0.15 * 32561)
    real_train = train[~train["synthetic"]]
    assert len(real_train) + len(validation) + len(test) == 32561
    for frame in (validation, test):  # held-out splits keep the real distribution
        share = (frame["income"] == ">50K").mean()
        assert share == pytest.approx(7841 / 32561, abs=0.002)
    female_pos = (train["sex"] == "Female") & (train["income"] == ">50K")
    male_pos = (train["sex"] == "Male") & (train["income"] == ">50K")
    assert female_pos.sum() == male_pos.sum()  # every sex x income cell balanced
    assert train["age"].dtype == original["age"].dtype
    assert set(train["workclass"].dropna()) <= set(original["workclass"].dropna())


def test_report_shows_both_stages(mitigated_run):
    _, folder = mitigated_run
    report = (folder / "report.md").read_text()
    assert "**Verdict: PASSED** (mode `mitigate`)" in report
    assert "| DPL | sex = Female | 0.1963 | 0.0000 | \\|DPL\\| <= 0.1 |" in report
    assert "## Training split after rebalancing" in report
    # balancing sex x income skews race: the report must say so
    assert "**Rebalancing made these worse**" in report
    assert "- DPL for race=Black: 0.129 -> " in report


def test_fail_mode_exits_1_and_still_writes_the_report(tmp_path, capsys):
    code = main(
        ["run", str(EXAMPLES_DIR / "adult-fail.yaml"), "--output", str(tmp_path)]
    )
    assert code == 1
    out, err = capsys.readouterr()
    assert "DPL for sex=Female is 0.196, allowed |DPL| <= 0.1 (n_d=10771)" in err
    assert out.startswith("gate: FAILED (mode fail)\n")  # every rule beside its limit
    assert "[passed] CI for sex=Female is 0.338, within |CI| <= 0.5" in out
    folder = _run_folder(tmp_path, "adult-fail")
    names = {p.name for p in folder.iterdir()}
    assert {"analysis.json", "gate.json", "report.md", "manifest.json"} <= names
    assert not any(n.endswith(".parquet") for n in names), (
        "no splits after a failed gate"
    )
    manifest = _assert_manifest_matches(folder)
    assert manifest["status"] == "failed"
    assert json.loads((folder / "gate.json").read_text())["verdict"] == "failed"


def _bad_run(tmp_path: Path, capsys, *sets: str, source: Path | None = None):
    args = ["run", str(EXAMPLES_DIR / "adult.yaml"), "--output", str(tmp_path / "out")]
    if source is not None:
        args += ["--set", f"source={source}"]
    for item in sets:
        args += ["--set", item]
    code = main(args)
    return code, capsys.readouterr().err


def _assert_complete_error_report(tmp_path: Path) -> None:
    """An error after the output location is known leaves a whole error report."""
    runs = tmp_path / "out" / "adult"
    if not runs.exists():
        return
    for folder in runs.iterdir():
        manifest = _assert_manifest_matches(folder)
        assert manifest["status"] == "error"
        assert (folder / "error.json").exists()
        assert not list(folder.glob("*.parquet"))
        assert not list(folder.glob(".*.tmp"))


@pytest.mark.parametrize(
    ("sets", "needles"),
    [
        (["label.column=salary"], ["'salary'", "label"]),
        (["facets.0.column=gender"], ["'gender'"]),
        (["read.skipinitialspace=false"], ["'>50K'", "' >50K'", "skipinitialspace"]),
        (['label.positive=[">50K", "<=50K"]'], ["single outcome", "income"]),
        (["facets.0.values=[Femal]"], ["'Femal'", "'Female'"]),
    ],
    ids=[
        "missing-label",
        "missing-facet",
        "spaces",
        "one-outcome",
        "unknown-facet-value",
    ],
)
def test_bad_input_exits_2_naming_the_problem(tmp_path, capsys, sets, needles):
    code, err = _bad_run(tmp_path, capsys, *sets)
    assert code == 2, err
    for needle in needles:
        assert needle in err
    _assert_complete_error_report(tmp_path)


def test_missing_source_exits_2_without_retrying(tmp_path, capsys):
    missing = tmp_path / "nope.csv.gz"
    code, err = _bad_run(tmp_path, capsys, "io.retry_delay_seconds=30", source=missing)
    assert code == 2
    assert str(missing) in err and "does not exist" in err
    _assert_complete_error_report(tmp_path)


def test_empty_source_exits_2(tmp_path, capsys):
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    code, err = _bad_run(tmp_path, capsys, source=empty)
    assert code == 2
    assert "empty" in err and str(empty) in err
    assert empty.read_bytes() == b""  # the input is never modified
    _assert_complete_error_report(tmp_path)


def test_unknown_config_key_exits_2_before_any_output(tmp_path, capsys):
    config = tmp_path / "adult.yaml"
    shutil.copy(EXAMPLES_DIR / "adult.yaml", config)
    config.write_text(
        config.read_text().replace("gate:\n  mode:", "gate:\n  moed: fail\n  mode:")
    )
    config.write_text(
        config.read_text().replace("../data/", str(ADULT_CSV_GZ.parent) + "/")
    )
    code = main(["run", str(config), "--output", str(tmp_path / "out")])
    assert code == 2
    assert "gate.moed: unknown key" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_warn_mode_records_violations_and_goes_on(tmp_path, capsys):
    config = str(EXAMPLES_DIR / "adult-fail.yaml")
    code = main(["run", config, "--output", str(tmp_path), "--set", "gate.mode=warn"])
    assert code == 0, capsys.readouterr().err
    folder = _run_folder(tmp_path, "adult-fail")
    gate = json.loads((folder / "gate.json").read_text())
    assert gate["verdict"] == "warned"
    assert gate["violations"] == [
        "DPL for sex=Female is 0.196, allowed |DPL| <= 0.1 (n_d=10771)"
    ]
    # rebalance defaults to none: the training split is the real one
    train = pd.read_parquet(folder / "train.parquet")
    assert len(train) == 32561 - 2 * round(0.15 * 32561)
    assert "PASSED WITH WARNINGS" in (folder / "report.md").read_text()


def test_a_missing_suite_or_an_output_file_fails_before_prefect_starts(
    tmp_path, capsys
):
    config = str(EXAMPLES_DIR / "adult.yaml")
    missing = tmp_path / "nope.json"
    code = main(["run", config, "--set", f"expectations={missing}"])
    assert code == 2
    assert f"suite file {missing} does not exist" in capsys.readouterr().err
    a_file = tmp_path / "taken"
    a_file.write_text("not a folder")
    assert main(["run", config, "--output", str(a_file)]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err
