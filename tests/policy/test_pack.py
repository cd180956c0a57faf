"""The CrossGuard wrappers (policy/pack.py) under the real pulumi-policy SDK, in the pack's own environment.

The pack's entry point is never imported (constructing PolicyPack starts a gRPC server and blocks): its
source is checked instead, and pack.policies() is called by a probe running in the scan environment.
"""

from __future__ import annotations

import ast
import json
import subprocess

import yaml

from policy import rules
from tests.ci.tools import ROOT, tool
from tests.policy import samples


def probe(resources, config=None, unknown=()) -> dict:
    request = {"resources": resources, "config": config or {}, "unknown": [list(u) for u in unknown]}
    proc = subprocess.run([str(tool("python")), str(ROOT / "tests/policy/pack_probe.py")],
                          input=json.dumps(request), capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def as_set(rows) -> set[tuple]:
    return {tuple(row) for row in rows}


def test_pack_wraps_every_rule_with_its_scope():
    out = probe(samples.good_stack())
    assert out["policies"] == {rule.name: rule.scope for rule in rules.RULES}
    assert out["violations"] == [] and out["skipped"] == []


def test_pack_reports_what_the_plain_rules_report():
    bad = samples.bad_variant(samples.good_stack())
    bad[0]["inputs"]["acl"] = "public-read"  # and a stack-level finding, reported against the bucket
    out = probe(bad)
    expected = {(v.rule, v.resource, v.message) for v in rules.evaluate(bad)}
    assert as_set(out["violations"]) == expected
    assert {row[0] for row in out["violations"]} == {
        "k8s-no-public-services", "k8s-image-pinned", "k8s-container-limits",
        "s3-bucket-private-encrypted-tls",
    }


def test_pack_passes_its_policy_config_to_the_rules():
    resources = [samples.service(kind="LoadBalancer"), samples.tfjob(workers=20.0)]
    assert {row[0] for row in probe(resources)["violations"]} == {
        "k8s-no-public-services", "k8s-tfjob-replica-bound"}
    config = {"k8s-no-public-services": {"allowLoadBalancer": True},
              "k8s-tfjob-replica-bound": {"maxReplicas": 32}}
    assert probe(resources, config)["violations"] == []


def test_unknown_values_during_preview_skip_the_rule_instead_of_failing_it():
    # A new bucket's id is unknown during a preview: the settings point at it through property
    # dependencies, and an image built in the same update is not known either.
    resources = samples.good_stack()
    for resource in resources[1:4]:
        resource["refs"] = {"bucket": ["data"]}
    out = probe(resources, unknown=[("data-private", "bucket"), ("data-encryption", "bucket"),
                                    ("data-tls-only", "bucket"),
                                    ("serving", "spec.template.spec.containers.0.image")])
    assert out["violations"] == []
    assert as_set(out["skipped"]) == {("k8s-image-pinned", "serving")}


def test_entry_point_builds_the_pack_from_pack_policies():
    tree = ast.parse((ROOT / "policy/__main__.py").read_text())
    imports = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    calls = [node for node in ast.walk(tree) if isinstance(node, ast.Call)
             and getattr(node.func, "id", None) == "PolicyPack"]
    assert "pack" in imports and len(calls) == 1
    keywords = {kw.arg: ast.unparse(kw.value) for kw in calls[0].keywords}
    assert keywords["policies"] == "pack.policies()"
    assert keywords["enforcement_level"] == "pack.ENFORCEMENT"
    pack_source = (ROOT / "policy/pack.py").read_text()
    assert "import rules" in pack_source and "rules.RULES" in pack_source


def test_pack_requirements_are_pinned_and_in_the_scan_environment():
    pins = [line for line in (ROOT / "policy/requirements.txt").read_text().splitlines()
            if line.strip() and not line.startswith("#")]
    assert pins and all("==" in line for line in pins)
    assert "pulumi-policy==1.21.0" in pins
    assert "-r ../policy/requirements.txt" in (ROOT / "requirements/scan.txt").read_text()


def test_pulumi_policy_yaml_runs_the_pack_in_its_own_environment():
    project = yaml.safe_load((ROOT / "policy/PulumiPolicy.yaml").read_text())
    assert project["runtime"]["name"] == "python" and project["version"]
    venv = project["runtime"]["options"]["virtualenv"]
    # Pulumi builds it inside policy/: it must never be committed.
    ignored = subprocess.run(["git", "check-ignore", "-q", f"policy/{venv}/"], cwd=ROOT, timeout=30)
    assert ignored.returncode == 0
