"""Reading a resource as the rules see it: values by path, manifests embedded as text, and where the containers
are in any workload (Pods, templates, Argo's templates, charts' opaque inputs).

Standard library and PyYAML only, and reads through the Mapping/Sequence interfaces without copying (see
rules.py: CrossGuard's unknown-value proxies must still raise).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, NamedTuple

# --- reading values -----------------------------------------------------------------------------------


def is_map(value: Any) -> bool:
    return isinstance(value, Mapping)


def is_list(value: Any) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, str | bytes)


def get_path(node: Any, *path: str) -> Any:
    for key in path:
        if not is_map(node) or key not in node:
            return None
        node = node[key]
    return node


def truthy(value: Any) -> bool:
    # Mocks and YAML give booleans; a hand-written manifest or a JSON policy may give "true".
    return value is True or (isinstance(value, str) and value.lower() == "true")


def inputs_of(resource: Mapping) -> Mapping:
    inputs = resource.get("inputs")
    return inputs if is_map(inputs) else {}


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
        name = self.spec.get("name") if is_map(self.spec) else None
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
        if is_map(node):
            for key in node:
                if key in LEAF_KEYS:
                    continue
                where = _join(path, key)
                if key in EMBEDDED_KEYS and isinstance(node[key], str):
                    yield where, node[key], parse_manifest(node[key])
                else:
                    yield from walk(node[key], where)
        elif is_list(node):
            for index, item in enumerate(node):
                yield from walk(item, f"{path}[{index}]")

    yield from walk(inputs_of(resource), "")


def is_workload(type_token: str) -> bool:
    return type_token.startswith("kubernetes:") and not any(
        fnmatch.fnmatchcase(type_token, pattern) for pattern in NOT_WORKLOADS
    )


def containers(resource: Mapping) -> list[Container]:
    """Every container a Kubernetes resource declares: pod templates in any workload kind, the TFJob's
    replica templates, Argo templates (container, script, sidecars), CronJob job templates."""
    if not is_workload(str(resource.get("type", ""))):
        return []
    return list(_walk(inputs_of(resource), "", {}))


def _walk(node: Any, path: str, pod_security: Mapping) -> Iterator[Container]:
    if is_map(node):
        security = node.get("securityContext") if "image" not in node else None
        if is_map(security):
            pod_security = security
        for key in node:
            if key in LEAF_KEYS or key == "securityContext":
                continue
            child = node[key]
            where = _join(path, key)
            if key in CONTAINER_LISTS and is_list(child):
                for index, item in enumerate(child):
                    if is_map(item):
                        yield Container(f"{where}[{index}]", item, pod_security)
            elif key in CONTAINER_KEYS and is_map(child) and "image" in child:
                yield Container(where, child, pod_security)
            elif key in EMBEDDED_KEYS and isinstance(child, str):
                embedded = parse_manifest(child)
                if embedded is None:  # fail closed: what cannot be read cannot be vouched for
                    yield Container(f"{where} (unreadable YAML)", {}, {})
                else:
                    yield from _walk(embedded, f"{where} > ", {})
            else:
                yield from _walk(child, where, pod_security)
    elif is_list(node):
        for index, item in enumerate(node):
            yield from _walk(item, f"{path}[{index}]", pod_security)
