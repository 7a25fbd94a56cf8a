"""S3 in and out, against a real S3-compatible HTTP server: moto on 127.0.0.1.

The session's server (``moto_server``) is emptied before each test (``s3_endpoint``).
Every client here gets the loopback endpoint explicitly, and the environment holds only
dummy credentials, so nothing can reach real AWS. Faults are real: a server that stops
listening, an endpoint where nothing listens, credentials the server refuses.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from threading import Thread
from typing import Any

import pytest
import yaml
from conftest import (
    ADULT_CSV_GZ,
    EXAMPLES_DIR,
    REPO_ROOT,
    S3_ENV_KEY_ID,
    S3_ENV_SECRET,
    adult_read_args,
    reset_moto,
)

from biasgate.cli import main
from biasgate.errors import InputError, SourceError
from biasgate.remote import ObjectStore, UncertainWrite
from biasgate.run import read_manifest

BUCKET = "biasgate-data"
SOURCE_KEY = "raw/adult.csv.gz"
#: Credentials given in the config's storage_options (moto accepts any until told to
#: check them); the secrets test looks for these and the environment's everywhere.
CONFIG_KEY_ID = "biasgate-config-key-id-2f4a"
CONFIG_SECRET = "biasgate-config-secret-8e6c"
SECRETS = (CONFIG_KEY_ID, CONFIG_SECRET, S3_ENV_KEY_ID, S3_ENV_SECRET)
OUTPUTS = {
    "train.parquet", "validation.parquet", "test.parquet", "analysis.json",
    "validation.json", "gate.json", "report.md", "manifest.json",
}  # fmt: skip
CHECK_ARGS = [
    *adult_read_args(), "--label", "income", "--positive", ">50K",
    "--facet", "sex=Female", "--facet", "race", "--facet", "age>40",
    "--group", "education", "--json",
]  # fmt: skip


# ------------------------------------------------------------------------- helpers


def s3_client(endpoint: str, **credentials: str):
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=credentials.get("key", S3_ENV_KEY_ID),
        aws_secret_access_key=credentials.get("secret", S3_ENV_SECRET),
    )


def seed_bucket(endpoint: str) -> bytes:
    """Create the bucket and upload the bundled Adult file; returns its bytes."""
    client = s3_client(endpoint)
    client.create_bucket(Bucket=BUCKET)
    data = ADULT_CSV_GZ.read_bytes()
    client.put_object(Bucket=BUCKET, Key=SOURCE_KEY, Body=data)
    return data


def bucket_objects(endpoint: str, prefix: str = "") -> dict[str, bytes]:
    client = s3_client(endpoint)
    listing = client.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])
    return {
        item["Key"]: client.get_object(Bucket=BUCKET, Key=item["Key"])["Body"].read()
        for item in listing
    }


def options(endpoint: str, **extra: Any) -> dict[str, Any]:
    return {"endpoint_url": endpoint, "key": CONFIG_KEY_ID, "secret": CONFIG_SECRET,
            **extra}  # fmt: skip


def write_config(tmp_path: Path, endpoint: str, **changes: Any) -> Path:
    """examples/adult.yaml reading s3://BUCKET/raw/adult.csv.gz and writing to
    s3://BUCKET/runs/, with explicit storage_options for ``endpoint``."""
    config = yaml.safe_load((EXAMPLES_DIR / "adult.yaml").read_text())
    config |= {
        "source": f"s3://{BUCKET}/{SOURCE_KEY}",
        "output": f"s3://{BUCKET}/runs/",
        "expectations": str(REPO_ROOT / "expectations" / "adult.json"),
        "storage_options": options(endpoint),
        **changes,
    }
    path = tmp_path / "adult-s3.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture
def refused_endpoint():
    """A loopback URL whose port this test holds bound but not listening: every
    connection is refused, and no other program can take the port meanwhile."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{held.getsockname()[1]}"


def enforce_auth(endpoint: str) -> dict[str, str]:
    """Create an IAM user without any policy, then make moto check every request.

    Returns that user's credentials: valid keys that are denied everything.
    """
    import urllib.request

    import boto3

    iam = boto3.client(
        "iam", endpoint_url=endpoint, region_name="us-east-1",
        aws_access_key_id=S3_ENV_KEY_ID, aws_secret_access_key=S3_ENV_SECRET,
    )  # fmt: skip
    iam.create_user(UserName="no-permissions")
    key = iam.create_access_key(UserName="no-permissions")["AccessKey"]
    request = urllib.request.Request(
        endpoint + "/moto-api/reset-auth", data=b"0", method="POST",
        headers={"Content-Type": "text/plain"},
    )  # fmt: skip
    with urllib.request.urlopen(request, timeout=10) as response:
        response.read()
    return {"key": key["AccessKeyId"], "secret": key["SecretAccessKey"]}


@dataclass
class Captured:
    """What a CLI call left behind: exit code, stdout, stderr and every log record."""

    code: int
    out: str
    err: str
    logs: str
    seconds: float
    objects: dict[str, bytes] = field(default_factory=dict)


class LogRecords(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


def run_cli(*argv: str) -> Captured:
    """``biasgate ARGV`` in-process, capturing its output and every log record."""
    from prefect.logging.configuration import ensure_logging_setup

    ensure_logging_setup()  # Prefect's first setup would replace the root's handlers
    handler, root, ours = (
        LogRecords(),
        logging.getLogger(),
        logging.getLogger("biasgate"),
    )
    level = ours.level
    root.addHandler(handler)
    ours.setLevel(logging.DEBUG)
    out, err = io.StringIO(), io.StringIO()
    started = time.perf_counter()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(list(argv))
    finally:
        root.removeHandler(handler)
        ours.setLevel(level)
    return Captured(code, out.getvalue(), err.getvalue(), "\n".join(handler.lines),
                    time.perf_counter() - started)  # fmt: skip


def run_folder(objects: dict[str, bytes], name: str = "adult") -> str:
    folders = {key.split("/")[2] for key in objects if key.startswith(f"runs/{name}/")}
    assert len(folders) == 1, folders
    return f"runs/{name}/{folders.pop()}"


# ------------------------------------------------------------------ a full S3 run


@pytest.fixture(scope="module")
def s3_run(moto_server, prefect_harness, tmp_path_factory) -> Captured:
    """examples/adult.yaml from s3://.../raw/adult.csv.gz to s3://.../runs/."""
    reset_moto(moto_server)
    seed_bucket(moto_server)
    config = write_config(tmp_path_factory.mktemp("s3-run"), moto_server)
    result = run_cli("run", str(config))
    result.objects = bucket_objects(moto_server)  # before a later test empties moto
    return result


def test_s3_run_writes_every_output_and_records_the_source(s3_run):
    assert s3_run.code == 0, s3_run.err
    folder = run_folder(s3_run.objects)
    written = {
        key.rpartition("/")[2] for key in s3_run.objects if key.startswith(folder)
    }
    assert written == OUTPUTS
    manifest = json.loads(s3_run.objects[f"{folder}/manifest.json"])
    source = ADULT_CSV_GZ.read_bytes()
    assert manifest["status"] == "passed"
    assert manifest["input"]["uri"] == f"s3://{BUCKET}/{SOURCE_KEY}"
    assert manifest["input"]["bytes"] == len(source)
    assert manifest["input"]["sha256"] == hashlib.sha256(source).hexdigest()
    assert manifest["input"]["rows"] == 32561
    for name, meta in manifest["files"].items():
        data = s3_run.objects[f"{folder}/{name}"]
        assert meta == {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    assert s3_run.objects[SOURCE_KEY] == source, "the input object is never modified"
    assert f"wrote s3://{BUCKET}/{folder}" in s3_run.out


def test_s3_run_measures_the_same_numbers_as_a_local_run(s3_run):
    folder = run_folder(s3_run.objects)
    raw = json.loads(s3_run.objects[f"{folder}/analysis.json"])[
        "pre_training_bias_metrics"
    ]
    female = next(
        e for e in raw["facets"]["sex"] if e["value_or_threshold"] == "Female"
    )
    values = {m["name"]: m["value"] for m in female["metrics"]}
    assert values["CI"] == pytest.approx(0.338411, abs=1e-6)
    assert values["DPL"] == pytest.approx(0.196276, abs=1e-6)


def test_no_credential_reaches_outputs_logs_or_console(s3_run):
    assert s3_run.logs, "no log records were captured"
    texts = {"stdout": s3_run.out, "stderr": s3_run.err, "logs": s3_run.logs}
    texts |= {key: data.decode("latin-1") for key, data in s3_run.objects.items()}
    leaks = [(where, s) for where, text in texts.items() for s in SECRETS if s in text]
    assert not leaks
    manifest = json.loads(s3_run.objects[f"{run_folder(s3_run.objects)}/manifest.json"])
    assert manifest["config"]["storage_options"] == dict.fromkeys(options(""), "***")


def test_read_manifest_accepts_the_finished_run(s3_run, s3_endpoint):
    # s3_endpoint emptied moto: put the snapshot back and read it as a consumer would.
    client = s3_client(s3_endpoint)
    client.create_bucket(Bucket=BUCKET)
    for key, data in s3_run.objects.items():
        client.put_object(Bucket=BUCKET, Key=key, Body=data)
    folder = f"s3://{BUCKET}/{run_folder(s3_run.objects)}"
    assert read_manifest(folder, options(s3_endpoint))["status"] == "passed"
    client.delete_object(
        Bucket=BUCKET, Key=f"{run_folder(s3_run.objects)}/manifest.json"
    )
    with pytest.raises(InputError, match="has no manifest.json: it is incomplete"):
        read_manifest(folder, options(s3_endpoint))


# ------------------------------------------------------------------ biasgate check


def test_check_on_s3_gives_the_same_numbers_as_on_the_local_file(s3_endpoint):
    seed_bucket(s3_endpoint)
    remote = run_cli(
        "check", f"s3://{BUCKET}/{SOURCE_KEY}", *CHECK_ARGS,
        "--storage-option", f"endpoint_url={s3_endpoint}",
    )  # fmt: skip
    local = run_cli("check", str(ADULT_CSV_GZ), *CHECK_ARGS)
    assert remote.code == local.code == 0, remote.err
    assert json.loads(remote.out) == json.loads(local.out)


def test_check_reads_any_installed_fsspec_filesystem():
    import fsspec

    memory = fsspec.filesystem("memory")
    memory.pipe_file("/biasgate/adult.csv.gz", ADULT_CSV_GZ.read_bytes())
    try:
        remote = run_cli("check", "memory://biasgate/adult.csv.gz", *CHECK_ARGS)
    finally:
        memory.rm("/biasgate", recursive=True)
    local = run_cli("check", str(ADULT_CSV_GZ), *CHECK_ARGS)
    assert remote.code == 0, remote.err
    assert json.loads(remote.out) == json.loads(local.out)


# ------------------------------------------------------- a server that dies mid-publish


class StoppingServer:
    """A second moto server (same in-process backend) on its own loopback port that
    really stops right after storing an object whose key ends with ``trigger``, before
    that PUT is answered: its listening socket is closed, so every later connection is
    refused. One request per connection, so no kept-alive connection outlives it.

    The port stays reserved until :meth:`close` by a second socket, bound with
    SO_REUSEPORT but never listening, so no other program can take it meanwhile.
    """

    def __init__(self, trigger: str) -> None:
        from moto.moto_server.werkzeug_app import (
            DomainDispatcherApplication,
            MotoRequestHandler,
            create_backend_app,
        )
        from werkzeug.serving import make_server

        class OneRequestPerConnection(MotoRequestHandler):
            protocol_version = "HTTP/1.0"

        self.trigger, self.stopped = trigger, False
        self._listener, self._placeholder = socket.socket(), socket.socket()
        for sock in (self._listener, self._placeholder):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        port = self._listener.getsockname()[1]
        self._placeholder.bind(("127.0.0.1", port))
        self.endpoint = f"http://127.0.0.1:{port}"
        self._moto = DomainDispatcherApplication(create_backend_app)
        self._server = make_server(
            "127.0.0.1", port, self._app, threaded=True,
            request_handler=OneRequestPerConnection, fd=self._listener.fileno(),
        )  # fmt: skip
        self._thread = Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def _app(self, environ, start_response):
        status: list[str] = []

        def record_status(code, headers, exc_info=None):
            status.append(code)
            return start_response(code, headers, exc_info)

        body = list(self._moto(environ, record_status))
        if (
            environ["REQUEST_METHOD"] == "PUT"
            and environ["PATH_INFO"].endswith(self.trigger)
            and status[0].startswith("200")
        ):
            self.stop()
        return body

    def stop(self) -> None:
        if not self.stopped:
            self.stopped = True
            self._server.shutdown()
            self._server.server_close()
            self._listener.close()

    def close(self) -> None:
        self.stop()
        self._thread.join(timeout=5)
        self._placeholder.close()


@pytest.fixture
def stopping_server(s3_endpoint):
    server = StoppingServer(trigger="/test.parquet")
    yield server
    server.close()


@pytest.mark.usefixtures("prefect_harness")
def test_server_stopping_before_the_manifest_leaves_no_manifest(
    stopping_server, s3_endpoint, tmp_path
):
    seed_bucket(s3_endpoint)
    config = write_config(tmp_path, stopping_server.endpoint)
    result = run_cli(
        "run", str(config), "--set", "rebalance.strategy=random_over",
        "--set", "io.retries=1", "--set", "io.retry_delay_seconds=0",
    )  # fmt: skip

    assert stopping_server.stopped, "the fault was not injected"
    assert result.code == 2, result.err
    remaining = bucket_objects(s3_endpoint, prefix="runs/")  # through the live server
    assert not [key for key in remaining if key.endswith("manifest.json")]
    assert {key.rpartition("/")[2] for key in remaining} <= OUTPUTS
    assert remaining, "the splits were written before the server stopped"
    for key in remaining:  # whatever is left is named in the error
        assert f"s3://{BUCKET}/{key}" in result.err
    assert "may remain" in result.err and "unreachable" in result.err
    assert "without manifest.json the folder counts as incomplete" in result.err
    assert "gave up after 2 attempt(s)" in result.err
    assert bucket_objects(s3_endpoint, prefix=SOURCE_KEY)[SOURCE_KEY] == (
        ADULT_CSV_GZ.read_bytes()
    )
    folder = f"s3://{BUCKET}/{run_folder(remaining)}"
    with pytest.raises(InputError, match="incomplete"):
        read_manifest(folder, options(s3_endpoint))


# ------------------------------------------------------------------------- errors


def _store_error(uri: str, verb: str, storage_options: dict[str, Any]) -> SourceError:
    store = ObjectStore(uri, storage_options)
    with pytest.raises(SourceError) as caught:
        store.read(uri) if verb == "read" else store.write(uri, b"data")
    return caught.value


S3_FAILURES = {  # case: (words the message must hold, transient)
    "missing-bucket": (["bucket 'nowhere' does not exist", "create it"], False),
    "missing-key": (["key 'raw/nope.csv.gz' does not exist in bucket"], False),
    "unknown-key-id": (["InvalidAccessKeyId", "AWS_ACCESS_KEY_ID"], False),
    "wrong-secret": (["SignatureDoesNotMatch", "AWS_SECRET_ACCESS_KEY"], False),
    "access-denied": (["access denied (AccessDenied)", "IAM"], False),
    "unreachable": (["is unreachable", "AWS_ENDPOINT_URL"], True),
}


@pytest.mark.parametrize(
    ("case", "verb"),
    [(case, verb) for case in S3_FAILURES for verb in ("read", "write")
     if (case, verb) != ("missing-key", "write")],  # a write creates the key
)  # fmt: skip
def test_each_s3_failure_names_bucket_key_and_a_fix(
    s3_endpoint, refused_endpoint, case, verb
):
    needles, transient = S3_FAILURES[case]
    seed_bucket(s3_endpoint)
    bucket, key = (
        ("nowhere", SOURCE_KEY) if case == "missing-bucket"
        else (BUCKET, "raw/nope.csv.gz") if case == "missing-key"
        else (BUCKET, SOURCE_KEY)
    )  # fmt: skip
    storage_options = options(s3_endpoint)
    if case in ("unknown-key-id", "wrong-secret", "access-denied"):
        denied = enforce_auth(s3_endpoint)
        storage_options |= {
            "unknown-key-id": {"key": "biasgate-unknown-key-id"},
            "wrong-secret": {"key": denied["key"], "secret": "biasgate-wrong-secret"},
            "access-denied": denied,
        }[case]
    if case == "unreachable":
        storage_options["endpoint_url"] = refused_endpoint

    started = time.perf_counter()
    error = _store_error(f"s3://{bucket}/{key}", verb, storage_options)
    message = str(error)

    assert message.startswith(f"cannot {verb} s3://{bucket}/{key}: "), message
    assert f"bucket '{bucket}'" in message
    assert key in message
    for needle in needles:
        assert needle in message
    assert error.transient is transient
    assert error.__cause__ is None and error.__suppress_context__
    for secret in (*SECRETS, storage_options["secret"], storage_options["key"]):
        assert secret not in message
    assert time.perf_counter() - started < 10, "an unreachable endpoint must fail fast"


def test_a_server_that_never_answers_fails_a_write_within_the_read_timeout():
    # botocore sends PUTs with "Expect: 100-continue", which aiohttp awaits without any
    # timeout: against this socket (accepting, never answering) a write hung forever.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        endpoint = f"http://127.0.0.1:{silent.getsockname()[1]}"
        uri = f"s3://{BUCKET}/runs/x/train.parquet"
        store = ObjectStore(uri, options(endpoint, config_kwargs={"read_timeout": 0.5}))
        started = time.perf_counter()
        with pytest.raises(
            UncertainWrite, match="did not answer within the read timeout"
        ):
            store.write(uri, b"data")
    assert time.perf_counter() - started < 10


@pytest.mark.usefixtures("prefect_harness")
@pytest.mark.parametrize(
    ("case", "needles"),
    [
        ("missing-key", [f"cannot read s3://{BUCKET}/raw/nope.csv.gz",
                         "key 'raw/nope.csv.gz' does not exist"]),
        ("missing-bucket", ["cannot read s3://nowhere/raw/adult.csv.gz",
                            "bucket 'nowhere' does not exist"]),
        ("missing-output-bucket", ["cannot write s3://nowhere/runs/adult/",
                                   "bucket 'nowhere' does not exist",
                                   "Nothing was written"]),
    ],
)  # fmt: skip
def test_run_with_a_missing_bucket_or_key_exits_2_without_retrying(
    s3_endpoint, tmp_path, case, needles
):
    seed_bucket(s3_endpoint)
    changes = {
        "missing-key": {"source": f"s3://{BUCKET}/raw/nope.csv.gz"},
        "missing-bucket": {"source": f"s3://nowhere/{SOURCE_KEY}"},
        "missing-output-bucket": {"output": "s3://nowhere/runs/"},
    }[case]
    config = write_config(tmp_path, s3_endpoint, **changes)
    # A retry would wait 30 s: the run finishing quickly shows it did not retry.
    result = run_cli(
        "run", str(config), "--set", "rebalance.strategy=random_over",
        "--set", "io.retry_delay_seconds=30",
    )  # fmt: skip
    assert result.code == 2, result.err
    for needle in needles:
        assert needle in result.err
    assert result.seconds < 25
    if case != "missing-output-bucket":  # the error report is published whole
        objects = bucket_objects(s3_endpoint, prefix="runs/")
        folder = run_folder(objects)
        assert json.loads(objects[f"{folder}/manifest.json"])["status"] == "error"
        assert "does not exist" in objects[f"{folder}/report.md"].decode()


@pytest.mark.usefixtures("prefect_harness")
def test_run_with_refused_credentials_exits_2_and_keeps_them_secret(
    s3_endpoint, tmp_path
):
    seed_bucket(s3_endpoint)
    enforce_auth(s3_endpoint)
    config = write_config(tmp_path, s3_endpoint)  # CONFIG_KEY_ID is unknown to moto
    result = run_cli("run", str(config), "--set", "io.retry_delay_seconds=30")
    assert result.code == 2, result.err
    assert f"cannot read s3://{BUCKET}/{SOURCE_KEY}" in result.err
    assert "InvalidAccessKeyId" in result.err
    assert "The error report could not be written" in result.err
    assert result.seconds < 25
    for text in (result.out, result.err, result.logs):
        for secret in SECRETS:
            assert secret not in text


@pytest.mark.usefixtures("prefect_harness")
def test_run_with_an_unreachable_endpoint_gives_up_after_the_configured_retries(
    s3_endpoint, refused_endpoint, tmp_path
):
    dead = refused_endpoint
    config = write_config(tmp_path, dead)
    result = run_cli(
        "run", str(config),
        "--set", "io.retries=2", "--set", "io.retry_delay_seconds=0.2",
    )  # fmt: skip
    assert result.code == 2, result.err
    first_line = result.err.splitlines()[0]
    assert f"cannot read s3://{BUCKET}/{SOURCE_KEY}" in first_line
    assert f"S3 endpoint {dead} is unreachable" in first_line
    assert "gave up after 3 attempt(s)" in first_line
    assert result.logs.count("Retry 1/2") >= 1 and result.logs.count("Retry 2/2") >= 1
    assert result.seconds < 30
