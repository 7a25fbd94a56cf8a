"""Shared fixtures: the bundled Adult data and small helpers for files in tmp_path.

Adult is loaded here with plain pandas (not through biasgate's reader), so tests that
compare biasgate's numbers with it check the reader too.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

# Prefect keeps its state in a throwaway folder, never in ~/.prefect; telemetry cannot
# leave a closed network. Set before anything imports Prefect.
os.environ["PREFECT_HOME"] = tempfile.mkdtemp(prefix="biasgate-tests-prefect-")
os.environ["DO_NOT_TRACK"] = "1"
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["PREFECT_LOGGING_EXTRA_LOGGERS"] = "biasgate"
# biasgate's loggers log outside flows too (plain functions under test).
os.environ["PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW"] = "ignore"
os.environ.pop("PREFECT_API_URL", None)

REPO_ROOT = Path(__file__).resolve().parents[1]
TESTS_DIR = Path(__file__).resolve().parent
ADULT_CSV_GZ = REPO_ROOT / "data" / "adult.csv.gz"
EXAMPLES_DIR = REPO_ROOT / "examples"
CLARIFY_VECTORS = TESTS_DIR / "data" / "clarify_test_vectors.json"

#: Column names of UCI adult.data (the file has no header row), from adult.names.
ADULT_COLUMNS = [
    "age",
    "workclass",
    "fnlwgt",
    "education",
    "education-num",
    "marital-status",
    "occupation",
    "relationship",
    "race",
    "sex",
    "capital-gain",
    "capital-loss",
    "hours-per-week",
    "native-country",
    "income",
]


def adult_read_args(*, skipinitialspace: bool = True) -> list[str]:
    """``biasgate check`` reader options for the bundled adult.csv.gz."""
    args = [
        "--read",
        "header=null",
        "--read",
        "names=[" + ", ".join(ADULT_COLUMNS) + "]",
        "--read",
        'na_values=["?"]',
    ]
    if skipinitialspace:
        args += ["--read", "skipinitialspace=true"]
    return args


def load_clarify_vectors() -> list[dict[str, Any]]:
    """The Clarify test cases of tests/data/clarify_test_vectors.json."""
    return json.loads(CLARIFY_VECTORS.read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def adult_frame() -> pd.DataFrame:
    """adult.data read with pandas alone, the way data/README.md describes."""
    return pd.read_csv(
        ADULT_CSV_GZ,
        header=None,
        names=ADULT_COLUMNS,
        skipinitialspace=True,
        na_values="?",
    )


@pytest.fixture
def tmp_copy(tmp_path: Path) -> Callable[[Path, str | None], Path]:
    """Copy a file into tmp_path (optionally renamed) and return the copy's path."""

    def copy(source: Path, name: str | None = None) -> Path:
        target = tmp_path / (name or source.name)
        shutil.copyfile(source, target)
        return target

    return copy


@pytest.fixture(scope="session")
def prefect_harness():
    """One temporary Prefect server for every test that runs the real flow (~13 s)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield
