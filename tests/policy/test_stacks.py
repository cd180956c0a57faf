"""The guardrails over what the real program registers (`render` under mocks): both stacks as
committed pass every rule, and a deliberately bad variant of them is reported."""

from __future__ import annotations

import copy
import json
import subprocess
import sys

import pytest

from policy import bucket_rules, manifests, rules
from render import Rendered
from tests.ci.tools import ROOT, rendered
from tests.policy import samples
from tests.policy.test_pack import probe
from tests.render.renders import RENDERS

STACKS = ["dev", "prod"]
CONFIG = json.loads((ROOT / "policy/config.json").read_text())


@pytest.mark.parametrize("stack", STACKS)
def test_committed_stack_passes_every_rule(stack):
    assert rules.evaluate(rendered(stack).resources, CONFIG) == []


def test_every_rule_has_something_to_check_in_the_stacks():
    """A renamed type token or a moved field would otherwise make a rule pass by finding nothing."""
    resources = rendered("dev").resources + rendered("prod").resources
    resource_rules = [rule for rule in rules.RULES if rule.scope == rules.RESOURCE]
    for rule in resource_rules:
        assert any(rule.applies(r["type"]) for r in resources), rule.name
    workloads = [r for r in resources if manifests.containers(r)]
    # (the data-prep Workflow only references its WorkflowTemplate, which holds the containers)
    assert {r["type"].rsplit(":", 1)[1] for r in workloads} >= {"Deployment", "Job", "TFJob", "WorkflowTemplate"}
    assert sum(len(manifests.containers(r)) for r in workloads) >= 15
    assert [r["name"] for r in rendered("prod").resources if r["type"] in bucket_rules.BUCKET_TYPES] == ["bucket"]


def test_bad_variant_of_a_real_stack_is_reported():
    bad = samples.bad_variant(rendered("dev").resources)
    found = rules.evaluate(bad, CONFIG)
    assert {(v.rule, v.resource) for v in found} == {
        ("k8s-no-public-services", "service-serving"),
        ("k8s-image-pinned", "deployment-serving"),
        ("k8s-container-limits", "deployment-serving"),
    }


def test_bad_variant_is_reported_by_the_pack_too():
    bad = samples.bad_variant(rendered("prod").resources)
    out = probe(bad, CONFIG)
    assert {(row[0], row[1]) for row in out["violations"]} == {
        ("k8s-no-public-services", "service-serving"),
        ("k8s-image-pinned", "deployment-serving"),
        ("k8s-container-limits", "deployment-serving"),
    }


def test_committed_prod_passes_in_the_pack():
    out = probe(copy.deepcopy(rendered("prod").resources), CONFIG)
    assert out["violations"] == [] and out["skipped"] == []


def test_prod_bucket_without_its_guards_is_reported():
    prod = [r for r in rendered("prod").resources
            if r["type"] not in bucket_rules.ACCESS_BLOCK + bucket_rules.BUCKET_POLICY]
    found = rules.evaluate(prod, CONFIG)
    assert {v.rule for v in found} == {"s3-bucket-private-encrypted-tls"}
    assert len(found) == 2 and {v.resource for v in found} == {"bucket"}


def test_too_many_workers_break_the_replica_bound():
    big = RENDERS.variant("dev-64")
    found = rules.evaluate(big.resources, CONFIG)
    assert {v.rule for v in found} == {"k8s-tfjob-replica-bound"}
    # the TFJob and the one the retraining workflow creates
    assert sorted(v.resource for v in found) == ["tfjob", "workflowtemplate-retrain"]
    assert all("65 replicas" in v.message for v in found)
    assert rules.evaluate(big.resources, {"k8s-tfjob-replica-bound": {"maxReplicas": 65}}) == []


def test_rendered_wrapper_is_what_checkov_gets():
    """The manifests the scan reads are the inputs the rules read."""
    bad = Rendered(stack="dev", resources=samples.bad_variant(rendered("dev").resources))
    [service] = [m for m in bad.manifests if m["kind"] == "Service" and m["metadata"]["name"] == "serving"]
    assert service["spec"]["type"] == "LoadBalancer"


def run_check(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "policy.check", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=180)


def test_check_cli_passes_a_committed_stack_and_fails_a_bad_one():
    good = run_check("--stack", "dev", "--config", "policy/config.json")
    assert good.returncode == 0, good.stdout + good.stderr
    assert good.stdout.strip().endswith("0 policy violations")
    bad = run_check("--stack", "dev", "--set", "workers=40")
    assert bad.returncode == 1
    assert bad.stdout.count("[k8s-tfjob-replica-bound]") == 2 and "41 replicas" in bad.stdout


def test_check_cli_reports_a_config_error_as_a_user_error():
    proc = run_check("--stack", "dev", "--set", "workers=0")
    assert proc.returncode == 2 and proc.stderr.startswith("error: config kubeflow-e2e:workers")


def test_check_cli_rejects_a_policy_config_naming_unknown_policies(tmp_path):
    config = tmp_path / "config.json"
    config.write_text('{"no-such-policy": {}}')
    proc = run_check("--stack", "dev", "--config", str(config))
    assert proc.returncode == 2 and "no-such-policy" in proc.stderr and proc.stderr.startswith("error: ")
