"""A failed step fails `pulumi up` promptly: the gate sees Failed in the object's status
and raises with the step and the reason; success and timeout too. The last test runs the gate's real
`create` (the Kubernetes client, a kubeconfig and context) against a small HTTP server standing in for the
API server, serving a Workflow whose status turns Failed."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from infra import gate
from infra.gate import StepFailed, verdict, wait

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


class FakeApiServer:
    """Answers GET for one Workflow; its status turns Failed at the `fail_at`-th request."""

    def __init__(self, fail_at: int):
        self.requests: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                outer.requests.append(self.path)
                if self.path != "/apis/argoproj.io/v1alpha1/namespaces/kubeflow-e2e/workflows/prepare-data":
                    self.send_response(404)
                    self.end_headers()
                    return
                body = WF_FAILED if len(outer.requests) >= fail_at else {"status": {"phase": "Running"}}
                data = json.dumps({"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow", **body}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


def test_gate_create_against_an_api_server(tmp_path, monkeypatch):
    api = FakeApiServer(fail_at=3)
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        f"""apiVersion: v1
kind: Config
clusters: [{{name: c, cluster: {{server: "{api.url}"}}}}]
users: [{{name: u, user: {{token: t}}}}]
contexts: [{{name: other, context: {{cluster: nowhere, user: u}}}}, {{name: test, context: {{cluster: c, user: u}}}}]
current-context: other
"""
    )
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
    with pytest.raises(StepFailed) as e:
        gate._GateProvider().create(props)
    assert time.monotonic() - started < 10
    assert str(e.value).startswith(
        "data prep Workflow kubeflow-e2e/prepare-data failed: step prepare-data(0): Error (exit code 2)"
    )
    assert "already failed" not in str(e.value) and "`pulumi up --replace <URN>`" in str(e.value)
    assert len(api.requests) == 3
    api.server.shutdown()


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
