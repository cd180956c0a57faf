"""Checks of the training's scheduling keys: `training.gpus`, the GPU image that goes with it, the node
selector and the tolerations (the GPU workers' keys, beside the one-value checks of `infra.configcheck`)."""

from __future__ import annotations

import json
from typing import Any

from infra.configcheck import NS, Check, ConfigError, Reader, image_ref, set_to, whole

MAX_GPUS = 16  # per process: the most GPUs a node of the clouds' GPU instance types has


def gpu_count(r: Reader, key: str) -> int:
    """A whole number of GPUs per process: `nvidia.com/gpu` is never split between containers."""
    value = r.raw(key)
    try:
        amount = float(str(value).strip())
    except ValueError:
        amount = None
    if amount is not None and amount != int(amount):
        raise ConfigError(key, "must be a whole number: a GPU cannot be shared between containers (nvidia.com/gpu)",
                          value, set_to(key, max(1, round(amount))))
    return whole(0, MAX_GPUS)(r, key)


def _repository(image: str) -> str:
    name = image.split("@", 1)[0]
    head, _, tag = name.rpartition(":")
    return head if head and "/" not in tag else name


def gpu_image(trainer_key: str, gpus_key: str) -> Check:
    """The GPU trainer image: checked only where it runs (`gpus_key` > 0; a CPU stack, prod's registry-less
    default included, never pulls it), pinned like every image, and not the CPU-only trainer's repository
    (its TensorFlow has no CUDA)."""

    def check(r: Reader, key: str) -> str:
        gpus = r.value(gpus_key)
        if not gpus:
            return str(r.raw(key))
        image = image_ref(r, key)
        if _repository(image) == _repository(r.value(trainer_key)):
            raise ConfigError(
                key,
                f"is the CPU-only trainer image ({trainer_key}'s repository), which cannot use {gpus_key} {gpus}",
                image,
                f"pulumi config set {NS}:{key} REPOSITORY/trainer-gpu:TAG (make images builds "
                f"{r.default(key)}), or pulumi config set {NS}:{gpus_key} 0",
            )
        return image

    return check


def _structured(key: str, value: Any) -> Any:
    """An object or list as Pulumi's structured config gives it, or as JSON text (a flat key)."""
    if isinstance(value, str):
        import json

        try:
            return json.loads(value)
        except ValueError:
            raise ConfigError(key, "is not JSON", value, f"set it with pulumi config set --path {NS}:{key}.<field>",
                              literal=True) from None
    return value


def node_labels(r: Reader, key: str) -> tuple[tuple[str, str], ...]:
    """An object of node labels -> sorted (label, value) pairs (the record stays hashable); unset: ()."""
    value = r.raw(key)
    if value in (None, ""):
        return ()
    value = _structured(key, value)
    fix = f"pulumi config set --path '{NS}:{key}[\"LABEL\"]' VALUE (an object of node labels)"
    if not isinstance(value, dict) or not all(isinstance(k, str) and k for k in value):
        raise ConfigError(key, "must be an object of node labels", value, fix, literal=True)
    out = []
    for label, v in value.items():
        if isinstance(v, dict | list) or v is None:
            raise ConfigError(f"{key}.{label}", "must be a label value (a string)", v, fix, literal=True)
        out.append((label, str(v).lower() if isinstance(v, bool) else str(v)))
    return tuple(sorted(out))


TOLERATION_FIELDS = {"key", "operator", "value", "effect", "tolerationSeconds"}


def tolerations(r: Reader, key: str) -> tuple[str, ...]:
    """A list of Kubernetes tolerations -> each as canonical JSON, in the order given; unset: ()."""
    value = r.raw(key)
    if value in (None, ""):
        return ()
    value = _structured(key, value)
    fix = (f"pulumi config set --path '{NS}:{key}[0].key' TAINT, and .operator Exists or Equal, .effect "
           "NoSchedule, PreferNoSchedule or NoExecute")
    if not isinstance(value, list):
        raise ConfigError(key, "must be a list of tolerations", value, fix, literal=True)
    out = []
    for i, t in enumerate(value):
        where = f"{key}[{i}]"
        if not isinstance(t, dict) or not t:
            raise ConfigError(where, "must be a toleration object", t, fix, literal=True)
        unknown = sorted(set(t) - TOLERATION_FIELDS)
        if unknown:
            raise ConfigError(where, f"has unknown fields {unknown} (a toleration has {sorted(TOLERATION_FIELDS)})",
                              t, fix, literal=True)
        if t.get("operator", "Equal") not in ("Exists", "Equal"):
            raise ConfigError(where, "has an operator other than Exists or Equal", t, fix, literal=True)
        if t.get("effect", "") not in ("", "NoSchedule", "PreferNoSchedule", "NoExecute"):
            raise ConfigError(where, "has an effect other than NoSchedule, PreferNoSchedule or NoExecute", t, fix,
                              literal=True)
        out.append(json.dumps(t, sort_keys=True))
    return tuple(out)
