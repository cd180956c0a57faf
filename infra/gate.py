"""Gates: `pulumi up` waits for a step (the data-prep Workflow, the Fluid DataLoad, the TFJob, a Deployment, a
Job) to succeed, and fails within seconds of it failing, naming the step and the reason from the object's
status, or of one of its pods getting stuck (`infra.podstatus`: an image that cannot be pulled, a missing
Secret key, a crash loop, a pod no node can take), naming the pod, the container and the message.

Why a gate and not the provider's await: `pulumi.com/waitFor` only watches for success
(pulumi/pulumi-kubernetes#4428, open), so a step that fails holds `pulumi up` for the whole timeout (30 minutes
for data prep, 1-2 hours for training) and then reports only a timeout. And the engine does not cut short
a resource's await when another resource fails, so a second watcher beside that await would not shorten it
either. So the step's own object is created without an await (`pulumi.com/skipAwait`), and a gate, a Pulumi
dynamic resource whose `create` polls the object's status every `POLL_S` seconds, stands in for the await:
it returns when the step succeeds, raises at once when it fails, and raises at the timeout with the last
status. Everything that needed the step to finish depends on its gate.

It reads the cluster through `infra.kubeapi` (the `kubernetes` client, with the kubeconfig and context the
stack's Kubernetes provider uses). `verdict` and `wait` are plain functions.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pulumi
from pulumi.dynamic import CreateResult, DiffResult, ResourceProvider

from infra import podstatus

POLL_S = 5.0

# kind -> (group, version, plural, what the user calls it)
KINDS = {
    "Workflow": ("argoproj.io", "v1alpha1", "workflows", "data prep Workflow"),
    "TFJob": ("kubeflow.org", "v1", "tfjobs", "TFJob"),
    "DataLoad": ("data.fluid.io", "v1alpha1", "dataloads", "Fluid DataLoad"),
    "Deployment": ("apps", "v1", "deployments", "Deployment"),
    "Job": ("batch", "v1", "jobs", "Job"),
}
# kind -> the label selector of its pods ({name}: the object's name); the DataLoad's run in Fluid's namespace.
POD_SELECTORS = {
    "Workflow": "workflows.argoproj.io/workflow={name}",
    "TFJob": "training.kubeflow.org/job-name={name}",
    "Job": "job-name={name}",
}
# A TFJob's replicas restart in place by design (a peer lost: exit 2, resume); its backoffLimit decides.
CRASH_LOOP_IS_FAILURE = {"Workflow": True, "TFJob": False, "Job": True, "Deployment": True}


class StepFailed(Exception):
    """A gated step failed or timed out; the message names the step and the reason."""


def _true_condition(status: dict, kind: str) -> dict | None:
    for c in status.get("conditions") or []:
        if c.get("type") == kind and str(c.get("status")) == "True":
            return c
    return None


def verdict(kind: str, obj: dict | None) -> tuple[str, str]:
    """("running" | "succeeded" | "failed", what happened) for a Workflow, TFJob or DataLoad as the API
    server returns it (None: not there yet)."""
    status = (obj or {}).get("status") or {}
    if kind == "Workflow":
        phase = status.get("phase") or "Pending"
        if phase == "Succeeded":
            return "succeeded", phase
        if phase in ("Failed", "Error"):
            failed = [
                n
                for n in (status.get("nodes") or {}).values()
                if n.get("type") in ("Pod", "Retry") and n.get("phase") in ("Failed", "Error")
            ]
            failed.sort(key=lambda n: (n.get("type") != "Pod", n.get("finishedAt") or ""))
            if failed:
                node = failed[0]
                step = node.get("displayName") or node.get("templateName") or node.get("name")
                return "failed", f"step {step}: {node.get('message') or phase}"
            return "failed", status.get("message") or phase
        return "running", phase
    if kind == "TFJob":
        if _true_condition(status, "Succeeded"):
            return "succeeded", "Succeeded"
        failed = _true_condition(status, "Failed")
        if failed:
            replicas = [
                f"{rtype} ({int(s.get('failed') or 0)} failed)"
                for rtype, s in sorted((status.get("replicaStatuses") or {}).items())
                if int(s.get("failed") or 0) > 0
            ]
            where = f"replica {', '.join(replicas)}: " if replicas else ""
            return "failed", f"{where}{failed.get('reason', 'Failed')}: {failed.get('message', '')}".rstrip(": ")
        running = [c.get("type") for c in status.get("conditions") or [] if str(c.get("status")) == "True"]
        return "running", running[-1] if running else "Pending"
    if kind == "DataLoad":
        phase = status.get("phase") or "Pending"
        if phase == "Complete":
            return "succeeded", phase
        if phase == "Failed":
            cond = _true_condition(status, "Failed") or {}
            return "failed", f"{cond.get('reason', 'Failed')}: {cond.get('message', '')}".rstrip(": ")
        return "running", phase
    if kind == "Deployment":
        return _deployment(obj or {}, status)
    if kind == "Job":
        if _true_condition(status, "Complete"):
            return "succeeded", "Complete"
        failed = _true_condition(status, "Failed")
        if failed:
            return "failed", f"{failed.get('reason', 'Failed')}: {failed.get('message', '')}".rstrip(": ")
        return "running", f"{int(status.get('active') or 0)} active, {int(status.get('failed') or 0)} failed"
    raise ValueError(f"no gate for kind {kind!r}")


def _deployment(obj: dict, status: dict) -> tuple[str, str]:
    """Rolled out: the controller has seen this generation and every replica is updated and available."""
    want = int((obj.get("spec") or {}).get("replicas", 1))
    available, updated = int(status.get("availableReplicas") or 0), int(status.get("updatedReplicas") or 0)
    seen = int(status.get("observedGeneration") or 0) >= int((obj.get("metadata") or {}).get("generation") or 0)
    if obj and seen and updated >= want and available >= want and int(status.get("replicas") or 0) <= want:
        return "succeeded", f"{available}/{want} available"
    for c in status.get("conditions") or []:
        if c.get("type") == "Progressing" and c.get("reason") == "ProgressDeadlineExceeded":
            return "failed", f"ProgressDeadlineExceeded: {c.get('message', '')}".rstrip(": ")
    return "running", f"{available}/{want} available"


def wait(
    get: Callable[[], dict | None],
    kind: str,
    name: str,
    timeout_s: float,
    *,
    poll_s: float | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    urn: str = "",
    pods: Callable[[], list[dict]] | None = None,
    events: Callable[[str], list[dict]] | None = None,
) -> str:
    """Polls `get()` until the step succeeds (returns what happened) or fails or times out (StepFailed).
    `pods()`: the step's pods as the API server lists them, checked each poll (`infra.podstatus`);
    `events(pod)`: that pod's events, read for the message of a stuck one; `urn`: the step object's URN, for
    the command that runs a failed step again."""
    what = KINDS[kind][3]
    poll_s = POLL_S if poll_s is None else poll_s
    deadline = clock() + timeout_s
    last = "not created yet"
    first = True
    unschedulable_since: dict[str, float] = {}
    while True:
        state, detail = verdict(kind, get())
        if state == "succeeded":
            return detail
        if state == "failed":
            raise StepFailed(f"{what} {name} failed: {detail}; {rerun_hint(urn, before=first)}")
        first = False
        stuck = _stuck_pod(pods() if pods else [], unschedulable_since, clock(), CRASH_LOOP_IS_FAILURE.get(kind, True))
        if stuck:
            event = podstatus.newest_warning(events(stuck.pod)) if events else None
            raise StepFailed(
                f"{what} {name} cannot come up: {stuck.describe(event)}; fix the image, the config or the "
                "requests, then `pulumi up` again"
            )
        last = detail
        if clock() >= deadline:
            raise StepFailed(
                f"{what} {name} did not finish within {timeout_s:.0f} s (last status: {last}); raise the "
                "timeout in the stack config or look at the step's pods"
            )
        sleep(poll_s)


def rerun_hint(urn: str, *, before: bool) -> str:
    """What to run after a failed step. The failed object stays in the cluster and in the stack's state, so a
    plain `pulumi up` with an unchanged spec finds it Failed again at once: `--replace` deletes and recreates it."""
    again = f"`pulumi up --replace '{urn}'`" if urn else "`pulumi up --replace <URN>` (`pulumi stack --show-urns`)"
    already = "it had already failed before this `pulumi up`; " if before else ""
    return (
        f"{already}see `kubectl describe` and the pod logs; to run it again unchanged: {again} "
        "(a changed spec replaces it on a plain `pulumi up`)"
    )


def _stuck_pod(pods: list[dict], since: dict[str, float], now: float, crash_loops: bool):
    for pod in pods:
        pod_name = (pod.get("metadata") or {}).get("name", "?")
        if podstatus.unschedulable(pod) is None:
            since.pop(pod_name, None)
        else:
            since.setdefault(pod_name, now)
        failure = podstatus.pod_failure(pod, now - since.get(pod_name, now))
        if failure and (crash_loops or failure.reason != "CrashLoopBackOff"):
            return failure
    return None


def _getter(props: dict) -> Callable[[], dict | None]:
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    from infra.kubeapi import api_client

    api = client.CustomObjectsApi(api_client(props.get("kubeconfig"), props.get("context")))
    group, version, plural, _ = KINDS[props["kind"]]

    def get() -> dict | None:
        try:
            return api.get_namespaced_custom_object(group, version, props["namespace"], plural, props["name"])
        except ApiException as e:
            if e.status == 404:
                return None
            raise

    return get


def _pod_readers(props: dict) -> tuple[Callable[[], list[dict]] | None, Callable[[str], list[dict]] | None]:
    """(the step's pods, a pod's events) as plain dicts, or (None, None) when the step has no pod selector."""
    selector = props.get("podSelector")
    if not selector:
        return None, None
    import json

    from kubernetes import client

    from infra.kubeapi import api_client

    core = client.CoreV1Api(api_client(props.get("kubeconfig"), props.get("context")))

    # The JSON as served (no model classes): their required-field checks would reject a partial status.
    def pods() -> list[dict]:
        listed = core.list_namespaced_pod(props["namespace"], label_selector=selector, _preload_content=False)
        return json.loads(listed.data).get("items") or []

    def events(pod: str) -> list[dict]:
        listed = core.list_namespaced_event(
            props["namespace"], field_selector=f"involvedObject.name={pod}", _preload_content=False
        )
        return json.loads(listed.data).get("items") or []

    return pods, events


class _GateProvider(ResourceProvider):
    def create(self, props: dict[str, Any]) -> CreateResult:
        name = f"{props['namespace']}/{props['name']}"
        pods, events = _pod_readers(props)
        timeout = float(props["timeoutSeconds"])
        urn = props.get("urn") or ""
        detail = wait(_getter(props), props["kind"], name, timeout, pods=pods, events=events, urn=urn)
        return CreateResult(id_=f"{name}/{props.get('uid') or ''}", outs={**props, "result": detail})

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        # A replaced object (new uid), a changed spec (new generation: a Deployment's new rollout) or another
        # step is a new gate; a timeout change is nothing to wait for.
        keys = ("kind", "namespace", "name", "uid", "generation", "kubeconfig", "context")
        changed = [k for k in keys if olds.get(k) != news.get(k)]
        return DiffResult(changes=bool(changed), replaces=changed, delete_before_replace=True)


class StepGate(pulumi.dynamic.Resource):
    """Created once the step (`kind`, `namespace`/`name`) has succeeded; fails `pulumi up` when it fails."""

    def __init__(
        self,
        resource_name: str,
        obj: pulumi.CustomResource,
        kind: str,
        namespace: pulumi.Input[str],
        name: str,
        timeout_s: int,
        kubeconfig: str | None,
        context: str | None,
        opts: pulumi.ResourceOptions | None = None,
        pod_selector: str | None = None,
    ):
        """`pod_selector`: the label selector of the step's pods (default: `POD_SELECTORS` for its kind)."""
        metadata = getattr(obj, "metadata", None)
        uid = pulumi.Output.from_input(metadata).apply(lambda m: (m or {}).get("uid") or "") if metadata else ""
        generation = (pulumi.Output.from_input(metadata).apply(lambda m: int((m or {}).get("generation") or 0))
                      if metadata else 0)
        props = {
            "kind": kind,
            "namespace": namespace,
            "name": name,
            "uid": uid,
            "generation": generation,
            "urn": obj.urn,  # for the command that runs a failed step again (not part of the diff)
            "timeoutSeconds": timeout_s,
            "kubeconfig": kubeconfig or "",
            "context": context or "",
            "podSelector": pod_selector or POD_SELECTORS.get(kind, "").format(name=name),
            "result": None,
        }
        super().__init__(
            _GateProvider(),
            resource_name,
            props,
            pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=[obj])),
        )
