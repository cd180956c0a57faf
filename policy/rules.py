"""The stack's guardrails as plain functions over the resources a Pulumi program registers.

A resource is a mapping {"type": <Pulumi type token>, "name": str, "inputs": mapping}, the shape that
`render.render` collects under mocks and that CrossGuard hands the policy pack (`args.props`). A stack rule
may also read "refs": {property: [names of the resources that property came from]}, which the pack fills
from Pulumi's property dependencies (during a real preview, ids are not known yet).

This module needs only the standard library and PyYAML (which Pulumi's SDK brings) for manifests embedded
as text: the tests and `python -m policy.check` run it in the program's environment, the policy pack in
its own (policy/requirements.txt). It only reads through the
Mapping/Sequence interfaces and never copies the inputs, so CrossGuard's unknown-value proxies still raise
when a rule touches a value that is not known during preview; the pack then skips that rule for now
instead of judging a placeholder.
"""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

RESOURCE = "resource"
STACK = "stack"


class Violation(NamedTuple):
    rule: str
    resource: str  # the resource's name; "" for the stack as a whole
    message: str

    def __str__(self) -> str:
        return f"[{self.rule}] {self.resource or '<stack>'}: {self.message}"


@dataclass(frozen=True)
class Rule:
    name: str
    description: str
    # RESOURCE: check(resource, config) -> [message]
    # STACK: check(resources, config) -> [(the resource at fault, message)]
    scope: str
    check: Callable[..., list]
    types: tuple[str, ...] = ("*",)  # type tokens (fnmatch patterns) a resource rule looks at
    config: dict[str, dict[str, Any]] = field(default_factory=dict)  # JSON schema properties with defaults

    def applies(self, type_token: str) -> bool:
        return any(fnmatch.fnmatchcase(type_token, pattern) for pattern in self.types)

    def settings(self, given: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The rule's config: schema defaults overlaid with what the pack's config gave."""
        values = {key: schema.get("default") for key, schema in self.config.items()}
        values.update({key: value for key, value in (given or {}).items() if key in self.config})
        return values


# --- reading values -----------------------------------------------------------------------------------


def _is_map(value: Any) -> bool:
    return isinstance(value, Mapping)


def _is_list(value: Any) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, str | bytes)


def _get(node: Any, *path: str) -> Any:
    for key in path:
        if not _is_map(node) or key not in node:
            return None
        node = node[key]
    return node


def _truthy(value: Any) -> bool:
    # Mocks and YAML give booleans; a hand-written manifest or a JSON policy may give "true".
    return value is True or (isinstance(value, str) and value.lower() == "true")


def _inputs(resource: Mapping) -> Mapping:
    inputs = resource.get("inputs")
    return inputs if _is_map(inputs) else {}


# --- Kubernetes: where the containers are ---------------------------------------------------------------

KUBERNETES = ("kubernetes:*",)
NOT_WORKLOADS = (
    "kubernetes:helm.sh/*", "kubernetes:yaml*", "kubernetes:kustomize*",  # opaque under mocks
    "kubernetes:core/v1:ConfigMap", "kubernetes:core/v1:Secret", "kubernetes:apiextensions.k8s.io/*",
)
CONTAINER_LISTS = ("containers", "initContainers", "ephemeralContainers", "sidecars")  # sidecars: Argo
CONTAINER_KEYS = ("container", "script")  # Argo templates hold one container under these keys
# Keys that never lead to a container: skipped so that an unknown value in them (a bucket name during
# preview, say) does not stop the container rules.
LEAF_KEYS = frozenset({"metadata", "env", "envFrom", "args", "command", "volumes", "volumeMounts", "ports",
                       "resources", "affinity", "tolerations", "nodeSelector", "arguments", "inputs",
                       "outputs", "parameters", "data", "stringData", "source", "status"})


EMBEDDED_KEYS = ("manifest",)  # Argo resource templates carry the object they create as YAML text


class Container(NamedTuple):
    path: str  # where it sits in the inputs, e.g. spec.template.spec.containers[0]
    spec: Mapping  # the container
    pod_security: Mapping  # the nearest enclosing pod-level securityContext ({} if none)

    @property
    def label(self) -> str:
        name = self.spec.get("name") if _is_map(self.spec) else None
        return f"container {name!r} ({self.path})" if name else f"container at {self.path}"


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path and not path.endswith(" > ") else f"{path}{key}"


def parse_manifest(text: str) -> Any:
    """A manifest embedded as YAML (or JSON) text, or None if it does not parse."""
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return None


def embedded_objects(resource: Mapping) -> Iterator[tuple[str, str, Any]]:
    """(where, text, object or None) for each object embedded as text in a resource (Argo resource
    templates)."""
    def walk(node: Any, path: str) -> Iterator[tuple[str, str, Any]]:
        if _is_map(node):
            for key in node:
                if key in LEAF_KEYS:
                    continue
                where = _join(path, key)
                if key in EMBEDDED_KEYS and isinstance(node[key], str):
                    yield where, node[key], parse_manifest(node[key])
                else:
                    yield from walk(node[key], where)
        elif _is_list(node):
            for index, item in enumerate(node):
                yield from walk(item, f"{path}[{index}]")

    yield from walk(_inputs(resource), "")


def is_workload(type_token: str) -> bool:
    return type_token.startswith("kubernetes:") and not any(
        fnmatch.fnmatchcase(type_token, pattern) for pattern in NOT_WORKLOADS
    )


def containers(resource: Mapping) -> list[Container]:
    """Every container a Kubernetes resource declares: pod templates in any workload kind, the TFJob's
    replica templates, Argo templates (container, script, sidecars), CronJob job templates."""
    if not is_workload(str(resource.get("type", ""))):
        return []
    return list(_walk(_inputs(resource), "", {}))


def _walk(node: Any, path: str, pod_security: Mapping) -> Iterator[Container]:
    if _is_map(node):
        security = node.get("securityContext") if "image" not in node else None
        if _is_map(security):
            pod_security = security
        for key in node:
            if key in LEAF_KEYS or key == "securityContext":
                continue
            child = node[key]
            where = _join(path, key)
            if key in CONTAINER_LISTS and _is_list(child):
                for index, item in enumerate(child):
                    if _is_map(item):
                        yield Container(f"{where}[{index}]", item, pod_security)
            elif key in CONTAINER_KEYS and _is_map(child) and "image" in child:
                yield Container(where, child, pod_security)
            elif key in EMBEDDED_KEYS and isinstance(child, str):
                embedded = parse_manifest(child)
                if embedded is None:  # fail closed: what cannot be read cannot be vouched for
                    yield Container(f"{where} (unreadable YAML)", {}, {})
                else:
                    yield from _walk(embedded, f"{where} > ", {})
            else:
                yield from _walk(child, where, pod_security)
    elif _is_list(node):
        for index, item in enumerate(node):
            yield from _walk(item, f"{path}[{index}]", pod_security)


# --- container rules ------------------------------------------------------------------------------------

# Upstream components (Argo's chart, Fluid's chart with its privileged CSI plugin, the training operator's
# manifests) run in namespaces of their own and are hardened, or not, upstream. A real `pulumi preview`
# shows their objects to the pack; the pack's config may exempt those namespaces from the hardening rules.
EXEMPT = {"excludeNamespaces": {"type": "array", "items": {"type": "string"}, "default": [],
                                "description": "namespaces of upstream components the rule does not judge"}}


def exempt(resource: Mapping, config: Mapping) -> bool:
    namespace = _get(_inputs(resource), "metadata", "namespace")
    return bool(namespace) and namespace in (config.get("excludeNamespaces") or [])



def check_limits(resource: Mapping, config: Mapping) -> list[str]:
    problems = []
    for container in [] if exempt(resource, config) else containers(resource):
        limits = _get(container.spec, "resources", "limits")
        missing = [kind for kind in ("cpu", "memory") if not (_is_map(limits) and limits.get(kind))]
        if missing:
            problems.append(f"{container.label} has no {' or '.join(missing)} limit: set resources.limits")
    return problems


def check_non_root(resource: Mapping, config: Mapping) -> list[str]:
    problems = []
    for container in [] if exempt(resource, config) else containers(resource):
        own = container.spec.get("securityContext")
        own = own if _is_map(own) else {}
        non_root = own.get("runAsNonRoot", container.pod_security.get("runAsNonRoot"))
        user = own.get("runAsUser", container.pod_security.get("runAsUser"))
        if isinstance(user, int | float) and user == 0:
            problems.append(f"{container.label} runs as user 0 (root)")
        elif non_root is False or (not _truthy(non_root) and user is None):
            problems.append(f"{container.label} may run as root: set securityContext.runAsNonRoot: true")
    return problems


def check_capabilities(resource: Mapping, config: Mapping) -> list[str]:
    problems = []
    for container in [] if exempt(resource, config) else containers(resource):
        security = container.spec.get("securityContext")
        drop = _get(security, "capabilities", "drop")
        dropped = {str(item).upper() for item in drop} if _is_list(drop) else set()
        if "ALL" not in dropped:
            problems.append(f"{container.label} keeps Linux capabilities: "
                            "set securityContext.capabilities.drop: [ALL]")
        if _truthy(_get(security, "privileged")):
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
        for item in env if _is_list(env) else []:
            if not _is_map(item) or "value" not in item:
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
    inputs = _inputs(resource)
    if type_token == "kubernetes:core/v1:Service":
        kind = _get(inputs, "spec", "type")
        if kind in EXPOSED and not config.get(EXPOSED[kind]):
            return [f"Service is of type {kind}: use ClusterIP (reach it with kubectl port-forward or an "
                    f"Ingress), or set {EXPOSED[kind]} in the policy config"]
        return []
    # A Helm chart registers as one resource with its values: look for the usual service-type knobs.
    problems = []
    for where, kind in _chart_service_types(_get(inputs, "values"), "values"):
        if kind in EXPOSED and not config.get(EXPOSED[kind]):
            problems.append(f"chart value {where} is {kind}: use ClusterIP or set {EXPOSED[kind]}")
    return problems


def _chart_service_types(node: Any, path: str) -> Iterator[tuple[str, Any]]:
    if _is_map(node):
        for key in node:
            child = node[key]
            where = f"{path}.{key}"
            if key == "serviceType" or (key == "type" and path.endswith(("service", "Service"))):
                yield where, child
            else:
                yield from _chart_service_types(child, where)
    elif _is_list(node):
        for index, item in enumerate(node):
            yield from _chart_service_types(item, f"{path}[{index}]")


# --- TFJob ----------------------------------------------------------------------------------------------


TFJOB = "kubernetes:kubeflow.org/v1:TFJob"


def check_tfjob_replicas(resource: Mapping, config: Mapping) -> list[str]:
    """The TFJob itself, or a TFJob that an Argo workflow creates from an embedded manifest."""
    if resource.get("type") == TFJOB:
        jobs = [("TFJob", _inputs(resource))]
    else:
        jobs = [(f"TFJob in {where}", obj) for where, text, obj in embedded_objects(resource)
                if (_is_map(obj) and obj.get("kind") == "TFJob") or (obj is None and "TFJob" in text)]
    problems = []
    for what, job in jobs:
        specs = _get(job, "spec", "tfReplicaSpecs")
        if not _is_map(specs):
            problems.append(f"{what} has no readable spec.tfReplicaSpecs")
            continue
        problems += _replica_problems(what, specs, int(config["maxReplicas"]))
    return problems


def _replica_problems(what: str, specs: Mapping, bound: int) -> list[str]:
    total, problems = 0, []
    for kind in specs:
        replicas = _get(specs[kind], "replicas")
        count = 1 if replicas is None else replicas  # the operator's default
        if isinstance(count, bool) or not isinstance(count, int | float) or count < 1 or count != int(count):
            problems.append(f"{what}: {kind} replicas is {replicas!r}, not a whole number of at least 1")
            continue
        total += int(count)
    if total > bound:
        problems.append(f"{what} asks for {total} replicas, more than the bound of {bound}: lower the worker "
                        "count or raise maxReplicas in the policy config")
    return problems


# --- the bucket (a stack rule: the bucket's settings live in separate resources) -------------------------

BUCKET_TYPES = ("aws:s3/bucket:Bucket", "aws:s3/bucketV2:BucketV2")
ACCESS_BLOCK = ("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",)
ENCRYPTION = ("aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
              "aws:s3/bucketServerSideEncryptionConfigurationV2:BucketServerSideEncryptionConfigurationV2")
BUCKET_POLICY = ("aws:s3/bucketPolicy:BucketPolicy",)
BUCKET_ACL = ("aws:s3/bucketAcl:BucketAcl", "aws:s3/bucketAclV2:BucketAclV2")
PUBLIC_ACLS = {"public-read", "public-read-write", "authenticated-read"}
BLOCK_FLAGS = ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")
SSE_ALGORITHMS = {"AES256", "aws:kms", "aws:kms:dsse"}


def _bucket_ids(bucket: Mapping) -> set[str]:
    """What another resource may hold to point at this bucket: its id, physical name or ARN."""
    ids = {bucket.get("name"), bucket.get("id")}
    for source in (_inputs(bucket), bucket.get("outputs") if _is_map(bucket.get("outputs")) else {}):
        for key in ("id", "bucket", "arn"):
            ids.add(source.get(key) if key in source else None)
    return {value for value in ids if isinstance(value, str) and value}


def _points_at(resource: Mapping, bucket: Mapping) -> bool:
    refs = resource.get("refs")
    if _is_map(refs) and _is_list(refs.get("bucket")):
        return bucket.get("name") in refs["bucket"]
    return _get(_inputs(resource), "bucket") in _bucket_ids(bucket)


def _policy_document(value: Any) -> Mapping:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return {}
    return value if _is_map(value) else {}


def _as_list(value: Any) -> list:
    return list(value) if _is_list(value) else [value]


def _denies_plain_http(statement: Mapping) -> bool:
    if statement.get("Effect") != "Deny":
        return False
    principal = statement.get("Principal")
    if not (principal == "*" or (_is_map(principal) and "*" in _as_list(principal.get("AWS")))):
        return False
    if not any(action in ("s3:*", "*") for action in _as_list(statement.get("Action"))):
        return False
    secure = _get(statement, "Condition", "Bool", "aws:SecureTransport")
    return any(str(item).lower() == "false" for item in _as_list(secure))


def _allows_everyone(statement: Mapping) -> bool:
    principal = statement.get("Principal")
    public = principal == "*" or (_is_map(principal) and "*" in _as_list(principal.get("AWS")))
    return statement.get("Effect") == "Allow" and public and not statement.get("Condition")


def check_buckets(resources: Sequence[Mapping], config: Mapping) -> list[tuple[Mapping, str]]:
    problems: list[tuple[Mapping, str]] = []

    def of_type(types: tuple[str, ...], bucket: Mapping) -> list[Mapping]:
        return [r for r in resources if r.get("type") in types and _points_at(r, bucket)]

    for bucket in (r for r in resources if r.get("type") in BUCKET_TYPES):
        inputs = _inputs(bucket)
        # Private: no public ACL, and a public access block with all four switches on.
        acls = [inputs.get("acl")] + [_get(_inputs(r), "acl") for r in of_type(BUCKET_ACL, bucket)]
        for acl in acls:
            if acl in PUBLIC_ACLS:
                problems.append((bucket, f"bucket ACL {acl} makes objects public"))
        blocks = of_type(ACCESS_BLOCK, bucket)
        if not blocks:
            problems.append((bucket, "bucket has no BucketPublicAccessBlock: add one with all four flags on"))
        for block in blocks:
            off = [flag for flag in BLOCK_FLAGS if not _truthy(_inputs(block).get(flag))]
            if off:
                problems.append((bucket, f"public access block leaves {', '.join(off)} off"))
        # Encrypted at rest: a default encryption rule, inline (deprecated) or as its own resource.
        rules = _as_list(_get(inputs, "serverSideEncryptionConfiguration", "rule"))
        for config_resource in of_type(ENCRYPTION, bucket):
            rules += _as_list(_get(_inputs(config_resource), "rules"))
        algorithms = {_get(rule, "applyServerSideEncryptionByDefault", "sseAlgorithm") for rule in rules}
        if not algorithms & SSE_ALGORITHMS:
            problems.append((bucket, "bucket has no default encryption (AES256 or aws:kms)"))
        # TLS only: a bucket policy that denies every request made without TLS; and nothing public.
        statements = []
        for policy in of_type(BUCKET_POLICY, bucket):
            statements += _as_list(_policy_document(_inputs(policy).get("policy")).get("Statement"))
        statements = [s for s in statements if _is_map(s)]
        if not any(_denies_plain_http(s) for s in statements):
            problems.append((bucket, "bucket policy does not deny requests without TLS "
                                   "(Deny s3:* when aws:SecureTransport is false)"))
        if any(_allows_everyone(s) for s in statements):
            problems.append((bucket, "bucket policy allows everyone (Principal *) without a condition"))
    return problems


# --- the rule set ---------------------------------------------------------------------------------------

RULES: tuple[Rule, ...] = (
    Rule("s3-bucket-private-encrypted-tls",
         "The data bucket is private, encrypted at rest and reachable over TLS only.", STACK, check_buckets),
    Rule("k8s-no-public-services", "No Service of type LoadBalancer or NodePort unless the policy config "
         "allows it.", RESOURCE, check_services,
         types=("kubernetes:core/v1:Service", "kubernetes:helm.sh/*"),
         config={"allowLoadBalancer": {"type": "boolean", "default": False},
                 "allowNodePort": {"type": "boolean", "default": False}}),
    Rule("k8s-container-limits", "Every container has CPU and memory limits.", RESOURCE, check_limits,
         types=KUBERNETES, config=EXEMPT),
    Rule("k8s-container-non-root", "Every container runs as a non-root user.", RESOURCE, check_non_root,
         types=KUBERNETES, config=EXEMPT),
    Rule("k8s-container-drop-capabilities", "Every container drops all Linux capabilities and is not "
         "privileged.", RESOURCE, check_capabilities, types=KUBERNETES, config=EXEMPT),
    Rule("k8s-image-pinned",
         "Every image is pinned to a version tag or a digest (no :latest, no missing tag).", RESOURCE,
         check_images, types=KUBERNETES),
    Rule("k8s-tfjob-replica-bound", "The TFJob's total replica count stays within a bound.", RESOURCE,
         check_tfjob_replicas, types=(TFJOB, "kubernetes:argoproj.io/*"),
         config={"maxReplicas": {"type": "integer", "minimum": 1, "default": 16}}),
    Rule("k8s-no-literal-secrets", "Secrets never appear as literal container env values.", RESOURCE,
         check_literal_secrets, types=KUBERNETES),
)

BY_NAME = {rule.name: rule for rule in RULES}


def evaluate(resources: Sequence[Mapping], config: Mapping[str, Mapping] | None = None) -> list[Violation]:
    """Runs every rule over a stack's resources; config maps a rule name to its settings."""
    config = config or {}
    found: list[Violation] = []
    for rule in RULES:
        settings = rule.settings(config.get(rule.name))
        if rule.scope == STACK:
            found += [Violation(rule.name, str(at.get("name", "")), text)
                      for at, text in rule.check(resources, settings)]
            continue
        for resource in resources:
            if rule.applies(str(resource.get("type", ""))):
                name = str(resource.get("name", ""))
                found += [Violation(rule.name, name, message) for message in rule.check(resource, settings)]
    return found
