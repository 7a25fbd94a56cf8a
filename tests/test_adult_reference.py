"""`biasgate check` on the bundled Adult data against hand-computed reference values.

The expected numbers are typed in from the reference table of the shared data README
(section 4, adult.data), which was computed with plain pandas arithmetic, not by
biasgate.
"""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys

import pytest
from conftest import ADULT_CSV_GZ, REPO_ROOT, adult_read_args

from biasgate.cli import main

#: The reference table gives six decimals.
REFERENCE_TOL = 1e-6

# (facet, value of facet d): (n_a, n_d, CI, DPL)
CI_DPL = {
    ("sex", "Female"): (21790, 10771, 0.338411, 0.196276),
    ("race", "Black"): (29437, 3124, 0.808114, 0.129339),
    ("race", "Asian-Pac-Islander"): (31522, 1039, 0.936181, -0.025649),
    ("race", "Amer-Indian-Eskimo"): (32250, 311, 0.980897, 0.126260),
    ("race", "Other"): (32290, 271, 0.983354, 0.149805),
    ("race", "White"): (4745, 27816, -0.708547, -0.103278),
}

# Facet sex, d = Female.
SEX_DISTRIBUTION_METRICS = {
    "KL": 0.141185,
    "JS": 0.030241,
    "LP": 0.277576,
    "TVD": 0.196276,
    "KS": 0.196276,
}
SEX_CDDL_BY_EDUCATION = 0.250282


def _check_args(*facets: str, metrics: str | None = None) -> list[str]:
    """argv of ``biasgate check --json`` on Adult, grouped by education for CDDL."""
    args = ["check", str(ADULT_CSV_GZ), "--label", "income", "--positive", ">50K"]
    for facet in facets or ("sex", "race"):
        args += ["--facet", facet]
    if metrics:
        args += ["--metrics", metrics]
    return [*args, "--group", "education", "--json", *adult_read_args()]


@pytest.fixture(scope="module")
def adult_section() -> dict:
    """One in-process ``biasgate check --json`` run over sex and race (one-vs-rest)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(_check_args())
    assert code == 0, err.getvalue()
    return json.loads(out.getvalue())["pre_training_bias_metrics"]


def _metrics(section: dict, facet: str, value: str) -> tuple[dict, dict]:
    entries = [e for e in section["facets"][facet] if e["value_or_threshold"] == value]
    assert len(entries) == 1
    entry = entries[0]
    return {m["name"]: m["value"] for m in entry["metrics"]}, entry["counts"]


def test_check_json_is_clarify_shaped(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(_check_args()) == 0
    doc = json.loads(capsys.readouterr().out)
    section = doc["pre_training_bias_metrics"]
    assert section["label"] == "income"
    assert section["label_value_or_threshold"] == ">50K"
    assert set(section["facets"]) == {"sex", "race"}
    race_values = {e["value_or_threshold"] for e in section["facets"]["race"]}
    assert race_values == {v for f, v in CI_DPL if f == "race"}
    assert section["rows"]["total"] == 32561


@pytest.mark.parametrize(("facet", "value"), sorted(CI_DPL))
def test_ci_and_dpl(adult_section: dict, facet: str, value: str) -> None:
    n_a, n_d, ci, dpl = CI_DPL[(facet, value)]
    metrics, counts = _metrics(adult_section, facet, value)
    assert (counts["n_a"], counts["n_d"]) == (n_a, n_d)
    assert metrics["CI"] == pytest.approx(ci, abs=REFERENCE_TOL)
    assert metrics["DPL"] == pytest.approx(dpl, abs=REFERENCE_TOL)


@pytest.mark.parametrize("name", sorted(SEX_DISTRIBUTION_METRICS))
def test_distribution_metrics_for_sex(adult_section: dict, name: str) -> None:
    metrics, _ = _metrics(adult_section, "sex", "Female")
    want = SEX_DISTRIBUTION_METRICS[name]
    assert metrics[name] == pytest.approx(want, abs=REFERENCE_TOL)


def test_cddl_for_sex_by_education(adult_section: dict) -> None:
    metrics, _ = _metrics(adult_section, "sex", "Female")
    assert metrics["CDDL"] == pytest.approx(SEX_CDDL_BY_EDUCATION, abs=REFERENCE_TOL)


def test_module_entry_point() -> None:
    args = _check_args("sex=Female", metrics="CI,DPL")
    done = subprocess.run(
        [sys.executable, "-m", "biasgate", *args],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    section = json.loads(done.stdout)["pre_training_bias_metrics"]
    metrics, counts = _metrics(section, "sex", "Female")
    _, n_d, ci, dpl = CI_DPL[("sex", "Female")]
    assert counts["n_d"] == n_d
    assert metrics["CI"] == pytest.approx(ci, abs=REFERENCE_TOL)
    assert metrics["DPL"] == pytest.approx(dpl, abs=REFERENCE_TOL)
