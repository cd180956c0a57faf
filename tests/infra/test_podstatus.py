"""Every workload fails fast: the pod statuses that mean a workload will not come up by itself, written here
as the API server reports them, and the gate failing at the first poll that sees one, naming the object, the
pod, the container and the message. Also the Deployment and Job verdicts the gates of MinIO, TensorBoard,
serving and the bucket Job use."""

from __future__ import annotations

import pytest

from infra import gate, podstatus
from infra.gate import StepFailed, verdict, wait

from .test_gate import Clock, statuses


def pod(name: str, *, waiting: tuple[str, str] | None = None, restarts: int = 0, init: bool = False,
        last: dict | None = None, unschedulable: str | None = None, phase: str = "Pending") -> dict:
    status: dict = {"phase": phase}
    if waiting:
        c = {"name": "main", "restartCount": restarts, "state": {"waiting": {"reason": waiting[0],
                                                                            "message": waiting[1]}}}
        if last:
            c["lastState"] = {"terminated": last}
        status["initContainerStatuses" if init else "containerStatuses"] = [c]
    if unschedulable:
        status["conditions"] = [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                 "message": unschedulable}]
    return {"metadata": {"name": name}, "status": status}


PULL = 'Back-off pulling image "kubeflow-e2e/trainer:nope"'


@pytest.mark.parametrize(("reason", "message"), [
    ("ErrImagePull", 'rpc error: code = NotFound desc = failed to pull and unpack image "x:nope": not found'),
    ("ImagePullBackOff", PULL),
    ("InvalidImageName", 'Failed to apply default image tag "Bad:Name": couldn\'t parse image name'),
    ("CreateContainerConfigError", 'couldn\'t find key AWS_ACCESS_KEY_ID in Secret kubeflow-e2e/s3-credentials'),
])
def test_a_container_that_cannot_start_is_stuck_at_once(reason, message):
    failure = podstatus.pod_failure(pod("serving-abc", waiting=(reason, message)))
    assert failure == podstatus.PodFailure("serving-abc", "main", reason, message)
    assert failure.describe() == f"pod serving-abc container main: {reason}: {message}"


def test_an_init_container_counts_too():
    failure = podstatus.pod_failure(pod("serving-abc", waiting=("ImagePullBackOff", PULL), init=True))
    assert failure.container == "main" and failure.reason == "ImagePullBackOff"


def test_a_crash_loop_counts_after_its_restarts_with_the_last_exit():
    once = pod("minio-1", waiting=("CrashLoopBackOff", "back-off 10s"), restarts=1)
    assert podstatus.pod_failure(once) is None
    looping = pod("minio-1", waiting=("CrashLoopBackOff", "back-off 20s"), restarts=2,
                  last={"exitCode": 1, "reason": "Error", "message": "ERROR Unable to use the drive /data\n"})
    assert podstatus.pod_failure(looping).describe() == (
        "pod minio-1 container main: CrashLoopBackOff: restarted 2 times, last exit code 1 (Error): "
        "ERROR Unable to use the drive /data")


def test_unschedulable_counts_after_its_grace():
    p = pod("tb-1", unschedulable="0/1 nodes are available: 1 Insufficient cpu.")
    assert podstatus.pod_failure(p, unschedulable_for_s=podstatus.UNSCHEDULABLE_GRACE_S - 1) is None
    failure = podstatus.pod_failure(p, unschedulable_for_s=podstatus.UNSCHEDULABLE_GRACE_S)
    assert failure.describe() == "pod tb-1: Unschedulable: 0/1 nodes are available: 1 Insufficient cpu."


@pytest.mark.parametrize("p", [
    pod("ok", phase="Running"),
    pod("pulling", waiting=("ContainerCreating", "")),
    pod("done", waiting=("ErrImagePull", "x"), phase="Succeeded"),
])
def test_pods_on_their_way_are_not_stuck(p):
    assert podstatus.pod_failure(p, unschedulable_for_s=3600) is None


def test_the_newest_warning_event_adds_its_text():
    events = [
        {"type": "Normal", "message": "Pulling image", "lastTimestamp": "2026-12-07T01:00:03Z"},
        {"type": "Warning", "message": "Failed to pull image: old", "lastTimestamp": "2026-12-07T01:00:01Z"},
        {"type": "Warning", "message": "Failed to pull image \"x:nope\": not found\n",
         "lastTimestamp": "2026-12-07T01:00:02Z"},
    ]
    assert podstatus.newest_warning(events) == 'Failed to pull image "x:nope": not found'
    assert podstatus.newest_warning(events[:1]) is None


# ---- the gates, polling their pods --------------------------------------------------------------------------


def test_a_deployment_with_a_wrong_image_fails_the_gate_at_the_first_poll_that_sees_it():
    clock = Clock()
    rolling = {"metadata": {"generation": 1}, "spec": {"replicas": 1}, "status": {"observedGeneration": 1}}
    listed = iter([[pod("serving-1", waiting=("ContainerCreating", ""))],
                   [pod("serving-1", waiting=("ErrImagePull", "not found"))]])
    with pytest.raises(StepFailed) as e:
        wait(statuses(rolling), "Deployment", "kubeflow-e2e/serving", 600, clock=clock, sleep=clock.sleep,
             pods=lambda: next(listed), events=lambda name: [{"type": "Warning", "message": f"{name}: pull failed"}])
    assert clock.t == gate.POLL_S
    assert str(e.value) == (
        "Deployment kubeflow-e2e/serving cannot come up: pod serving-1 container main: ErrImagePull: not found "
        "(event: serving-1: pull failed); fix the image, the config or the requests, then `pulumi up` again")


def test_an_unschedulable_pod_fails_the_gate_after_the_grace_not_at_the_timeout():
    clock = Clock()
    stuck = [pod("tensorboard-1", unschedulable="0/1 nodes are available: 1 Insufficient memory.")]
    with pytest.raises(StepFailed) as e:
        wait(statuses({"metadata": {"generation": 1}, "status": {}}), "Deployment", "ns/tensorboard", 600,
             clock=clock, sleep=clock.sleep, pods=lambda: stuck)
    assert podstatus.UNSCHEDULABLE_GRACE_S <= clock.t < podstatus.UNSCHEDULABLE_GRACE_S + 2 * gate.POLL_S
    assert "pod tensorboard-1: Unschedulable: 0/1 nodes are available: 1 Insufficient memory." in str(e.value)


def test_a_tfjob_replica_crash_loop_is_left_to_its_backoff_limit_but_a_bad_image_is_not():
    clock = Clock()
    running = {"status": {"conditions": [{"type": "Running", "status": "True"}]}}
    looping = [pod("mnist-baseline-worker-0", waiting=("CrashLoopBackOff", "back-off"), restarts=3)]
    with pytest.raises(StepFailed) as e:  # runs to the timeout: the crash loop alone never fails it
        wait(statuses(running), "TFJob", "ns/mnist-baseline", 60, clock=clock, sleep=clock.sleep, pods=lambda: looping)
    assert "did not finish within 60 s" in str(e.value)
    bad = [pod("mnist-baseline-chief-0", waiting=("InvalidImageName", "bad name"))]
    with pytest.raises(StepFailed) as e:
        wait(statuses(running), "TFJob", "ns/mnist-baseline", 60, clock=clock, sleep=clock.sleep, pods=lambda: bad)
    assert "TFJob ns/mnist-baseline cannot come up: pod mnist-baseline-chief-0 container main: InvalidImageName" in (
        str(e.value))


def test_deployment_and_job_verdicts():
    meta = {"metadata": {"generation": 2}, "spec": {"replicas": 2}}
    assert verdict("Deployment", None) == ("running", "0/1 available")
    assert verdict("Deployment", {**meta, "status": {"observedGeneration": 1, "availableReplicas": 2,
                                                      "updatedReplicas": 2, "replicas": 2}})[0] == "running"
    assert verdict("Deployment", {**meta, "status": {"observedGeneration": 2, "availableReplicas": 2,
                                                      "updatedReplicas": 2, "replicas": 2}}) == (
        "succeeded", "2/2 available")
    # an old replica still terminating: not rolled out yet
    assert verdict("Deployment", {**meta, "status": {"observedGeneration": 2, "availableReplicas": 2,
                                                      "updatedReplicas": 2, "replicas": 3}})[0] == "running"
    deadline = {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
                "message": 'ReplicaSet "serving-7c9" has timed out progressing.'}
    assert verdict("Deployment", {**meta, "status": {"observedGeneration": 2, "conditions": [deadline]}}) == (
        "failed", 'ProgressDeadlineExceeded: ReplicaSet "serving-7c9" has timed out progressing.')
    assert verdict("Job", {"status": {"conditions": [{"type": "Complete", "status": "True"}]}}) == (
        "succeeded", "Complete")
    failed = {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
              "message": "Job has reached the specified backoff limit"}
    assert verdict("Job", {"status": {"conditions": [failed]}}) == (
        "failed", "BackoffLimitExceeded: Job has reached the specified backoff limit")
    assert verdict("Job", {"status": {"active": 1}}) == ("running", "1 active, 0 failed")


def test_the_gates_create_reads_pods_and_events_through_the_kubernetes_client(tmp_path, monkeypatch):
    """The real `create` (the `kubernetes` client, a kubeconfig and context) against a stand-in API server
    whose serving Deployment never rolls out because its pod cannot pull its image."""
    import time

    from tests.helpers.apiserver import NOT_FOUND, StandInAPIServer

    stuck = pod("serving-5d8-x2k", waiting=("ImagePullBackOff", 'Back-off pulling image "tensorflow/serving:nope"'))
    answers = {
        "/apis/apps/v1/namespaces/kubeflow-e2e/deployments/serving": {
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "serving", "generation": 1},
            "spec": {"replicas": 1, "selector": {}, "template": {}}, "status": {"observedGeneration": 1}},
        "/api/v1/namespaces/kubeflow-e2e/pods": {"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": [
            {"apiVersion": "v1", "kind": "Pod", **stuck}]},
        "/api/v1/namespaces/kubeflow-e2e/events": {"apiVersion": "v1", "kind": "EventList", "metadata": {}, "items": [
            {"metadata": {"name": "e1"}, "involvedObject": {"name": "serving-5d8-x2k"}, "type": "Warning",
             "reason": "Failed", "lastTimestamp": "2026-12-07T01:00:00Z",
             "message": 'Failed to pull image "tensorflow/serving:nope": not found'}]},
    }
    server = StandInAPIServer(lambda path: (200, answers[path.split("?")[0]]) if path.split("?")[0] in answers
                              else (404, NOT_FOUND))
    kubeconfig = server.kubeconfig(tmp_path / "kubeconfig")
    monkeypatch.setattr(gate, "POLL_S", 0.2)
    props = {"kind": "Deployment", "namespace": "kubeflow-e2e", "name": "serving", "uid": "u1",
             "timeoutSeconds": 600, "kubeconfig": str(kubeconfig), "context": "test",
             "podSelector": "app.kubernetes.io/name=serving"}
    started = time.monotonic()
    with server, pytest.raises(StepFailed) as e:
        gate._GateProvider().create(props)
    assert time.monotonic() - started < 10
    assert str(e.value).startswith(
        'Deployment kubeflow-e2e/serving cannot come up: pod serving-5d8-x2k container main: ImagePullBackOff: '
        'Back-off pulling image "tensorflow/serving:nope" (event: Failed to pull image "tensorflow/serving:nope": '
        'not found)')
    assert any("labelSelector=app.kubernetes.io%2Fname%3Dserving" in p for p in server.paths)
    assert any("fieldSelector=involvedObject.name%3Dserving-5d8-x2k" in p for p in server.paths)
