"""Regenerate `e2e/crds/*.json` from upstream CRD YAML (a maintainer's tool; nothing runs it at test time).

    python3 e2e/gen_crds.py UPSTREAM_DIR

UPSTREAM_DIR holds the files named in SOURCES, taken at the given tags. The output keeps every schema node
(types, properties, required, enums, formats, x-kubernetes-* markers, printer columns, subresources) and
drops only the `description` strings (about 80% of the bytes), so the API server validates a Workflow or
a TFJob exactly as upstream's full CRD does. Written as compact JSON, one CRD per file.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

SOURCES = {
    # file in UPSTREAM_DIR: (repository, tag, path in the repository)
    "kubeflow.org_tfjobs.yaml": (
        "kubeflow/trainer (was kubeflow/training-operator)",
        "v1.9.4",
        "manifests/base/crds/kubeflow.org_tfjobs.yaml",
    ),
    "argoproj.io_workflows.yaml": (
        "argoproj/argo-workflows",
        "v4.0.6",
        "manifests/base/crds/full/argoproj.io_workflows.yaml",
    ),
    "argoproj.io_workflowtemplates.yaml": (
        "argoproj/argo-workflows",
        "v4.0.6",
        "manifests/base/crds/full/argoproj.io_workflowtemplates.yaml",
    ),
    "argoproj.io_workflowtaskresults.yaml": (
        "argoproj/argo-workflows",
        "v4.0.6",
        "manifests/base/crds/full/argoproj.io_workflowtaskresults.yaml",
    ),
}


def strip(node, in_properties: bool = False):
    """Drops `description` keys of schema nodes (not a property that happens to be named `description`)."""
    if isinstance(node, dict):
        return {k: strip(v, k == "properties") for k, v in node.items() if in_properties or k != "description"}
    if isinstance(node, list):
        return [strip(v) for v in node]
    return node


def main(upstream: str) -> None:
    out_dir = Path(__file__).parent / "crds"
    for name, (repo, tag, path) in SOURCES.items():
        crd = yaml.safe_load((Path(upstream) / name).read_text())
        crd["metadata"].setdefault("annotations", {})["kubeflow-e2e/source"] = f"{repo}@{tag}:{path}"
        for version in crd["spec"]["versions"]:
            version["schema"] = strip(version["schema"])
        out = out_dir / (name.removesuffix(".yaml") + ".json")
        out.write_text(json.dumps(crd, separators=(",", ":"), sort_keys=True) + "\n")
        print(f"{out}: {out.stat().st_size} bytes from {repo}@{tag}:{path}")


if __name__ == "__main__":
    main(sys.argv[1])
