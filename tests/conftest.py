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


# --------------------------------------------------------------------- S3 (moto server)

#: Dummy credentials of the test session's environment; tests grep outputs and logs
#: for them, so they must never look like anything else.
S3_ENV_KEY_ID = "biasgate-env-key-id-7c1e"
S3_ENV_SECRET = "biasgate-env-secret-5b9d"
_AWS_VARIABLES_TO_CLEAR = (
    "AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN",
    "AWS_ENDPOINT_URL_S3", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
)  # fmt: skip


def reset_moto(endpoint: str) -> None:
    """Forget every bucket and IAM user, switch request authentication off again, and
    drop s3fs's cached filesystems (they hold clients of earlier tests)."""
    import urllib.request

    import s3fs

    for path, body in (("/moto-api/reset", b""), ("/moto-api/reset-auth", b"inf")):
        request = urllib.request.Request(
            endpoint + path, data=body, method="POST",
            headers={"Content-Type": "text/plain"},
        )  # fmt: skip
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()
    s3fs.S3FileSystem.clear_instance_cache()


@pytest.fixture(scope="session")
def moto_server():
    """One moto S3 server on a free 127.0.0.1 port for the session; yields its URL.

    Dummy credentials and AWS_ENDPOINT_URL send every client to it; ~/.aws, profiles
    and the instance metadata service are switched off, so no test reaches real AWS.
    """
    import logging

    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    endpoint = "http://{}:{}".format(*server.get_host_and_port())
    werkzeug = logging.getLogger("werkzeug")
    level = werkzeug.level
    werkzeug.setLevel(logging.WARNING)  # one line per request otherwise
    with pytest.MonkeyPatch.context() as env:
        for name in _AWS_VARIABLES_TO_CLEAR:
            env.delenv(name, raising=False)
        env.setenv("AWS_CONFIG_FILE", os.devnull)
        env.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
        env.setenv("AWS_EC2_METADATA_DISABLED", "true")
        env.setenv("AWS_ACCESS_KEY_ID", S3_ENV_KEY_ID)
        env.setenv("AWS_SECRET_ACCESS_KEY", S3_ENV_SECRET)
        env.setenv("AWS_DEFAULT_REGION", "us-east-1")
        env.setenv("AWS_ENDPOINT_URL", endpoint)
        try:
            yield endpoint
        finally:
            server.stop()
            werkzeug.setLevel(level)


@pytest.fixture
def s3_endpoint(moto_server: str) -> str:
    """The session's moto server, emptied for this test."""
    reset_moto(moto_server)
    return moto_server
