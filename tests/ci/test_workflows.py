"""What the workflows promise, read from their YAML: per-stack previews commented on the PR, OIDC instead of
keys, a credential-free diff that forks get too, tests before `pulumi up`, prod behind an approval."""

from __future__ import annotations

import re

import pytest
import yaml

from tests.ci.tools import ROOT
from tests.ci.workflow import WORKFLOWS

# A commit SHA (a tag can be moved to other code; a commit cannot), with the release it is in a comment.
PINNED = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40} # v\d+\.\d+\.\d+$")


def triggers(workflow: dict) -> dict:
    return workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as true


def step_using(job: dict, action: str) -> dict:
    [step] = [s for s in job["steps"] if s.get("uses", "").startswith(action + "@")]
    return step


def scripts(job: dict) -> str:
    return "\n".join(step.get("run", "") for step in job["steps"])


@pytest.mark.parametrize("name", ["preview.yml", "deploy.yml"])
def test_every_action_is_pinned_to_a_commit_with_its_tag(name):
    uses = re.findall(r"uses:\s*(\S+(?: # \S+)?)\s*$", (WORKFLOWS / name).read_text(), re.M)
    assert uses and [u for u in uses if not PINNED.match(u)] == []


@pytest.mark.parametrize("name", ["preview.yml", "deploy.yml"])
def test_no_long_lived_cloud_keys(name):
    text = (WORKFLOWS / name).read_text()
    assert not re.search(r"aws-access-key-id|aws-secret-access-key|AWS_SECRET_ACCESS_KEY", text)


def test_preview_runs_pulumi_preview_per_stack_with_one_edited_comment(preview):
    assert "pull_request" in triggers(preview)
    job = preview["jobs"]["preview"]
    assert job["strategy"]["matrix"]["stack"] == ["dev", "prod"]
    # pulumi/actions v7.0.0 installs the pinned CLI (no `command`: install-only mode, src/main.ts); the job
    # runs the preview itself so that its own step can comment on failures too (tests/ci/test_first_run.py).
    install = step_using(job, "pulumi/actions")
    assert install["with"] == {"pulumi-version": "${{ env.PULUMI_VERSION }}"}
    step = next(s for s in job["steps"] if s.get("id") == "preview")
    assert "pulumi preview --non-interactive --stack \"$STACK\" --diff" in step["run"]
    assert "--policy-pack policy --policy-pack-config policy/config.json" in step["run"]
    assert step["env"]["PULUMI_ACCESS_TOKEN"] == "${{ secrets.PULUMI_ACCESS_TOKEN }}"
    comment = step_using(job, "actions/github-script")["with"]["script"]
    assert "<!-- pulumi-preview:${STACK} -->" in comment and "updateComment" in comment


def test_preview_authenticates_with_oidc(preview):
    job = preview["jobs"]["preview"]
    assert job["permissions"]["id-token"] == "write"
    assert job["permissions"]["pull-requests"] == "write"
    aws = step_using(job, "aws-actions/configure-aws-credentials")["with"]
    assert "role-to-assume" in aws and "vars." in aws["role-to-assume"]
    steps = [s.get("uses", "").split("@")[0] for s in job["steps"]]
    assert steps.index("aws-actions/configure-aws-credentials") < steps.index("pulumi/actions")
    # Forks get no secrets or OIDC token: the job is skipped for them, not left to fail.
    assert "head.repo.full_name == github.repository" in job["if"]


def test_manifest_diff_needs_no_credentials_and_runs_for_forks(preview):
    job = preview["jobs"]["manifests"]
    assert "if" not in job  # forks included
    assert job["permissions"] == {"contents": "read"}
    text = yaml.safe_dump(job)
    assert "secrets." not in text and "id-token" not in text
    run = scripts(job)
    assert "-m render --stack" in run and "for side in base head" in run
    assert "diff -ruN out/base out/head" in run and "GITHUB_STEP_SUMMARY" in run
    refs = [s["with"].get("ref") for s in job["steps"] if s.get("uses", "").startswith("actions/checkout@")]
    assert refs == [None, "${{ github.event.pull_request.base.sha }}"]  # head (merge commit), base
    assert step_using(job, "actions/upload-artifact")["with"]["name"] == "manifest-diff"
    assert "-m policy.check" in run and "-m policy.scan" in run


def test_manifest_comment_job_runs_no_pr_code(preview):
    job = preview["jobs"]["manifests-comment"]
    assert job["needs"] == "manifests" and job["permissions"] == {"pull-requests": "write"}
    assert [s.get("uses", "").split("@")[0] for s in job["steps"]] == [
        "actions/download-artifact", "actions/github-script"]
    assert "<!-- manifest-diff -->" in step_using(job, "actions/github-script")["with"]["script"]


def test_deploy_tests_then_dev_then_prod_behind_approval(deploy):
    assert triggers(deploy)["push"]["branches"] == ["main"]
    jobs = deploy["jobs"]
    assert "make test" in scripts(jobs["test"])
    assert jobs["images"]["needs"] == "test"
    assert jobs["dev"]["needs"] == "images" and jobs["prod"]["needs"] == ["images", "dev"]
    assert jobs["prod"]["environment"] == "prod"
    for stack in ("dev", "prod"):
        job = jobs[stack]
        inputs = step_using(job, "pulumi/actions")["with"]
        assert inputs["command"] == "up" and inputs["stack-name"] == "${{ steps.plan.outputs.stack-name }}"
        assert f"--stack {stack} " in next(s for s in job["steps"] if s.get("id") == "plan")["run"]
        assert inputs["policyPacks"] == "policy"
        assert job["permissions"]["id-token"] == "write"
        assert "role-to-assume" in step_using(job, "aws-actions/configure-aws-credentials")["with"]
    assert all(jobs[stack]["concurrency"]["cancel-in-progress"] is False for stack in ("dev", "prod"))


def test_policy_pack_config_file_names_real_policies():
    import json

    from policy import rules

    config = json.loads((ROOT / "policy/config.json").read_text())
    for name, settings in config.items():
        assert set(settings) <= set(rules.BY_NAME[name].config), name
        # Only upstream components may be exempt, never the namespace our own workloads run in.
        assert "kubeflow-e2e" not in settings.get("excludeNamespaces", []), name


def test_every_secret_and_variable_is_documented():
    used = set()
    for path in WORKFLOWS.glob("*.yml"):
        used |= set(re.findall(r"\b(?:secrets|vars)\.([A-Z][A-Z0-9_]*)", path.read_text()))
    docs = (ROOT / "docs/ci.md").read_text()
    used -= {"GITHUB_TOKEN"}  # GitHub's own per-job token: nothing to set
    assert used and sorted(name for name in used if f"`{name}`" not in docs) == []


def test_stack_secrets_come_from_each_stacks_environment(preview, deploy):
    """A PR's code runs with a stack's secrets only in that stack's environment: prod's preview waits for the
    `prod` environment's reviewers like its deploy; no job that reads a stack secret runs without one."""
    assert preview["jobs"]["preview"]["environment"] == "${{ matrix.stack }}"
    assert deploy["jobs"]["dev"]["environment"] == "dev" and deploy["jobs"]["prod"]["environment"] == "prod"
    for workflow in (preview, deploy):
        for name, job in workflow["jobs"].items():
            text = yaml.safe_dump(job)
            if re.search(r"secrets\.(PULUMI_ACCESS_TOKEN|PULUMI_CONFIG_PASSPHRASE|KUBE_CONFIG)", text):
                assert job.get("environment"), name


def test_only_main_is_deployed(deploy):
    assert "workflow_dispatch" in triggers(deploy) and triggers(deploy)["push"]["branches"] == ["main"]
    for name in ("images", "dev", "prod"):
        assert deploy["jobs"][name]["if"] == "github.ref == 'refs/heads/main'", name
