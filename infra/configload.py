"""Reading a stack's config: the keys as Pulumi structures them (`kubeflow-e2e:storage` holds an object), each
key's own check (`infra.config`'s schema), then the rules between keys, each a small named function run in
`CROSS_CHECKS` order; `load` returns the `StackConfig` or raises the first `ConfigError`."""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from typing import Any

from common import rules
from infra.config import GROUPS, KEY_NAMES, KEYS, WORKLOADS, StackConfig, build
from infra.configcheck import NS, ConfigError, Getter, Reader, set_to
from infra.s3identities import arn_parts
from infra.servingkeys import signing_keys_come_in_pairs

# The training operator's standalone overlay installs into this namespace; it is not configurable
# (kubeflow/trainer v1.9.4 `manifests/overlays/standalone/kustomization.yaml`, `namespace: kubeflow`).
OPERATOR_NAMESPACE = "kubeflow"


# ---- the rules between keys: each a small function of the checked values, run in this order ------------------


def external_storage_has_endpoint_and_keys(v: Mapping[str, Any]) -> None:
    """`external` needs its endpoint and keys; the other modes make their own and take none."""
    mode = v["storage.mode"]
    if mode == "external":
        if not v["storage.endpoint"]:
            raise ConfigError(
                "storage.endpoint",
                "is required when storage.mode is external",
                v["storage.endpoint"],
                f"pulumi config set {NS}:storage.endpoint https://s3.example.com",
            )
        for key in ("storage.accessKeyId", "storage.secretAccessKey"):
            if v[key] is None:
                fix = f"pulumi config set --secret {NS}:{key} <value>"
                raise ConfigError(key, "is required when storage.mode is external", None, fix)
        return
    for key in ("storage.endpoint", "storage.accessKeyId", "storage.secretAccessKey"):
        if v[key] is not None:
            raise ConfigError(
                key,
                f"is only used with storage.mode external, not {mode}",
                "set",
                f"pulumi config rm {NS}:{key}, or set {NS}:storage.mode external",
            )


def irsa_has_aws_and_an_oidc_provider(v: Mapping[str, Any]) -> None:
    credentials, oidc = v["storage.credentials"], v["storage.oidcProviderArn"]
    if credentials != "irsa":
        if oidc:
            raise ConfigError(
                "storage.oidcProviderArn",
                "is only used with storage.credentials irsa",
                oidc,
                f"pulumi config rm {NS}:storage.oidcProviderArn",
            )
        return
    if v["storage.mode"] != "aws":
        raise ConfigError(
            "storage.credentials",
            f"irsa needs storage.mode aws, not {v['storage.mode']}",
            credentials,
            f"pulumi config set {NS}:storage.credentials access-key",
        )
    if not oidc:
        raise ConfigError(
            "storage.oidcProviderArn",
            "is required when storage.credentials is irsa",
            oidc,
            "aws eks describe-cluster --name CLUSTER --query cluster.identity.oidc.issuer, then "
            f"pulumi config set {NS}:storage.oidcProviderArn "
            "arn:aws:iam::ACCOUNT:oidc-provider/oidc.eks.REGION.amazonaws.com/id/ID",
        )
    arn_parts(oidc)


def volume_has_fluid_and_keys(v: Mapping[str, Any]) -> None:
    """`data.source: volume` reads Fluid's cache (own namespace, keys from a Secret), which MinIO does not serve."""
    if v["data.source"] != "volume":
        return
    s3 = f"{NS}:data.source s3"
    for bad, problem, fix in (
        (not v["fluid.enabled"], "volume needs the Fluid dataset", f"{set_to('fluid.enabled', 'true')}, or {s3}"),
        (
            v["storage.mode"] == "minio",
            "volume cannot use storage.mode minio: MinIO admits only the stack's own pods, not the cache's",
            f"pulumi config set {s3}, or use {NS}:storage.mode aws or external",
        ),
        (
            v["storage.credentials"] == "irsa",
            "volume cannot use irsa: Fluid's Alluxio runtime reads keys from a Secret",
            f"set {NS}:storage.credentials access-key, or {s3}",
        ),
    ):
        if bad:
            raise ConfigError("data.source", problem, "volume", fix)


TRAIN_FLAGS = {
    "--epochs": "training.epochs",
    "--batch-size": "training.batchSize",
    "--learning-rate": "training.learningRate",
}


def training_passes_the_trainers_rules(v: Mapping[str, Any]) -> None:
    """`train`'s own argument rules (`common.rules`, the one definition both use), with the cross-check
    against the TFJob's processes (chief + workers), so no pod exits 2 on a value the stack let through."""
    processes = v["workers"] + 1
    problems = rules.train_problems(
        epochs=v["training.epochs"],
        batch_size=v["training.batchSize"],
        learning_rate=float(v["training.learningRate"]),
        processes=processes,
    )
    for p in problems:
        key = TRAIN_FLAGS[p.flag]
        if p.problem.startswith("is smaller than the number of processes"):
            raise ConfigError(
                key,
                f"is smaller than the number of training processes (workers + the chief = {processes}), "
                "which split the global batch between them",
                p.value,
                f"pulumi config set {NS}:{key} {p.suggestion}, or lower {NS}:workers",
            )
        value = v["training.learningRate"] if p.flag == "--learning-rate" else p.value  # as the user wrote it
        raise ConfigError(key, p.problem, value, f"pulumi config set {NS}:{key} {p.suggestion}")


# Kubernetes quantity suffixes: decimal (k = 10^3 ... E = 10^18) and binary (Ki = 2^10 ... Ei = 2^60).
_UNITS = {"": 1, "m": Decimal("0.001")} | {s: 10 ** (3 * i) for i, s in enumerate("kMGTPE", 1)}
_UNITS |= {f"{s}i": 2 ** (10 * i) for i, s in enumerate("KMGTPE", 1)}


def quantity_value(text: str) -> Decimal:
    """A checked Kubernetes quantity as a number: `500m` -> 0.5, `2Gi` -> 2147483648."""
    m = re.match(r"^([\d.]+)([A-Za-z]*)$", text)
    assert m, text
    return Decimal(m.group(1)) * _UNITS[m.group(2)]


def requests_within_limits(v: Mapping[str, Any]) -> None:
    for workload in WORKLOADS:
        for what in ("cpu", "memory"):
            key = f"{workload}.{what}"
            request, limit = v[key], v[f"{key}Limit"]
            if quantity_value(request) > quantity_value(limit):
                raise ConfigError(
                    key,
                    f"is above its limit {key}Limit ({limit})",
                    request,
                    f"pulumi config set {NS}:{key}Limit {request}, or lower {NS}:{key}",
                )


def argo_has_its_own_namespace(v: Mapping[str, Any]) -> None:
    if v["argo.namespace"] == v["namespace"]:
        raise ConfigError(
            "argo.namespace",
            "must differ from the pipeline namespace",
            v["argo.namespace"],
            f"pulumi config set {NS}:argo.namespace argo",
        )


def namespace_is_no_controllers(v: Mapping[str, Any]) -> None:
    """The pipeline namespace gets a default-deny NetworkPolicy and restricted Pod Security: in the training
    operator's namespace (or Fluid's, with Fluid on) that would cut the controller off from the API server and
    its webhook from the API server's calls. Argo's namespace is checked on `argo.namespace` itself."""
    taken = {OPERATOR_NAMESPACE: "the Kubeflow training operator's (fixed by its manifests)"}
    if v["fluid.enabled"]:
        taken[v["fluid.namespace"]] = "Fluid's (fluid.namespace)"
    namespace = v["namespace"]
    if namespace in taken:
        raise ConfigError(
            "namespace",
            f"must differ from {taken[namespace]} namespace: the pipeline's default-deny network policy would "
            "cut that controller off",
            namespace,
            f"pulumi config set {NS}:namespace kubeflow-e2e",
        )


CROSS_CHECKS: tuple[Callable[[Mapping[str, Any]], None], ...] = (
    external_storage_has_endpoint_and_keys,
    irsa_has_aws_and_an_oidc_provider,
    volume_has_fluid_and_keys,
    training_passes_the_trainers_rules,
    requests_within_limits,
    argo_has_its_own_namespace,
    namespace_is_no_controllers,
    signing_keys_come_in_pairs,
)


# ---- loading ----------------------------------------------------------------------------------------------


def load(stack: str, get: Getter, get_secret: Getter | None = None, present: Iterable[str] = ()) -> StackConfig:
    """Builds the config from `get(key) -> raw value or None` (Pulumi gives strings; tests may give typed
    values). `present` lists the keys set in the stack (`kubeflow-e2e:workers`, ...), to catch misspelt ones.
    Raises ConfigError: each key's own check in `KEYS` order, then `CROSS_CHECKS` in order."""
    for key in present:
        if key.startswith(NS + ":"):
            name = key[len(NS) + 1 :]
            if name not in KEY_NAMES:
                raise ConfigError(name, "is not a known key", get(name), did_you_mean(name))
    reader = Reader(stack, get, get_secret or get, KEY_NAMES)
    values = {k.name: reader.value(k.name) for k in KEYS}
    for check in CROSS_CHECKS:
        check(values)
    return build(StackConfig, reader, project=NS, stack=stack)


def nested_values(present: Iterable[str], get: Getter, get_object: Getter) -> dict[str, Any]:
    """The stack's config as dotted keys (`storage.mode`), read the way Pulumi structures it: a key such as
    `kubeflow-e2e:storage` holds an object (`pulumi config set --path kubeflow-e2e:storage.mode minio`).
    `present` lists the keys set in the stack; `get`/`get_object` read one. A flat dotted key (set without
    `--path`, or by the deploy workflow's `config-map`) is read too, unless the object sets the same field.
    Refuses a group that is not an object and unknown keys or fields, with a did-you-mean hint."""
    nested: dict[str, Any] = {}
    flat: dict[str, Any] = {}
    for full in sorted(present):
        if not full.startswith(NS + ":"):
            continue
        name = full[len(NS) + 1 :]
        if name in GROUPS:
            obj = get_object(name)
            if not isinstance(obj, Mapping):
                raise ConfigError(
                    name,
                    f"must be an object of settings ({', '.join(k for k in KEY_NAMES if k.startswith(name + '.'))})",
                    obj,
                    f"pulumi config rm {NS}:{name}, then pulumi config set --path {NS}:{name}.<field> <value>",
                )
            for field_name, value in obj.items():
                key = f"{name}.{field_name}"
                if key not in KEY_NAMES:
                    raise ConfigError(key, "is not a known key", value, did_you_mean(key))
                nested[key] = value
        elif name in KEY_NAMES:
            flat[name] = get(name)
        else:
            # A flat unknown key is removed without --path.
            raise ConfigError(name, "is not a known key", get(name), did_you_mean(name), literal="." in name)
    for key in sorted(flat.keys() & nested.keys()):
        group, field_name = key.split(".", 1)
        raise ConfigError(
            key,
            f"is set twice: as a flat key and as field {field_name} of {NS}:{group}",
            flat[key],
            f"pulumi config rm {NS}:{key} (removes the flat one; fields are set with --path)",
            literal=True,
        )
    return {**flat, **nested}


def did_you_mean(name: str) -> str:
    close = difflib.get_close_matches(name, list(KEY_NAMES), n=1)
    hint = f"did you mean {NS}:{close[0]}? " if close else ""
    return f"{hint}pulumi config rm {NS}:{name}; the keys are listed in the README's Deploy section"


def stack_values(config: Mapping[str, Any]) -> dict[str, Any]:
    """`{"kubeflow-e2e:workers": "2", "kubeflow-e2e:storage": '{"mode": "aws"}', ...}` (as the language host
    hands config over: objects as JSON) -> `{"workers": "2", "storage.mode": "aws", ...}`."""

    def get_object(name: str) -> Any:
        raw = config.get(f"{NS}:{name}")
        try:
            return json.loads(raw) if isinstance(raw, str) else raw
        except ValueError:
            return raw

    return nested_values(config, lambda name: config.get(f"{NS}:{name}"), get_object)


def from_pulumi() -> StackConfig:
    """Reads the running program's (or the mocks') config with `pulumi.Config("kubeflow-e2e")`: `get` for
    plain keys, `get_object` for the structured ones; the secret keys come back as Pulumi secrets."""
    import pulumi
    from pulumi.runtime import config as runtime_config

    c = pulumi.Config(NS)
    # The language host passes config in PULUMI_CONFIG; an Automation API inline program (`make e2e`) only in
    # the runtime's own map: take the keys from both.
    present = {*pulumi.runtime.get_config_env(), *runtime_config.CONFIG.get()}
    values = nested_values(present, c.get, c.get_object)

    def get_secret(key: str) -> Any:
        value = values.get(key)
        return None if value in (None, "") else pulumi.Output.secret(value)

    cfg = load(pulumi.get_stack(), values.get, get_secret)
    if not cfg.cluster.context:
        raise ConfigError(
            "cluster.context",
            "is required, so that `pulumi up` never deploys into whichever kubeconfig context is current",
            None,
            f"pulumi config set --path {NS}:cluster.context <context> (kubectl config get-contexts)",
        )
    return cfg
