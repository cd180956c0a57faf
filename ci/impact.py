"""`python -m ci impact BASE_DIR HEAD_DIR`: what a change does to the ML pipeline, read from two renders
(`python -m render --out DIR`, one folder per stack under each, or one stack's folder each), one line per
stack and piece:

    dev: data prep: reruns (workers)
    dev: training: from scratch, new run digest 45c4e8fb -> 0d1c9a77 (workers)
    dev: serving: untouched

Data prep reruns when its Workflow's spec changes (a changed spec is a new Workflow). Training starts from
scratch when the run's URL changes (a new run digest or `training.run`: no checkpoint there), resumes from
its last checkpoint when only the TFJob changes (a new TFJob on the same RUN_URL), else it is untouched.
Serving restarts when its pod template changes (a rolling restart), only scales when only its replica count
does. The keys named are the changed config keys (each render's `config.yaml`) that feed that piece; a
change that no key explains (the code's own) says so.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

# runSpec field (the stack output) -> the config key it comes from
RUN_SPEC_KEYS = {
    "image": "image.trainer",
    "workers": "workers",
    "epochs": "training.epochs",
    "batchSize": "training.batchSize",
    "learningRate": "training.learningRate",
    "prepareSource": "data.prepareSource",
    "gpus": "training.gpus",
}
# The config keys (exact, or a prefix ending in ".") that reach each piece's objects.
_COMMON = ("namespace", "storage.", "image.pullPolicy", "cluster.")
FEEDS = {
    "data prep": (*_COMMON, "workers", "data.", "dataprep.", "image.trainer"),
    "training": (*_COMMON, "workers", "data.", "training.", "image.trainer", "image.trainerGpu", "fluid."),
    "serving": (*_COMMON, "serving.", "sync.", "metrics.", "image.serving", "image.sidecar"),
}


@dataclass(frozen=True)
class Side:
    """One stack's render: its Kubernetes objects by (kind, name), its outputs and its config."""

    objects: dict[tuple[str, str], dict]
    outputs: dict
    config: dict

    @classmethod
    def read(cls, folder: Path) -> Side | None:
        if not (folder / "outputs.yaml").is_file():
            return None
        objects = {}
        for path in sorted((folder / "manifests").rglob("*.yaml")):
            obj = yaml.safe_load(path.read_text()) or {}
            objects[(obj.get("kind", ""), (obj.get("metadata") or {}).get("name", ""))] = obj
        config_file = folder / "config.yaml"
        config = (yaml.safe_load(config_file.read_text()) or {}) if config_file.is_file() else {}
        return cls(objects, yaml.safe_load((folder / "outputs.yaml").read_text()) or {}, config)

    def one(self, kind: str, name: str | None = None) -> dict | None:
        found = [o for (k, n), o in self.objects.items() if k == kind and (name is None or n == name)]
        return found[0] if found else None


def _keys(piece: str, changed: list[str]) -> str:
    feeding = [k for k in changed if any(k == f or (f.endswith(".") and k.startswith(f)) for f in FEEDS[piece])]
    if feeding:
        return ", ".join(feeding)
    return "no config key: the code changed it"


def _spec(obj: dict | None) -> dict | None:
    return None if obj is None else obj.get("spec")


def impact(base: Side, head: Side) -> list[tuple[str, str]]:
    """[(piece, what happens to it)] for data prep, training and serving."""
    changed = sorted(k for k in base.config.keys() | head.config.keys() if base.config.get(k) != head.config.get(k))
    lines = []

    prep_old, prep_new = base.one("Workflow", "prepare-data"), head.one("Workflow", "prepare-data")
    if prep_new is None:
        lines.append(("data prep", "removed" if prep_old else "none"))
    elif _spec(prep_old) != _spec(prep_new):
        lines.append(("data prep", f"reruns ({_keys('data prep', changed)})"))
    else:
        lines.append(("data prep", "untouched"))

    spec_old, spec_new = base.outputs.get("runSpec") or {}, head.outputs.get("runSpec") or {}
    tfjob_old, tfjob_new = base.one("TFJob"), head.one("TFJob")
    if tfjob_new is None:
        lines.append(("training", "removed" if tfjob_old else "none"))
    elif base.outputs.get("runUrl") != head.outputs.get("runUrl"):
        causes = [RUN_SPEC_KEYS.get(f, f) for f in sorted(spec_old.keys() | spec_new.keys())
                  if f != "digest" and spec_old.get(f) != spec_new.get(f)]
        if spec_old.get("digest") != spec_new.get("digest"):
            what = f"new run digest {spec_old.get('digest', '-')} -> {spec_new.get('digest', '-')}"
        else:
            what = "new run name"
            causes = [k for k in changed if k == "training.run"]
        lines.append(("training", f"from scratch, {what} ({', '.join(causes) or _keys('training', changed)})"))
    elif (_spec(tfjob_old), (tfjob_old or {}).get("metadata", {}).get("name")) != (
        _spec(tfjob_new), tfjob_new["metadata"].get("name")
    ):
        lines.append(("training", f"resumes from its last checkpoint in a new TFJob ({_keys('training', changed)})"))
    else:
        lines.append(("training", "untouched"))

    old, new = _spec(base.one("Deployment", "serving")) or {}, _spec(head.one("Deployment", "serving")) or {}
    if not new:
        lines.append(("serving", "removed" if old else "none"))
    elif old.get("template") != new.get("template"):
        lines.append(("serving", f"restarts, a rolling update of its pods ({_keys('serving', changed)})"))
    elif old.get("replicas") != new.get("replicas"):
        lines.append((
            "serving",
            f"scales {old.get('replicas')} -> {new.get('replicas')} replicas, no restart ({_keys('serving', changed)})",
        ))
    else:
        lines.append(("serving", "untouched"))
    return lines


def _stacks(base_dir: Path, head_dir: Path) -> list[tuple[str, Path, Path]]:
    if (head_dir / "outputs.yaml").is_file():  # one stack's folders
        return [(head_dir.name, base_dir, head_dir)]
    names = sorted({p.name for d in (base_dir, head_dir) if d.is_dir() for p in d.iterdir() if p.is_dir()})
    return [(n, base_dir / n, head_dir / n) for n in names]


def report(base_dir: Path, head_dir: Path) -> list[str]:
    """The lines `python -m ci impact` prints."""
    out = []
    for stack, b, h in _stacks(base_dir, head_dir):
        base, head = Side.read(b), Side.read(h)
        if head is None:
            out.append(f"{stack}: not rendered at head: impact unknown")
        elif base is None:
            out.append(f"{stack}: not rendered at base: impact unknown (a new stack deploys everything)")
        else:
            out += [f"{stack}: {piece}: {what}" for piece, what in impact(base, head)]
    return out


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m ci impact BASE_DIR HEAD_DIR (two `python -m render` outputs)", file=sys.stderr)
        return 2
    base_dir, head_dir = Path(argv[0]), Path(argv[1])
    for d in (base_dir, head_dir):
        if not d.is_dir():
            print(f"error: {d} is not a folder: give two `python -m render --out` folders", file=sys.stderr)
            return 2
    for line in report(base_dir, head_dir):
        print(line)
    return 0
