"""Gates: `pulumi up` waits for a step (the data-prep Workflow, the Fluid DataLoad, the TFJob) to succeed, and
fails within seconds of it failing, naming the step and the reason from the object's status.

Why a gate and not the provider's await: `pulumi.com/waitFor` only watches for success
(pulumi/pulumi-kubernetes#4428, open), so a step that fails holds `pulumi up` for the whole timeout (30 minutes
for data prep, 1-2 hours for training) and then reports only a timeout. And the engine does not cut short
a resource's await when another resource fails, so a second watcher beside that await would not shorten it
either. So the step's own object is created without an await (`pulumi.com/skipAwait`), and a gate, a Pulumi
dynamic resource whose `create` polls the object's status every `POLL_S` seconds, stands in for the await:
it returns when the step succeeds, raises at once when it fails, and raises at the timeout with the last
status. Everything that needed the step to finish depends on its gate.

This is the one module that reads objects from the cluster itself (the `kubernetes` client), with the
kubeconfig and context the stack's Kubernetes provider uses. `verdict` and `wait` are plain functions.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pulumi
from pulumi.dynamic import CreateResult, DiffResult, ResourceProvider

POLL_S = 5.0

# kind -> (group, version, plural, what the user calls it)
KINDS = {
    "Workflow": ("argoproj.io", "v1alpha1", "workflows", "data prep Workflow"),
    "TFJob": ("kubeflow.org", "v1", "tfjobs", "TFJob"),
    "DataLoad": ("data.fluid.io", "v1alpha1", "dataloads", "Fluid DataLoad"),
}


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
    raise ValueError(f"no gate for kind {kind!r}")


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
) -> str:
    """Polls `get()` until the step succeeds (returns what happened) or fails or times out (StepFailed).
    `urn`: the step object's Pulumi URN, for the command that runs a failed step again."""
    what = KINDS[kind][3]
    poll_s = POLL_S if poll_s is None else poll_s
    deadline = clock() + timeout_s
    last = "not created yet"
    first = True
    while True:
        state, detail = verdict(kind, get())
        if state == "succeeded":
            return detail
        if state == "failed":
            raise StepFailed(f"{what} {name} failed: {detail}; {rerun_hint(urn, before=first)}")
        first = False
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


def _getter(props: dict) -> Callable[[], dict | None]:
    from kubernetes import client, config
    from kubernetes.client.exceptions import ApiException

    api = client.CustomObjectsApi(
        config.new_client_from_config(config_file=props.get("kubeconfig") or None, context=props.get("context") or None)
    )
    group, version, plural, _ = KINDS[props["kind"]]

    def get() -> dict | None:
        try:
            return api.get_namespaced_custom_object(group, version, props["namespace"], plural, props["name"])
        except ApiException as e:
            if e.status == 404:
                return None
            raise

    return get


class _GateProvider(ResourceProvider):
    def create(self, props: dict[str, Any]) -> CreateResult:
        name = f"{props['namespace']}/{props['name']}"
        detail = wait(
            _getter(props), props["kind"], name, float(props["timeoutSeconds"]), urn=props.get("urn") or ""
        )
        return CreateResult(id_=f"{name}/{props.get('uid') or ''}", outs={**props, "result": detail})

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        # A replaced object (new uid) or another step is a new gate; a timeout change is nothing to wait for.
        keys = ("kind", "namespace", "name", "uid", "kubeconfig", "context")
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
    ):
        metadata = getattr(obj, "metadata", None)
        uid = pulumi.Output.from_input(metadata).apply(lambda m: (m or {}).get("uid") or "") if metadata else ""
        props = {
            "kind": kind,
            "namespace": namespace,
            "name": name,
            "uid": uid,
            "urn": obj.urn,  # for the command that runs a failed step again (not part of the diff)
            "timeoutSeconds": timeout_s,
            "kubeconfig": kubeconfig or "",
            "context": context or "",
            "result": None,
        }
        super().__init__(
            _GateProvider(),
            resource_name,
            props,
            pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=[obj])),
        )
