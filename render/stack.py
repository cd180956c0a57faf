"""What the Pulumi program declares, rendered offline under Pulumi's mocks (the library behind
`python -m render --stack dev --out DIR [--set key=value ...]`).

This is not `pulumi preview`: no Pulumi CLI, no provider plugin, no cluster and no credentials are involved.
Helm charts and kustomize manifests are rendered by the provider at deploy time, so here they appear as one
entry each, with their inputs. Every Kubernetes object the program itself declares is written as YAML under
`DIR/manifests/<namespace>/`, the other resources (bucket, IAM, charts) to
`DIR/resources.yaml` (with the outputs their state would hold), the stack outputs to `DIR/outputs.yaml` and the
config the program ran with, one dotted key a line, to `DIR/config.yaml`.
Secrets show as "[secret]".
The output is deterministic, so two renders diff cleanly.

Python API (used by the tests and the policy checks):

    rendered = render("dev", {"workers": 64})
    rendered.resources   # [{"type", "name", "inputs", "urn", "parent", "dependencies", "options"}, ...]
    rendered.manifests   # Kubernetes objects (dicts)
    rendered.outputs     # stack outputs
    rendered.write(out_dir)
"""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from common.errors import UserError
from infra.configcheck import NS, ConfigError

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT_S = 120
# Resources the provider expands at deploy time: opaque under mocks, listed in resources.yaml.
OPAQUE_K8S = ("kubernetes:helm.sh/", "kubernetes:kustomize/", "kubernetes:yaml/")


@dataclass
class Rendered:
    stack: str
    resources: list[dict]
    outputs: dict = field(default_factory=dict)
    # The config the program ran with, one dotted key (`serving.replicas`) a line, secrets as "[secret]":
    # `python -m ci impact` names the keys a change came from.
    config: dict = field(default_factory=dict)

    @property
    def manifests(self) -> list[dict]:
        return [r["inputs"] for r in self.resources if is_manifest(r)]

    def others(self) -> list[dict]:
        """Everything that is not a Kubernetes object nor one of our components."""
        return [r for r in self.resources if not is_manifest(r) and not r["type"].startswith(f"{NS}:")]

    def find(self, kind: str, name: str | None = None) -> list[dict]:
        return [
            m for m in self.manifests if m.get("kind") == kind and (name is None or m["metadata"].get("name") == name)
        ]

    def one(self, kind: str, name: str | None = None) -> dict:
        found = self.find(kind, name)
        if len(found) != 1:
            raise LookupError(f"{len(found)} {kind} objects named {name!r} in the {self.stack} render")
        return found[0]

    def reads(self) -> list[dict]:
        """Existing objects the program looks up (`.get`) instead of declaring: `{"type", "name", "read"}`."""
        return [r for r in self.resources if r.get("read")]

    def by_type(self, type_: str) -> list[dict]:
        return [r for r in self.resources if r["type"] == type_]

    def write(self, out_dir: str | Path) -> list[Path]:
        out = Path(out_dir)
        shutil.rmtree(out / "manifests", ignore_errors=True)
        out.mkdir(parents=True, exist_ok=True)
        written = []
        for m in self.manifests:
            meta = m.get("metadata", {})
            path = (
                out / "manifests" / (meta.get("namespace") or "_cluster") / f"{m['kind'].lower()}-{meta['name']}.yaml"
            )
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.exists():
                raise ValueError(f"two objects render to {path}")
            path.write_text(_yaml(m))
            written.append(path)
        others = [
            {
                "type": r["type"],
                "name": r["name"],
                "inputs": r["inputs"],
                "dependsOn": [u.rsplit("::", 1)[1] for u in r["dependencies"]],
                **({"read": r["read"]} if r.get("read") else {}),
                **({"state": r["state"]} if r.get("state") else {}),
                **({"options": opts} if (opts := {k: v for k, v in r["options"].items() if v}) else {}),
            }
            for r in self.others()
        ]
        for name, data in (("resources.yaml", others), ("outputs.yaml", self.outputs), ("config.yaml", self.config)):
            (out / name).write_text(_yaml(data))
            written.append(out / name)
        return written


def is_manifest(r: dict) -> bool:
    return (
        r["custom"]
        and r["type"].startswith("kubernetes:")
        and not r["type"].startswith(OPAQUE_K8S)
        and "kind" in r["inputs"]
    )


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (the TFJob inside the retraining template, scripts) as readable `|` blocks."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value and not any(line != line.rstrip() for line in value.split("\n")) else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def _yaml(data: Any) -> str:
    return yaml.dump(data, Dumper=_Dumper, sort_keys=True, default_flow_style=False, width=120)


def stack_config(
    stack: str, overrides: Mapping[str, Any] | None = None, root: Path = ROOT
) -> tuple[dict[str, str], list[str]]:
    """Pulumi.<stack>.yaml plus overrides, as the language host hands config to a program: every value a
    string, objects (`kubeflow-e2e:storage: {mode: minio}`) as JSON. An override's dotted key (`storage.mode`)
    sets that field of the object, as `pulumi config set --path` does; `None` removes it. Encrypted values
    (`{"secure": ...}`, at the top or inside an object) become "[secret]" (a render holds no credentials) and
    mark their top-level key secret, as Pulumi does."""
    path = root / f"Pulumi.{stack}.yaml"
    if not path.is_file():
        stacks = sorted(p.name[len("Pulumi.") : -len(".yaml")] for p in root.glob("Pulumi.*.yaml"))
        raise UserError(f"no stack file {path.name}", stack, f"pick one of: {', '.join(stacks)}")
    raw = copy.deepcopy(dict((yaml.safe_load(path.read_text()) or {}).get("config") or {}))
    for key, value in (overrides or {}).items():
        full = key if ":" in key else f"{NS}:{key}"
        ns, _, name = full.partition(":")
        top, dot, field = name.partition(".")
        if not dot:
            raw[full] = value
            continue
        group = raw.setdefault(f"{ns}:{top}", {})
        if not isinstance(group, dict):
            raise UserError("cannot set a field of a key that is not an object", full, f"set {ns}:{top} instead")
        group[field] = value
        if value is None:
            del group[field]
    values, secret_keys = {}, []
    for key, value in raw.items():
        if value is None:
            continue
        secret = _is_secure(value) or (isinstance(value, dict) and any(_is_secure(v) for v in value.values()))
        if secret:
            secret_keys.append(key)
        if _is_secure(value):
            values[key] = "[secret]"
        elif isinstance(value, bool):
            values[key] = "true" if value else "false"
        elif isinstance(value, dict):
            values[key] = json.dumps({k: "[secret]" if _is_secure(v) else v for k, v in value.items()})
        elif isinstance(value, list):
            values[key] = json.dumps(value)
        else:
            values[key] = str(value)
    return values, sorted(secret_keys)


def _is_secure(value: Any) -> bool:
    return isinstance(value, dict) and set(value) == {"secure"}


def render(stack: str, overrides: dict | None = None, root: Path = ROOT) -> Rendered:
    """Runs the program under mocks in a fresh interpreter; raises ConfigError as the program would."""
    values, secret_keys = stack_config(stack, overrides, root)
    request = json.dumps({"stack": stack, "config": values, "secret_keys": secret_keys})
    proc = subprocess.run(
        [sys.executable, "-m", "render.mockrun"],
        input=request,
        capture_output=True,
        text=True,
        cwd=root,
        timeout=TIMEOUT_S,
        env=_env(root),
    )
    if proc.returncode == 2 and proc.stdout.startswith('{"error"'):
        e = json.loads(proc.stdout)["error"]
        raise ConfigError(e["key"], "", e["value"], e["fix"], what=e["what"], literal=True)
    if proc.returncode != 0:
        raise RuntimeError(f"render of stack {stack} failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    result = json.loads(proc.stdout)
    return Rendered(
        stack=stack, resources=_order(result["resources"]), outputs=result["outputs"], config=flat_config(values)
    )


def flat_config(values: Mapping[str, str]) -> dict[str, str]:
    """`stack_config`'s values as dotted keys without the project's namespace (`serving.replicas: "2"`); an
    object's fields become one key each, other namespaces keep theirs."""
    out: dict[str, str] = {}
    for full, value in values.items():
        ns, _, name = full.partition(":")
        key = name if ns == NS else full
        parsed = None
        if value.startswith("{"):
            try:
                parsed = json.loads(value)
            except ValueError:
                parsed = None
        if isinstance(parsed, dict):
            for field_, v in parsed.items():
                out[f"{key}.{field_}"] = v if isinstance(v, str) else json.dumps(v)
        else:
            out[key] = value
    from infra.config import KEY_NAMES

    # A key the schema declares secret stays hidden even when it came in plain text (`--set`).
    hidden = {k for k in out if k in KEY_NAMES and KEY_NAMES[k].secret}
    return {k: "[secret]" if k in hidden else v for k, v in sorted(out.items())}


def _env(root: Path) -> dict[str, str]:
    import os

    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(root), env.get("PYTHONPATH", "")) if p)
    env["PYTHONWARNINGS"] = "ignore::DeprecationWarning"
    return env


def _order(records: list[dict]) -> list[dict]:
    """Dependencies first, ties broken by URN: the same program always gives the same list."""
    by_urn = {r["urn"]: r for r in records}
    deps = {
        u: {d for d in r["dependencies"] if d in by_urn} | ({r["parent"]} & by_urn.keys()) for u, r in by_urn.items()
    }
    done: list[str] = []
    placed: set[str] = set()
    remaining = sorted(by_urn)
    while remaining:
        ready = [u for u in remaining if deps[u] <= placed]
        if not ready:  # a cycle cannot come from pulumi; keep going rather than hang
            ready = remaining[:1]
        for u in ready:
            done.append(u)
            placed.add(u)
        remaining = [u for u in remaining if u not in placed]
    return [by_urn[u] for u in done]
