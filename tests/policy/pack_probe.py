"""Runs the policy pack's policies (policy/pack.py) the way the analyzer does, minus the gRPC server.

Started by test_pack.py with the scan environment's Python, where pulumi-policy is installed. Reads
{"resources": [...], "config": {...}, "unknown": [[resource name, dotted path], ...]} on stdin; writes
{"policies": {name: kind}, "violations": [[policy, resource, message]], "skipped": [[policy, resource]]}.
An "unknown" entry replaces that input with the analyzer's unknown-string sentinel, as in a preview.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "policy"))  # as `pulumi` runs the pack: its folder comes first

import pack  # noqa: E402
from pulumi_policy import (  # noqa: E402
    PolicyResource,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
)
from pulumi_policy.proxy import UNKNOWN_STRING_VALUE, UnknownValueError, unknown_checking_proxy  # noqa: E402


def set_unknown(inputs: dict, dotted: str) -> None:
    *parents, last = dotted.split(".")
    node = inputs
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    node[int(last) if isinstance(node, list) else last] = UNKNOWN_STRING_VALUE


def main() -> None:
    request = json.load(sys.stdin)
    resources = request["resources"]
    for name, dotted in request.get("unknown", []):
        set_unknown(next(r for r in resources if r["name"] == name)["inputs"], dotted)
    config = request.get("config", {})
    for r in resources:  # rendered resources carry their URN; hand-made ones get one
        r.setdefault("urn", f"urn:pulumi:dev::kubeflow-e2e::{r['type']}::{r['name']}")
    name_of = {r["urn"]: r["name"] for r in resources}
    out = {"policies": {}, "violations": [], "skipped": []}
    for policy in pack.policies():
        kind = "resource" if isinstance(policy, ResourceValidationPolicy) else "stack"
        out["policies"][policy.name] = kind
        given = config.get(policy.name)

        def report(message, resource_urn=None, policy_name=policy.name, default=""):
            out["violations"].append([policy_name, name_of.get(resource_urn, default), message])

        if kind == "resource":
            for r in resources:
                args = ResourceValidationArgs(r["type"], unknown_checking_proxy(r["inputs"]), r["urn"],
                                              r["name"], None, None, given)
                try:
                    policy.validate(args, lambda m, u=None, n=r["name"]: report(m, u, default=n))
                except UnknownValueError:
                    out["skipped"].append([policy.name, r["name"]])
        else:
            stack = {r["urn"]: PolicyResource(r["type"], unknown_checking_proxy(r["inputs"]), r["urn"],
                                              r["name"], None, None, None, [], {}) for r in resources}
            by_name = {r["name"]: stack[r["urn"]] for r in resources}
            for r in resources:  # property dependencies, as the engine reports them
                stack[r["urn"]].property_dependencies = {
                    prop: [by_name[n] for n in names] for prop, names in r.get("refs", {}).items()}
            try:
                policy.validate(StackValidationArgs(list(stack.values()), given), report)
            except UnknownValueError:
                out["skipped"].append([policy.name, ""])
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
