"""deployments/state-machine.asl.json describes the same DAG as the flow.

The flow runs for real (on the session's Prefect test server) along each path of the
DAG: passed, gate failed on the raw data, gate failed on the rebalanced training split,
validation failed. The task runs it made, in order, must be the Task states that the
state machine visits when its Choice states are fed the gate results of the same run,
and the run's end (Completed / Failed) must be the machine's end (Succeed / Fail).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import EXAMPLES_DIR, REPO_ROOT

from biasgate.config import IOSpec
from biasgate.errors import GateFailed, ValidationFailed

ASL_PATH = REPO_ROOT / "deployments" / "state-machine.asl.json"
TERMINAL = ("Succeed", "Fail")


@pytest.fixture(scope="module")
def machine() -> dict[str, Any]:
    return json.loads(ASL_PATH.read_text(encoding="utf-8"))


# ------------------------------------------------------------ a tiny ASL interpreter


def _get(data: dict[str, Any], path: str) -> Any:
    """Read a simple JSONPath (``$.a.b``); a missing key raises KeyError."""
    node: Any = data
    for part in path.removeprefix("$").split(".")[1:]:
        node = node[part]
    return node


def _set(data: dict[str, Any], path: str | None, value: Any) -> None:
    """Write a result at a ResultPath; ``null`` discards it, as in ASL."""
    if path is None:
        return
    *parents, last = path.removeprefix("$.").split(".")
    node = data
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value


def _matches(rule: dict[str, Any], data: dict[str, Any]) -> bool:
    if "And" in rule:
        return all(_matches(r, data) for r in rule["And"])
    if "Or" in rule:
        return any(_matches(r, data) for r in rule["Or"])
    if "Not" in rule:
        return not _matches(rule["Not"], data)
    try:
        value = _get(data, rule["Variable"])
    except KeyError:
        if "IsPresent" in rule:
            return rule["IsPresent"] is False
        message = f"{rule['Variable']} is not set when a Choice reads it"
        raise AssertionError(message) from None
    if "IsPresent" in rule:
        return rule["IsPresent"] is True
    for op in ("StringEquals", "BooleanEquals"):
        if op in rule:
            return value == rule[op]
    raise AssertionError(f"comparison not supported by this test: {rule}")


def _parameters(template: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
    return {
        key.removesuffix(".$"): _get(data, value) if key.endswith(".$") else value
        for key, value in template.items()
    }


def walk(
    machine: dict[str, Any], results: dict[str, dict[str, Any]], error_at: str | None
) -> tuple[list[str], dict[str, Any]]:
    """Run the machine: Task states return ``results[name]`` (or fail at ``error_at``).

    Returns the Task states visited in order and the terminal state reached, with the
    error it carries.
    """
    states, name = machine["States"], machine["StartAt"]
    data: dict[str, Any] = {"config_uri": "s3://b/adult.yaml", "run_uri": "s3://b/r"}
    visited: list[str] = []
    for _ in range(100):
        state = states[name]
        if state["Type"] == "Task":
            visited.append(name)
            if name == error_at:
                catch = state["Catch"][0]
                error = {"Error": "States.TaskFailed", "Cause": f"{name} failed"}
                _set(data, catch["ResultPath"], error)
                name = catch["Next"]
                continue
            _set(data, state.get("ResultPath", "$"), results.get(name, {}))
        elif state["Type"] == "Pass":
            _set(data, state["ResultPath"], _parameters(state["Parameters"], data))
        elif state["Type"] == "Choice":
            chosen = (c["Next"] for c in state["Choices"] if _matches(c, data))
            name = next(chosen, state["Default"])
            continue
        else:
            assert state["Type"] in TERMINAL, state
            return visited, {"Type": state["Type"], **data.get("error", {})}
        name = state["Next"]
    raise AssertionError("the state machine did not end within 100 states")


# --------------------------------------------------------------- the flow, for real


def _step_name(task_run: Any) -> str:
    """The ASL name of a task run: its templated name, else its task's name."""
    task = task_run.task_key.rsplit("-", 1)[0]
    default = f"{task}-{task_run.dynamic_key[:3]}"
    return task if task_run.name == default else task_run.name


def _run_flow(config: Path, output: Path, *overrides: str) -> dict[str, Any]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.client.schemas.sorting import TaskRunSort

    from biasgate.flows.pretraining_check import pretraining_check

    state = pretraining_check(
        config=str(config), overrides=list(overrides), output=str(output),
        return_state=True,
    )  # fmt: skip
    flow_run = FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id]))
    with get_client(sync_client=True) as client:
        task_runs = client.read_task_runs(
            flow_run_filter=flow_run, sort=TaskRunSort.EXPECTED_START_TIME_ASC
        )
    gate_files = list(output.glob("*/*/gate.json"))
    return {
        "state": state,
        "error": None if state.is_completed() else state.result(raise_on_failure=False),
        "steps": [_step_name(run) for run in task_runs],
        "retried": {_step_name(r) for r in task_runs if r.empirical_policy.retries},
        "gate": json.loads(gate_files[0].read_text()) if gate_files else None,
    }


def _gate_results(gate: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    """What the gate Task states return, taken from the run's gate.json."""
    if gate is None:
        return {}
    results = {"gate-raw": {"mode": gate["mode"], "passed": gate["raw"]["passed"]}}
    if gate["rebalanced_train"] is not None:
        results["gate-rebalanced_train"] = {"verdict": gate["verdict"]}
    for result in results.values():
        result["message"] = "; ".join(gate["violations"])
    return results


PATHS = {
    # Mitigate mode: the raw data breaks the policy, the rebalanced split passes.
    "passed": ("adult.yaml", ["rebalance.strategy=random_over"]),
    "gate-failed-raw": ("adult-fail.yaml", []),
    # Mitigate mode without rebalancing: the training split still breaks the policy.
    "gate-failed-rebalanced": ("adult.yaml", ["rebalance.strategy=none"]),
    # The label values keep their leading spaces: the expectation suite fails.
    "validation-failed": ("adult.yaml", ["read.skipinitialspace=false"]),
}


@pytest.fixture(scope="module")
def flow_runs(prefect_harness, tmp_path_factory) -> dict[str, dict[str, Any]]:
    runs = {}
    for path, (config, overrides) in PATHS.items():
        output = tmp_path_factory.mktemp(path)
        runs[path] = _run_flow(EXAMPLES_DIR / config, output, *overrides)
    return runs


@pytest.mark.parametrize("path", list(PATHS))
def test_each_path_of_the_flow_is_a_path_of_the_state_machine(machine, flow_runs, path):
    run = flow_runs[path]
    error_at = None
    if isinstance(run["error"], ValidationFailed):
        error_at = "validate"  # in Step Functions the validate job ends in error
    visited, end = walk(machine, _gate_results(run["gate"]), error_at)
    assert visited == run["steps"]
    if run["state"].is_completed():
        assert end == {"Type": "Succeed"}
    else:
        assert run["state"].is_failed()
        assert end["Type"] == "Fail"
    if isinstance(run["error"], GateFailed):
        assert end["Error"] == "GateFailed"


def test_the_paths_cover_every_task_state_and_end(machine, flow_runs):
    states = machine["States"]
    tasks = {name for name, state in states.items() if state["Type"] == "Task"}
    assert tasks == {step for run in flow_runs.values() for step in run["steps"]}
    assert flow_runs["passed"]["steps"] == [
        "ingest", "validate", "measure-raw", "gate-raw", "split", "rebalance",
        "measure-rebalanced_train", "gate-rebalanced_train", "publish",
    ]  # fmt: skip
    assert flow_runs["gate-failed-raw"]["steps"] == [
        "ingest", "validate", "measure-raw", "gate-raw", "publish",
    ]  # fmt: skip


def test_only_io_states_retry_with_the_flow_s_back_off(machine, flow_runs):
    states = machine["States"]
    retrying = {name for name, state in states.items() if state.get("Retry")}
    assert retrying == flow_runs["passed"]["retried"] == {"ingest", "publish"}
    io = IOSpec()
    for name in retrying:
        (retry,) = states[name]["Retry"]
        assert "States.ALL" not in retry["ErrorEquals"], "only transient errors retry"
        assert retry["MaxAttempts"] == io.retries
        assert retry["IntervalSeconds"] == io.retry_delay_seconds
        assert retry["BackoffRate"] == io.backoff


def test_each_gate_is_a_choice_with_a_fail_branch(machine):
    states = machine["States"]
    for evaluated_on in ("raw", "rebalanced_train"):
        gate = states[f"gate-{evaluated_on}"]
        choice = states[gate["Next"]]
        assert choice["Type"] == "Choice"
        (rule,) = choice["Choices"]
        failed = states[rule["Next"]]
        assert failed["Type"] == "Pass"
        assert failed["Parameters"]["Error"] == "GateFailed"
        # nothing measured is lost: the failure is published before the run fails
        assert failed["Next"] == "publish"
    outcome = states[states["publish"]["Next"]]
    assert outcome["Type"] == "Choice"
    assert states[outcome["Choices"][0]["Next"]]["Type"] == "Fail"
    assert states[outcome["Default"]]["Type"] == "Succeed"


def test_the_definition_is_well_formed(machine):
    states = machine["States"]
    assert machine["StartAt"] in states
    targets: dict[str, set[str]] = {}
    for name, state in states.items():
        assert len(name) <= 80 and not set(name) & set(" ?*<>{}[]"), name
        nexts = {state[k] for k in ("Next", "Default") if k in state}
        nexts |= {c["Next"] for c in state.get("Choices", []) + state.get("Catch", [])}
        assert nexts <= set(states), f"{name} leads to an unknown state"
        assert bool(nexts) != (state["Type"] in TERMINAL), name
        if state["Type"] == "Task":
            assert state["Resource"].startswith("arn:aws:states:::")
            if name != "publish":
                assert [c["Next"] for c in state["Catch"]] == ["publish"], name
        targets[name] = nexts
    reached, todo = set(), [machine["StartAt"]]
    while todo:
        name = todo.pop()
        if name not in reached:
            reached.add(name)
            todo.extend(targets[name])
    assert reached == set(states), f"unreachable: {set(states) - reached}"
