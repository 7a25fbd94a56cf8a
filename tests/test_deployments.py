"""Deployments: flow parameters, deployments/prefect.yaml, and a real server and worker.

The slow test runs the commands of deployments/README.md, as written there, against a
Prefect server on a free 127.0.0.1 port with a throwaway PREFECT_HOME: create the
work pool, deploy, start a worker, `prefect deployment run ... --watch`. Everything it
starts is stopped at the end, also when a test fails.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import REPO_ROOT

from biasgate.config import load_config

PREFECT_YAML = REPO_ROOT / "deployments" / "prefect.yaml"
README = REPO_ROOT / "deployments" / "README.md"
VIOLATION = "DPL for sex=Female is 0.196, allowed |DPL| <= 0.1 (n_d=10771)"

# The commands of deployments/README.md, run here as written (the server on a free
# port instead of 4200; runs get `--param output=...` to write into tmp_path).
SERVER = "prefect server start --host 127.0.0.1 --port {port}"
CREATE_POOL = "prefect work-pool create biasgate --type process"
DEPLOY = "prefect deploy --all --prefect-file deployments/prefect.yaml --no-prompt"
WORKER = "prefect worker start --pool biasgate"
RUN = "prefect deployment run 'pretraining-check/{name}' --watch"
INSPECT = "prefect deployment inspect 'pretraining-check/adult-nightly'"
INSPECT_RUN = "prefect flow-run inspect {id} --output json"
INSPECT_VIOLATIONS = (
    "prefect artifact inspect biasgate-adult-fail-violations --limit 1 --output json"
)


def test_the_readme_shows_the_commands_this_test_runs():
    readme = README.read_text(encoding="utf-8")
    commands = [SERVER.format(port=4200), CREATE_POOL, DEPLOY, WORKER, INSPECT]
    commands += [INSPECT_RUN.format(id="<flow-run-id>"), INSPECT_VIOLATIONS]
    commands += [RUN.format(name=name) for name in ("adult", "adult-fail")]
    for command in commands:
        assert command in readme


# ------------------------------------------------------------------ flow parameters


def _deployments() -> dict[str, dict[str, Any]]:
    document = yaml.safe_load(PREFECT_YAML.read_text(encoding="utf-8"))
    return {d["name"]: d for d in document["deployments"]}


def test_pool_and_schedule_are_declared_once_and_reused():
    text = PREFECT_YAML.read_text(encoding="utf-8")
    document = yaml.safe_load(text)
    pool = document["definitions"]["work_pools"]["biasgate"]
    deployments = _deployments()
    assert text.count("&biasgate-pool") == 1 and text.count("cron:") == 1
    assert text.count("*biasgate-pool") == len(deployments)
    env = pool["job_variables"]["env"]
    assert env == {
        "DO_NOT_TRACK": "1",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_LOGGING_EXTRA_LOGGERS": "biasgate",
    }
    assert all(d["work_pool"] == pool for d in deployments.values())
    scheduled = {name for name, d in deployments.items() if d.get("schedules")}
    assert scheduled == {"adult-nightly"}
    (schedule,) = deployments["adult-nightly"]["schedules"]
    assert schedule == document["definitions"]["schedules"]["nightly"]
    assert schedule["timezone"] and schedule["cron"].split()[:2] == ["0", "4"]
    pull = document["pull"]
    assert pull == [
        {"prefect.deployments.steps.set_working_directory": {"directory": "{{ $PWD }}"}}
    ]


@pytest.mark.parametrize("name", list(_deployments()))
def test_every_deployment_s_parameters_are_valid(name, monkeypatch):
    """Checked the way a worker sees them: relative paths from the project root."""
    from biasgate.flows.pretraining_check import pretraining_check

    deployment = _deployments()[name]
    assert deployment["entrypoint"] == "flows/pretraining_check.py:pretraining_check"
    monkeypatch.chdir(REPO_ROOT)
    parameters = pretraining_check.validate_parameters(deployment["parameters"])
    config = load_config(
        parameters["config"], parameters["overrides"], output=parameters["output"]
    )
    assert Path(config.source).is_file()
    assert config.output == str(REPO_ROOT / "runs")


@pytest.mark.parametrize(
    ("parameters", "needles"),
    [
        ({"overrides": "gate.mode=warn"}, ["overrides: Input should be a valid list"]),
        ({"overrides": ["gate.mode"]}, ["overrides.0", "expected key=value"]),
        ({"overrides": ["gate.moed=fail"]}, ["gate.moed: unknown key"]),
        ({"output": 7}, ["output", "valid string"]),
        ({"config": "examples/nope.yaml"}, ["examples/nope.yaml does not exist"]),
        (
            {"config": {"source": "data/adult.csv.gz", "gate": {"moed": "fail"}}},
            ["gate.moed: unknown key", "label: required key is missing"],
        ),
    ],
    ids=["overrides-not-a-list", "override-not-key-value", "unknown-override-key",
         "output-not-a-string", "missing-config-file", "unknown-inline-key"],
)  # fmt: skip
def test_a_bad_parameter_ends_the_run_failed_before_any_work(
    prefect_harness, tmp_path, monkeypatch, parameters, needles
):
    from biasgate.flows.pretraining_check import pretraining_check

    monkeypatch.chdir(REPO_ROOT)
    arguments = {"config": "examples/adult.yaml", "output": str(tmp_path / "out")}
    started = time.monotonic()
    state = pretraining_check(**(arguments | parameters), return_state=True)
    assert time.monotonic() - started < 5
    assert state.is_failed()
    for needle in needles:
        assert needle in state.message
    assert not (tmp_path / "out").exists(), "nothing is written for a bad parameter"


# ------------------------------------------------------- a real server and a worker


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _children() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    return children


def _descendants(pid: int) -> set[int]:
    children, found, todo = _children(), set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _stop(process: subprocess.Popen, grace: float = 10) -> None:
    """SIGTERM, then SIGINT (a worker ignores the first signal), then SIGKILL.

    Signals go to the process group (each process starts its own session) and then
    to any descendant that left the group, such as a flow-run process.
    """
    if process.poll() is None:
        descendants = _descendants(process.pid)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGKILL):
            with suppress(ProcessLookupError):
                os.killpg(process.pid, sig)
            try:
                process.wait(grace)
                break
            except subprocess.TimeoutExpired:
                continue
        for pid in descendants:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while any(map(_alive, descendants)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(map(_alive, descendants)), f"left running: {descendants}"
    process.wait(5)


class PrefectEnv:
    """A throwaway Prefect server, and the CLI pointed at it."""

    def __init__(self, home: Path, logs: Path, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}/api"
        self.logs = logs
        self.port = port
        self.timings: dict[str, float] = {}
        self.last_call: list[datetime] = []
        bin_dir = str(Path(sys.executable).parent)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
        self.env |= {
            "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
            "PWD": str(REPO_ROOT),  # what "{{ $PWD }}" resolves to, as in a shell
            "PREFECT_HOME": str(home),
            "PREFECT_API_URL": self.url,
            "DO_NOT_TRACK": "1",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            # The nightly deployment must not start during the test: no scheduler.
            "PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED": "false",
            # The worker looks for runs every second instead of every 10 s.
            "PREFECT_WORKER_QUERY_SECONDS": "1",
            "PREFECT_SERVER_LOGGING_LEVEL": "WARNING",
            "COLUMNS": "200",  # rich wraps long lines at 80 columns without a TTY
        }

    def start(self, command: str, name: str) -> subprocess.Popen:
        with (self.logs / f"{name}.log").open("wb") as log:
            return subprocess.Popen(
                shlex.split(command), cwd=REPO_ROOT, env=self.env, stdout=log,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )  # fmt: skip

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")[-6000:]

    def run(
        self, command: str, *extra: str, timing: str, timeout: float = 180
    ) -> subprocess.CompletedProcess:
        started, self.last_call = time.monotonic(), [datetime.now(UTC)]
        done = subprocess.run(
            [*shlex.split(command), *extra], cwd=REPO_ROOT, env=self.env,
            capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        self.timings[timing] = time.monotonic() - started
        self.last_call.append(datetime.now(UTC))
        return done

    def client(self) -> Any:
        from prefect.client.orchestration import get_client
        from prefect.settings import PREFECT_API_URL, temporary_settings

        with temporary_settings({PREFECT_API_URL: self.url}):
            return get_client(sync_client=True)


def _wait_healthy(prefect: PrefectEnv, server: subprocess.Popen) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assert server.poll() is None, f"server exited:\n{prefect.log('server')}"
        with suppress(OSError):
            with urllib.request.urlopen(f"{prefect.url}/health", timeout=2) as answer:
                if answer.status == 200:
                    return
        time.sleep(0.25)
    raise AssertionError(f"server not healthy after 90 s:\n{prefect.log('server')}")


@pytest.fixture(scope="module")
def prefect(tmp_path_factory, pytestconfig) -> Iterator[PrefectEnv]:
    """Server, work pool, deployments and a worker; all stopped at the end.

    Where the time goes is written to the terminal and to timings.json at the end.
    """
    root = tmp_path_factory.mktemp("prefect-server")
    (root / "home").mkdir()
    prefect = PrefectEnv(root / "home", root, _free_port())
    started = time.monotonic()
    processes: list[subprocess.Popen] = []
    try:
        processes.append(prefect.start(SERVER.format(port=prefect.port), "server"))
        _wait_healthy(prefect, processes[0])
        prefect.timings["server start until healthy"] = time.monotonic() - started

        done = prefect.run(CREATE_POOL, timing="work-pool create")
        assert done.returncode == 0, done.stdout + done.stderr
        done = prefect.run(DEPLOY, timing="deploy --all")
        assert done.returncode == 0, done.stdout + done.stderr
        processes.append(prefect.start(WORKER, "worker"))
        yield prefect
    finally:
        stopping, left = time.monotonic(), []
        for process in reversed(processes):  # the worker first, then the server
            try:
                _stop(process)
            except (AssertionError, subprocess.TimeoutExpired) as err:
                left.append(f"{process.args}: {err}")
        prefect.timings["teardown"] = time.monotonic() - stopping
        prefect.timings["total"] = time.monotonic() - started
        (root / "timings.json").write_text(json.dumps(prefect.timings, indent=2))
        plugins = pytestconfig.pluginmanager
        reporter = plugins.get_plugin("terminalreporter")
        if reporter is not None:
            with plugins.get_plugin("capturemanager").global_and_fixture_disabled():
                reporter.write_line("\ndeployment test, seconds:")
                for step, seconds in prefect.timings.items():
                    reporter.write_line(f"  {step:<48}{seconds:6.1f}")
        assert not left, f"processes left running: {left}"


def _flow_run_id(output: str) -> str:
    match = re.search(r"UUID: ([0-9a-f-]{36})", output)
    assert match, output
    return match.group(1)


def _flow_run(prefect: PrefectEnv, flow_run_id: str, label: str) -> Any:
    """The flow run, after recording how long each of its phases took."""
    with prefect.client() as client:
        flow_run = client.read_flow_run(flow_run_id)
        states = client.read_flow_run_states(flow_run_id)
    seen = {state.type.value: state.timestamp for state in states}
    seen["CALLED"], seen["RETURNED"] = prefect.last_call
    phases = [
        ("CLI start until the run exists", "CALLED", "SCHEDULED"),
        ("waiting for the worker", "SCHEDULED", "PENDING"),
        ("starting the flow-run process", "PENDING", "RUNNING"),
        ("flow body", "RUNNING", flow_run.state.type.value),
        ("run's end until --watch returns", flow_run.state.type.value, "RETURNED"),
    ]
    for phase, start, end in phases:
        if start in seen and end in seen:
            seconds = (seen[end] - seen[start]).total_seconds()
            prefect.timings[f"  {label}: {phase}"] = seconds
    return flow_run


def _artifacts(prefect: PrefectEnv, flow_run_id: str) -> dict[str, Any]:
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    only_this_run = ArtifactFilterFlowRunId(any_=[flow_run_id])
    with prefect.client() as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=only_this_run)
        )
    return {artifact.key: artifact for artifact in found}


def _run_folder(output: Path, name: str) -> Path:
    (folder,) = (output / name).iterdir()
    return folder


def _run_deployment(
    prefect: PrefectEnv, name: str, output: Path, timing: str, exit_code: int
) -> Any:
    """Run a deployment with --watch, check its exit code, return its flow run."""
    done = prefect.run(
        RUN.format(name=name), "--param", f"output={output}", timing=timing
    )
    assert done.returncode == exit_code, (
        done.stdout + done.stderr + prefect.log("worker")
    )
    return done, _flow_run(prefect, _flow_run_id(done.stdout), name)


@pytest.mark.slow
def test_on_demand_run_completes_and_writes_every_output(prefect, tmp_path):
    done, flow_run = _run_deployment(
        prefect, "adult", tmp_path, "run adult (worker start, trigger to Completed)", 0
    )
    assert "Flow run finished successfully in 'Completed'" in done.stdout
    assert flow_run.state.is_completed()
    assert flow_run.parameters["config"] == "examples/adult.yaml"
    assert flow_run.work_pool_name == "biasgate"
    folder = _run_folder(tmp_path, "adult")
    assert {p.name for p in folder.iterdir()} == {
        "train.parquet", "validation.parquet", "test.parquet", "analysis.json",
        "validation.json", "gate.json", "report.md", "manifest.json",
    }  # fmt: skip
    assert json.loads((folder / "manifest.json").read_text())["status"] == "passed"

    artifacts = _artifacts(prefect, flow_run.id)
    assert set(artifacts) == {
        "biasgate-adult-report", "biasgate-adult-gate", "biasgate-adult-violations",
    }  # fmt: skip
    assert "**Verdict: PASSED**" in artifacts["biasgate-adult-report"].data
    assert "no violations" in artifacts["biasgate-adult-violations"].data


@pytest.mark.slow
def test_an_inline_config_runs_from_the_project_root(prefect, tmp_path):
    _, flow_run = _run_deployment(
        prefect, "adult-inline", tmp_path, "run adult-inline (trigger to Completed)", 0
    )
    assert flow_run.state.is_completed()
    folder = _run_folder(tmp_path, "adult-inline")
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["status"] == "warned"  # warn mode: violations recorded, run goes on
    assert manifest["input"]["uri"] == str(REPO_ROOT / "data" / "adult.csv.gz")
    assert (folder / "train.parquet").is_file()
    violations = _artifacts(prefect, flow_run.id)["biasgate-adult-inline-violations"]
    assert f"- {VIOLATION}" in violations.data.splitlines()


@pytest.mark.slow
def test_a_failed_gate_fails_the_run_with_its_violations(prefect, tmp_path):
    done, flow_run = _run_deployment(
        prefect, "adult-fail", tmp_path, "run adult-fail (trigger to Failed)", 1
    )
    assert "Flow run finished in state 'Failed'" in done.stdout
    assert flow_run.state.is_failed()
    assert flow_run.state.message.startswith("gate failed (mode fail, 1 violation(s))")
    assert f"- {VIOLATION}" in flow_run.state.message.splitlines()
    folder = _run_folder(tmp_path, "adult-fail")
    names = {p.name for p in folder.iterdir()}
    assert {"analysis.json", "gate.json", "report.md", "manifest.json"} <= names
    assert not any(name.endswith(".parquet") for name in names)
    assert json.loads((folder / "gate.json").read_text())["violations"] == [VIOLATION]

    artifacts = _artifacts(prefect, flow_run.id)
    assert "**Verdict: FAILED**" in artifacts["biasgate-adult-fail-report"].data
    assert artifacts["biasgate-adult-fail-gate"].type == "table"

    # Where platform engineers look, through the commands the README shows.
    done = prefect.run(INSPECT_RUN.format(id=flow_run.id), timing="flow-run inspect")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["state"]["message"] == flow_run.state.message
    done = prefect.run(INSPECT_VIOLATIONS, timing="artifact inspect")
    assert done.returncode == 0, done.stderr
    (latest,) = json.loads(done.stdout)
    assert latest["flow_run_id"] == str(flow_run.id)
    assert latest["type"] == "markdown"
    assert f"- {VIOLATION}" in latest["data"].splitlines()


@pytest.mark.slow
def test_a_bad_parameter_fails_within_seconds_naming_the_key(prefect, tmp_path):
    done = prefect.run(
        RUN.format(name="adult"), "--param", 'overrides=["gate.moed=fail"]',
        "--param", f"output={tmp_path}", timing="run with a bad override (to Failed)",
    )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr + prefect.log("worker")
    flow_run = _flow_run(prefect, _flow_run_id(done.stdout), "bad override")
    assert flow_run.state.is_failed()
    assert "gate.moed: unknown key" in flow_run.state.message
    assert (flow_run.end_time - flow_run.start_time).total_seconds() < 5
    assert not list(tmp_path.iterdir()), "nothing is written for a bad parameter"

    # A parameter of the wrong type never becomes a run: the server enforces the
    # deployment's parameter schema when the run is created.
    done = prefect.run(
        RUN.format(name="adult"), "--param", 'overrides="gate.mode=warn"',
        timing="run with overrides not a list (rejected)",
    )  # fmt: skip
    assert done.returncode == 1
    assert "Validation failed for field 'overrides'" in done.stdout + done.stderr
    assert "Created flow run" not in done.stdout


@pytest.mark.slow
def test_the_scheduled_deployment_shows_its_schedule(prefect):
    done = prefect.run(INSPECT, timing="deployment inspect")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "'cron': '0 4 * * *'" in done.stdout
    assert "'timezone': 'Europe/Berlin'" in done.stdout

    with prefect.client() as client:
        nightly = client.read_deployment_by_name("pretraining-check/adult-nightly")
        on_demand = client.read_deployment_by_name("pretraining-check/adult")
    (schedule,) = nightly.schedules
    assert schedule.active
    assert (schedule.schedule.cron, schedule.schedule.timezone) == (
        "0 4 * * *", "Europe/Berlin",
    )  # fmt: skip
    assert on_demand.schedules == []
    assert nightly.pull_steps == [
        {
            "prefect.deployments.steps.set_working_directory": {
                "directory": str(REPO_ROOT)
            }
        }
    ]
    assert nightly.job_variables["env"]["PREFECT_LOGGING_EXTRA_LOGGERS"] == "biasgate"
