"""The stack's config as Pulumi structures it: objects under one key per group (`kubeflow-e2e:storage`),
or flat dotted keys, turned into dotted keys (`storage.mode`) with unknown keys refused."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from infra.keys import KEY_NAMES, NS
from infra.parse import ConfigError, Getter

GROUPS = sorted({k.split(".", 1)[0] for k in KEY_NAMES if "." in k})  # structured keys: storage, training, ...


def nested_values(present: Iterable[str], get: Getter, get_object: Getter) -> dict[str, Any]:
    """The stack's config as dotted keys (`storage.mode`), read the way Pulumi structures it: a key such as
    `kubeflow-e2e:storage` holds an object (`pulumi config set --path kubeflow-e2e:storage.mode minio`).
    `present` lists the keys set in the stack (`kubeflow-e2e:storage`, ...); `get`/`get_object` read one.
    A flat dotted key (set without `--path`, or by tools that write flat keys, such as the deploy workflow's
    `config-map`) is read too, unless the same field is also set in the object. Refuses a group that is not an
    object and unknown keys or fields, with a did-you-mean hint."""
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
            for field, value in obj.items():
                key = f"{name}.{field}"
                if key not in KEY_NAMES:
                    raise ConfigError(key, "is not a known key", value, did_you_mean(key))
                nested[key] = value
        elif name in KEY_NAMES:
            flat[name] = get(name)
        else:
            # A flat unknown key is removed without --path.
            raise ConfigError(name, "is not a known key", get(name), did_you_mean(name), literal="." in name)
    for key in sorted(flat.keys() & nested.keys()):
        group, field = key.split(".", 1)
        raise ConfigError(
            key,
            f"is set twice: as a flat key and as field {field} of {NS}:{group}",
            flat[key],
            f"pulumi config rm {NS}:{key} (removes the flat one; fields are set with --path)",
            literal=True,
        )
    return {**flat, **nested}


def did_you_mean(name: str) -> str:
    import difflib

    close = difflib.get_close_matches(name, list(KEY_NAMES), n=1)
    hint = f"did you mean {NS}:{close[0]}? " if close else ""
    return f"{hint}pulumi config rm {NS}:{name}; the keys are listed in the README's Deploy section"


def stack_values(config: Mapping[str, Any]) -> dict[str, Any]:
    """`{"kubeflow-e2e:workers": "2", "kubeflow-e2e:storage": '{"mode": "aws"}', ...}` (as the language host
    hands config over: objects as JSON) -> `{"workers": "2", "storage.mode": "aws", ...}`."""
    import json

    def get_object(name: str) -> Any:
        raw = config.get(f"{NS}:{name}")
        try:
            return json.loads(raw) if isinstance(raw, str) else raw
        except ValueError:
            return raw

    return nested_values(config, lambda name: config.get(f"{NS}:{name}"), get_object)
