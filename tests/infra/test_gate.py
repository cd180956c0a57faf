"""A failed step fails `pulumi up` promptly: the gate sees Failed in the object's status
and raises with the step and the reason; success and timeout too. The last test runs the gate's real
`create` (the Kubernetes client, a kubeconfig and context) against a small HTTP server standing in for the
API server, serving a Workflow whose status turns Failed."""

from __future__ import annotations

import time

import pytest

from infra import gate
from infra.gate import StepFailed, verdict, wait
from tests.helpers.apiserver import NOT_FOUND, StandInAPIServer

WF_FAILED = {
    "status": {
        "phase": "Failed",
        "message": "child 'prepare-data-123' failed",
        "nodes": {
            "prepare-data": {"type": "Steps", "phase": "Failed", "displayName": "prepare-data"},
            "prepare-data-123": {
                "type": "Pod",
                "phase": "Failed",
                "displayName": "prepare-data(0)",
                "templateName": "prepare-data",
                "message": "Error (exit code 2)",
            },
        },
    }
}
TFJOB_FAILED = {
    "status": {
        "conditions": [
            {"type": "Created", "status": "True"},
            {"type": "Running", "status": "False"},
            {
                "type": "Failed",
                "status": "True",
                "reason": "TFJobFailed",
                "message": "TFJob kubeflow-e2e/mnist-baseline has failed because 1 Chief replica(s) failed.",
            },
        ],
        "replicaStatuses": {"Chief": {"failed": 1}, "Worker": {"active": 1}},
    }
}


def test_verdicts():
    assert verdict("Workflow", None) == ("running", "Pending")
    assert verdict("Workflow", {"status": {"phase": "Running"}}) == ("running", "Running")
    assert verdict("Workflow", {"status": {"phase": "Succeeded"}})[0] == "succeeded"
    assert verdict("Workflow", WF_FAILED) == ("failed", "step prepare-data(0): Error (exit code 2)")
    assert verdict("Workflow", {"status": {"phase": "Error", "message": "boom"}}) == ("failed", "boom")
    assert verdict("TFJob", {"status": {"conditions": [{"type": "Running", "status": "True"}]}}) == (
        "running",
        "Running",
    )
    assert verdict("TFJob", {"status": {"conditions": [{"type": "Succeeded", "status": "True"}]}})[0] == "succeeded"
    state, detail = verdict("TFJob", TFJOB_FAILED)
    assert state == "failed"
    assert detail == (
        "replica Chief (1 failed): TFJobFailed: TFJob kubeflow-e2e/mnist-baseline has failed because 1 Chief "
        "replica(s) failed."
    )
    assert verdict("DataLoad", {"status": {"phase": "Complete"}})[0] == "succeeded"
    assert verdict("DataLoad", {"status": {"phase": "Failed"}})[0] == "failed"


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.t += s


def statuses(*objs):
    it = iter(objs)
    last = {}

    def get():
        nonlocal last
        last = next(it, last)
        return last

    return get


def test_a_step_that_turns_failed_fails_at_the_next_poll():
    clock = Clock()
    running = {"status": {"conditions": [{"type": "Running", "status": "True"}]}}
    get = statuses(None, running, running, TFJOB_FAILED)
    with pytest.raises(StepFailed) as e:
        wait(get, "TFJob", "kubeflow-e2e/mnist-baseline", 3600, clock=clock, sleep=clock.sleep)
    assert clock.t == 3 * gate.POLL_S  # found at the first poll after it failed, not at the timeout
    assert str(e.value).startswith(
        "TFJob kubeflow-e2e/mnist-baseline failed: replica Chief (1 failed): TFJobFailed: TFJob"
    )


def test_a_job_that_had_already_failed_names_the_command_that_runs_it_again():
    """A second `pulumi up` after a Failed TFJob finds the same object Failed: the error gives the exact
    command that deletes and recreates it."""
    urn = "urn:pulumi:prod::kubeflow-e2e::kubeflow-e2e:infra:Training$kubernetes:kubeflow.org/v1:TFJob::tfjob"
    clock = Clock()
    with pytest.raises(StepFailed) as e:
        wait(statuses(TFJOB_FAILED), "TFJob", "ns/mnist-baseline", 3600, clock=clock, sleep=clock.sleep, urn=urn)
    assert "it had already failed before this `pulumi up`" in str(e.value)
    assert f"`pulumi up --replace '{urn}'`" in str(e.value)
    assert clock.t == 0


def test_success_and_timeout():
    clock = Clock()
    get = statuses({"status": {"phase": "Running"}}, {"status": {"phase": "Succeeded"}})
    assert wait(get, "Workflow", "ns/prepare-data", 60, clock=clock, sleep=clock.sleep) == "Succeeded"
    clock = Clock()
    with pytest.raises(StepFailed, match=r"did not finish within 30 s \(last status: Running\)"):
        wait(statuses({"status": {"phase": "Running"}}), "Workflow", "ns/w", 30, clock=clock, sleep=clock.sleep)


def failing_workflow(fail_at: int) -> StandInAPIServer:
    """Answers GET for one Workflow; its status turns Failed at the `fail_at`-th request."""
    asked = []

    def answer(path: str) -> tuple[int, dict]:
        asked.append(path)
        if path != "/apis/argoproj.io/v1alpha1/namespaces/kubeflow-e2e/workflows/prepare-data":
            return 404, NOT_FOUND
        body = WF_FAILED if len(asked) >= fail_at else {"status": {"phase": "Running"}}
        return 200, {"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow", **body}

    return StandInAPIServer(answer)


def test_gate_create_against_an_api_server(tmp_path, monkeypatch):
    api = failing_workflow(fail_at=3)
    kubeconfig = api.kubeconfig(tmp_path / "kubeconfig")  # "test" is not its current context
    monkeypatch.setattr(gate, "POLL_S", 0.2)
    props = {
        "kind": "Workflow",
        "namespace": "kubeflow-e2e",
        "name": "prepare-data",
        "uid": "u1",
        "timeoutSeconds": 1800,
        "kubeconfig": str(kubeconfig),
        "context": "test",  # not the current context
    }
    started = time.monotonic()
    with api, pytest.raises(StepFailed) as e:
        gate._GateProvider().create(props)
    assert time.monotonic() - started < 10
    assert str(e.value).startswith(
        "data prep Workflow kubeflow-e2e/prepare-data failed: step prepare-data(0): Error (exit code 2)"
    )
    assert "already failed" not in str(e.value) and "`pulumi up --replace <URN>`" in str(e.value)
    assert len(api.paths) == 3


def test_the_gate_knows_its_objects_urn(dev):
    (g,) = [r for r in dev.resources if r["type"].startswith("pulumi-python:dynamic") and r["name"] == "gate-tfjob"]
    (job,) = [r for r in dev.resources if r["type"] == "kubernetes:kubeflow.org/v1:TFJob"]
    assert g["inputs"]["urn"] == job["urn"]


def test_a_changed_spec_replaces_the_gate_so_the_new_rollout_is_checked():
    """A Deployment updated in place keeps its uid but gets a new generation: its gate is replaced, so a new
    rollout that cannot come up (a wrong image) fails `pulumi up` instead of passing unseen."""
    olds = {"kind": "Deployment", "namespace": "ns", "name": "tensorboard", "uid": "u1", "generation": 1,
            "timeoutSeconds": 600, "kubeconfig": "", "context": ""}
    provider = gate._GateProvider()
    rolled = provider.diff("id", olds, {**olds, "generation": 2})
    assert rolled.changes and rolled.replaces == ["generation"]
    assert not provider.diff("id", olds, {**olds, "timeoutSeconds": 900}).changes
