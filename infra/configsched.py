"""Checks of the scheduling keys: the training's `training.gpus`, the GPU image that goes with it, the node
selector and the tolerations (the GPU workers' keys, beside the one-value checks of `infra.configcheck`),
and the retraining's cron schedule (`retrain.schedule`)."""

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


# Argo's CronWorkflow schedule: robfig/cron's standard spec (5 fields, names for months and weekdays, `?` for
# "any" in the day fields) or one of its descriptors.
CRON_DESCRIPTORS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")
_CRON_FIELDS = (
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day of month", 1, 31, ()),
    ("month", 1, 12, ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")),
    ("day of week", 0, 6, ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")),
)


def _cron_value(text: str, lo: int, names: tuple[str, ...]) -> int:
    if text.upper() in names:
        return names.index(text.upper()) + lo
    if not text.isdigit():
        raise ValueError(text)
    return int(text)


def _cron_field_ok(text: str, lo: int, hi: int, names: tuple[str, ...], day: bool) -> bool:
    for item in text.split(","):
        span, _, step = item.partition("/")
        if step and (not step.isdigit() or int(step) < 1):
            return False
        if span == "*" or (day and span == "?"):
            continue
        first, _, last = span.partition("-")
        try:
            a = _cron_value(first, lo, names)
            b = _cron_value(last, lo, names) if last else a
        except ValueError:
            return False
        if not lo <= a <= b <= hi:
            return False
    return True


def cron(r: Reader, key: str) -> str | None:
    """A cron schedule as Argo's CronWorkflow takes it (`0 3 * * *`, `*/30 * * * MON-FRI`, `@daily`);
    unset: no schedule."""
    value = r.raw(key)
    if value is None or str(value).strip() == "":
        return None
    text = " ".join(str(value).split())
    if text in CRON_DESCRIPTORS:
        return text
    fields = text.split(" ")
    problem = None
    if len(fields) != len(_CRON_FIELDS):
        problem = f"must have 5 fields (minute hour day-of-month month day-of-week), not {len(fields)}"
    else:
        for field, (name, lo, hi, names) in zip(fields, _CRON_FIELDS, strict=True):
            if not _cron_field_ok(field, lo, hi, names, name.startswith("day")):
                problem = f"has a bad {name} field {field!r} (numbers {lo}-{hi}, ranges a-b, lists a,b, steps */n)"
                break
    if problem:
        raise ConfigError(key, f"is not a cron schedule: it {problem}", value,
                          f"{set_to(key, repr('0 3 * * *'))} (daily at 03:00), or one of {', '.join(CRON_DESCRIPTORS)}")
    return text
