"""The Kubernetes rules: container hardening (limits, non-root, capabilities, pinned images, no literal
secrets), no public Services, and a bound on the TFJob's replicas. Each is `check(resource, config) ->
[message]` (rules.py collects them into the rule set)."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

if __package__:  # policy.k8s_rules: the program's environment (the tests, python -m policy.check)
    from policy.manifests import containers, embedded_objects, get_path, inputs_of, is_list, is_map, truthy
else:  # k8s_rules: the pack's own environment, where policy/ is the first sys.path entry (pack.py)
    from manifests import containers, embedded_objects, get_path, inputs_of, is_list, is_map, truthy


# --- container rules ------------------------------------------------------------------------------------

# Upstream components (Argo's chart, Fluid's chart with its privileged CSI plugin, the training operator's
# manifests) run in namespaces of their own and are hardened, or not, upstream. A real `pulumi preview`
# shows their objects to the pack; the pack's config may exempt those namespaces from the hardening rules.
EXEMPT = {"excludeNamespaces": {"type": "array", "items": {"type": "string"}, "default": [],
                                "description": "namespaces of upstream components the rule does not judge"}}


def exempt(resource: Mapping, config: Mapping) -> bool:
    namespace = get_path(inputs_of(resource), "metadata", "namespace")
    return bool(namespace) and namespace in (config.get("excludeNamespaces") or [])


def judged_containers(resource: Mapping, config: Mapping) -> list:
    """The resource's containers the hardening rules judge: none in an exempt namespace."""
    return [] if exempt(resource, config) else containers(resource)



def check_limits(resource: Mapping, config: Mapping) -> list[str]:
    problems = []
    for container in judged_containers(resource, config):
        limits = get_path(container.spec, "resources", "limits")
        missing = [kind for kind in ("cpu", "memory") if not (is_map(limits) and limits.get(kind))]
        if missing:
            problems.append(f"{container.label} has no {' or '.join(missing)} limit: set resources.limits")
    return problems


def check_non_root(resource: Mapping, config: Mapping) -> list[str]:
    problems = []
    for container in judged_containers(resource, config):
        own = container.spec.get("securityContext")
        own = own if is_map(own) else {}
        non_root = own.get("runAsNonRoot", container.pod_security.get("runAsNonRoot"))
        user = own.get("runAsUser", container.pod_security.get("runAsUser"))
        if isinstance(user, int | float) and user == 0:
            problems.append(f"{container.label} runs as user 0 (root)")
        elif non_root is False or (not truthy(non_root) and user is None):
            problems.append(f"{container.label} may run as root: set securityContext.runAsNonRoot: true")
    return problems


def check_capabilities(resource: Mapping, config: Mapping) -> list[str]:
    problems = []
    for container in judged_containers(resource, config):
        security = container.spec.get("securityContext")
        drop = get_path(security, "capabilities", "drop")
        dropped = {str(item).upper() for item in drop} if is_list(drop) else set()
        if "ALL" not in dropped:
            problems.append(f"{container.label} keeps Linux capabilities: "
                            "set securityContext.capabilities.drop: [ALL]")
        if truthy(get_path(security, "privileged")):
            problems.append(f"{container.label} is privileged")
    return problems


DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


def image_problem(image: Any) -> str | None:
    """Why an image reference is not pinned, or None when it names a fixed tag or a digest."""
    if not isinstance(image, str) or not image.strip():
        return "has no image"
    if "@" in image:
        digest = image.split("@", 1)[1]
        return None if DIGEST.fullmatch(digest) else f"has a malformed digest ({image})"
    last = image.rsplit("/", 1)[-1]  # a registry host may carry a port: look after the last slash
    if ":" not in last:
        return f"has no tag, so it floats on :latest ({image})"
    tag = last.split(":", 1)[1]
    if not tag or tag.lower() == "latest":
        return f"uses the moving tag :latest ({image})"
    return None


def check_images(resource: Mapping, config: Mapping) -> list[str]:
    problems = []
    for container in containers(resource):
        problem = image_problem(container.spec.get("image"))
        if problem:
            problems.append(f"{container.label} {problem}: pin a version tag or a sha256 digest")
    return problems


SECRET_NAME = re.compile(r"SECRET|PASSWORD|PASSWD|TOKEN|API_?KEY|ACCESS_KEY|PRIVATE_KEY|CREDENTIAL", re.I)
# A variable that only points at a secret (a file path, the name of a Secret) is not the secret itself.
POINTER_SUFFIX = re.compile(r"_(FILE|PATH|DIR|NAME|REF|ARN)$", re.I)
SECRET_VALUE = re.compile(
    r"AKIA[0-9A-Z]{16}"  # an AWS access key id
    r"|-----BEGIN [A-Z ]*PRIVATE KEY-----"
    r"|://[^/\s:@]+:[^/\s@]+@"  # credentials inside a URL
)


def check_literal_secrets(resource: Mapping, config: Mapping) -> list[str]:
    problems = []
    for container in containers(resource):
        env = container.spec.get("env")
        for item in env if is_list(env) else []:
            if not is_map(item) or "value" not in item:
                continue  # valueFrom (secretKeyRef) is the way secrets should arrive
            name, value = str(item.get("name", "")), item["value"]
            if not isinstance(value, str) or not value:
                continue
            secret_name = SECRET_NAME.search(name) and not POINTER_SUFFIX.search(name)
            if secret_name or SECRET_VALUE.search(value):
                problems.append(
                    f"{container.label} sets {name} as a literal env value: "
                    "use valueFrom.secretKeyRef (a Kubernetes Secret) or IRSA"
                )
    return problems


# --- Services -------------------------------------------------------------------------------------------

EXPOSED = {"LoadBalancer": "allowLoadBalancer", "NodePort": "allowNodePort"}


def check_services(resource: Mapping, config: Mapping) -> list[str]:
    type_token = str(resource.get("type", ""))
    inputs = inputs_of(resource)
    if type_token == "kubernetes:core/v1:Service":
        kind = get_path(inputs, "spec", "type")
        if kind in EXPOSED and not config.get(EXPOSED[kind]):
            return [f"Service is of type {kind}: use ClusterIP (reach it with kubectl port-forward or an "
                    f"Ingress), or set {EXPOSED[kind]} in the policy config"]
        return []
    # A Helm chart registers as one resource with its values: look for the usual service-type knobs.
    problems = []
    for where, kind in _chart_service_types(get_path(inputs, "values"), "values"):
        if kind in EXPOSED and not config.get(EXPOSED[kind]):
            problems.append(f"chart value {where} is {kind}: use ClusterIP or set {EXPOSED[kind]}")
    return problems


def _chart_service_types(node: Any, path: str) -> Iterator[tuple[str, Any]]:
    if is_map(node):
        for key in node:
            child = node[key]
            where = f"{path}.{key}"
            if key == "serviceType" or (key == "type" and path.endswith(("service", "Service"))):
                yield where, child
            else:
                yield from _chart_service_types(child, where)
    elif is_list(node):
        for index, item in enumerate(node):
            yield from _chart_service_types(item, f"{path}[{index}]")


# --- TFJob ----------------------------------------------------------------------------------------------


TFJOB = "kubernetes:kubeflow.org/v1:TFJob"


def check_tfjob_replicas(resource: Mapping, config: Mapping) -> list[str]:
    """The TFJob itself, or a TFJob that an Argo workflow creates from an embedded manifest."""
    if resource.get("type") == TFJOB:
        jobs = [("TFJob", inputs_of(resource))]
    else:
        jobs = [(f"TFJob in {where}", obj) for where, text, obj in embedded_objects(resource)
                if (is_map(obj) and obj.get("kind") == "TFJob") or (obj is None and "TFJob" in text)]
    problems = []
    for what, job in jobs:
        specs = get_path(job, "spec", "tfReplicaSpecs")
        if not is_map(specs):
            problems.append(f"{what} has no readable spec.tfReplicaSpecs")
            continue
        problems += _replica_problems(what, specs, int(config["maxReplicas"]))
    return problems


def _replica_problems(what: str, specs: Mapping, bound: int) -> list[str]:
    total, problems = 0, []
    for kind in specs:
        replicas = get_path(specs[kind], "replicas")
        count = 1 if replicas is None else replicas  # the operator's default
        if isinstance(count, bool) or not isinstance(count, int | float) or count < 1 or count != int(count):
            problems.append(f"{what}: {kind} replicas is {replicas!r}, not a whole number of at least 1")
            continue
        total += int(count)
    if total > bound:
        problems.append(f"{what} asks for {total} replicas, more than the bound of {bound}: lower the worker "
                        "count or raise maxReplicas in the policy config")
    return problems
