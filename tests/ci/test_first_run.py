"""What the preview and deploy workflows meet on their first real run, read from their YAML and,
where a step is plain bash or JavaScript, by running that step here.

Read against the pinned actions (2026-11-29):
- pulumi/actions v7.0.0 (`action.yml`, `src/main.ts`): `upsert` creates a missing stack
  (`LocalWorkspace.createOrSelectStack`), `secrets-provider` goes to the workspace, `config-map` is set on the
  stack before the command; the PR comment is written only after the command succeeded, so a failed preview
  leaves none; without `command` it only installs the CLI.
- aws-actions/configure-aws-credentials v6.2.3 (`action.yml`, README): `role-duration-seconds` defaults to one
  hour and takes 900 to 43,200 seconds, up to the role's maximum session duration.
"""

from __future__ import annotations

import math
import subprocess

import pytest
import yaml

from ci import settings
from infra.config import KEY_NAMES
from infra.configload import stack_values
from render import stack_config
from tests.ci.tools import ROOT, rendered
from tests.ci.workflow import (
    index_of,
    load,
    run_comment_script,
    run_step,
    stack_jobs,
    step_using,
    step_with_id,
    steps_using,
)

STACKS = ("dev", "prod")
DEFAULT_SESSION_SECONDS = 3600  # configure-aws-credentials v6.2.3: "Defaults to 1 hour"


def all_stack_jobs(preview, deploy):
    return [("preview.yml", name, job) for name, job in stack_jobs(preview).items()] + [
        ("deploy.yml", name, job) for name, job in stack_jobs(deploy).items()]


# ---- 1 and 2: the job outlives the stack's waits, and the AWS session outlives the job -------------------


def waits_from_stack_file(stack: str) -> int:
    """The waits `pulumi up` makes on `stack`, recomputed from Pulumi.<stack>.yaml and the key defaults:
    (MinIO) its Deployment's and its bucket Job's, data prep, then (Fluid with data.source volume) the DataLoad,
    then (serving.waitForTraining) the TFJob and serving's rollout; and TensorBoard's rollout."""
    from infra.workload import ROLLOUT_TIMEOUT_S

    values = stack_values(stack_config(stack)[0])  # structured config, as dotted keys

    def get(name):
        return str(values.get(name, KEY_NAMES[name].default))

    dataprep = int(get("dataprep.timeoutSeconds"))
    total = dataprep
    if get("fluid.enabled").lower() == "true" and get("data.source") == "volume":
        total += dataprep
    if get("serving.waitForTraining").lower() == "true":
        total += int(get("training.timeoutSeconds")) + ROLLOUT_TIMEOUT_S
    if get("storage.mode") == "minio":
        total += 2 * ROLLOUT_TIMEOUT_S
    return total + ROLLOUT_TIMEOUT_S


@pytest.mark.parametrize("stack", STACKS)
def test_the_render_awaits_what_the_stack_file_configures(stack):
    assert settings.awaited_seconds(rendered(stack).resources) == waits_from_stack_file(stack)


@pytest.mark.parametrize("stack", STACKS)
def test_deploy_job_timeout_is_the_stacks_waits_plus_the_margin(deploy, stack):
    """Change a wait in Pulumi.<stack>.yaml (or its default in infra/config.py) and this fails until the job's
    timeout-minutes is updated: `python -m ci timeout --stack <stack>` prints the value."""
    want = math.ceil(waits_from_stack_file(stack) / 60) + settings.MARGIN_MINUTES
    assert settings.job_timeout_minutes(rendered(stack).resources) == want
    job = deploy["jobs"][stack]
    assert job["timeout-minutes"] == want, (
        f"deploy.yml job {stack}: timeout-minutes {job['timeout-minutes']}, but the stack waits "
        f"{waits_from_stack_file(stack)} s: set it to {want} (and role-duration-seconds to {want * 60})")
    assert want <= settings.GITHUB_HOSTED_MAX_MINUTES, "longer than a GitHub-hosted runner allows: use one self-hosted"


def test_the_ci_page_states_the_job_timeouts(deploy):
    dev, prod = (deploy["jobs"][stack]["timeout-minutes"] for stack in STACKS)
    assert f"(dev {dev}, prod {prod})" in (ROOT / "docs/ci.md").read_text()


def test_a_longer_training_wait_asks_for_a_longer_job(deploy):
    longer = rendered_with("prod", {"training.timeoutSeconds": 3 * 3600})
    assert settings.job_timeout_minutes(longer.resources) == deploy["jobs"]["prod"]["timeout-minutes"] + 60


def rendered_with(stack, overrides):
    from tests.render.renders import RENDERS

    return RENDERS(stack, overrides)


def test_the_timeout_command_prints_the_deploy_timeout(deploy):
    out = subprocess.run([str(ROOT / ".venv/bin/python"), "-m", "ci", "timeout", "--stack", "prod"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"timeout-minutes={deploy['jobs']['prod']['timeout-minutes']}"


def test_aws_sessions_outlive_their_jobs(preview, deploy):
    """The OIDC session defaults to one hour and is not refreshed: every job that logs in to AWS asks for a
    session at least as long as the job may run (and no longer than the action allows)."""
    for workflow, name, job in all_stack_jobs(preview, deploy):
        for step in steps_using(job, "aws-actions/configure-aws-credentials"):
            seconds = int(step["with"].get("role-duration-seconds", DEFAULT_SESSION_SECONDS))
            assert seconds >= job["timeout-minutes"] * 60, (workflow, name, seconds, job["timeout-minutes"])
            assert 900 <= seconds <= settings.MAX_ROLE_SESSION_SECONDS, (workflow, name, seconds)


def test_the_ci_page_says_how_to_clear_a_lock_and_the_roles_session_limit():
    page = (ROOT / "docs/ci.md").read_text()
    for phrase in ("pulumi cancel", "pulumi stack export", "pulumi stack import", "pending_operations",
                   "maximum session duration"):
        assert phrase in page, phrase


# ---- 3, 4 and 6: every stack job checks its settings first; the first run creates its stack ---------------


def plan_values(stack: str, **settings) -> dict[str, str]:
    values = {"matrix.stack": stack}
    values.update({k if k.startswith(("vars.", "secrets.")) else f"vars.{k}": v for k, v in settings.items()})
    return values


def test_every_stack_job_checks_its_settings_before_it_touches_anything(preview, deploy):
    for workflow, name, job in all_stack_jobs(preview, deploy):
        plan = step_with_id(job, "plan")
        assert "-m ci plan" in plan["run"], (workflow, name)
        later = [s for s in job["steps"] if s.get("uses", "").startswith(("aws-actions/", "pulumi/actions@"))
                 or "kubectl" in s.get("name", "")]
        assert later and all(index_of(job, s) > index_of(job, plan) for s in later), (workflow, name)
        kubectl = next(s for s in job["steps"] if "kubectl" in s.get("name", ""))
        assert "if" not in kubectl, "the cluster step must not be skipped silently"
        assert kubectl["env"]["SOURCE"] == "${{ steps.plan.outputs.cluster }}"


@pytest.mark.parametrize("workflow,job_name,stack", [
    ("preview.yml", "preview", "dev"), ("deploy.yml", "dev", "dev"), ("deploy.yml", "prod", "prod")])
def test_no_cluster_stops_the_job_at_once_naming_the_variable(tmp_path, workflow, job_name, stack):
    plan = step_with_id(load(workflow)["jobs"][job_name], "plan")
    run = run_step(plan, plan_values(stack, **{"secrets.PULUMI_ACCESS_TOKEN": "pul-x",
                                               "AWS_REGION": "us-east-1",
                                               "AWS_DEPLOY_ROLE_ARN": "arn:aws:iam::1:role/d",
                                               "AWS_PREVIEW_ROLE_ARN": "arn:aws:iam::1:role/p"}), tmp_path)
    assert run.returncode == 2
    assert "::error::no cluster for stack" in run.stderr
    assert "EKS_CLUSTER_NAME" in run.stderr and "KUBE_CONFIG" in run.stderr
    assert run.outputs == {}


def test_the_dev_preview_needs_no_aws(tmp_path, preview):
    """Dev keeps its data in MinIO: with a kubeconfig and Pulumi Cloud it runs with no AWS variable at all,
    and the AWS login step is skipped."""
    job = preview["jobs"]["preview"]
    plan = step_with_id(job, "plan")
    run = run_step(plan, plan_values("dev", **{"secrets.PULUMI_ACCESS_TOKEN": "pul-x",
                                               "secrets.KUBE_CONFIG": "apiVersion: v1"}), tmp_path)
    assert run.returncode == 0, run.stderr
    assert run.outputs == {"stack-name": "dev", "aws": "false", "cluster": "kubeconfig", "secrets-provider": ""}
    aws = step_using(job, "aws-actions/configure-aws-credentials")
    assert aws["if"] == "steps.plan.outputs.aws == 'true'"


def test_the_prod_preview_logs_in_to_aws_and_names_what_is_missing(tmp_path, preview):
    plan = step_with_id(preview["jobs"]["preview"], "plan")
    settings = {"secrets.PULUMI_ACCESS_TOKEN": "pul-x", "secrets.KUBE_CONFIG": "apiVersion: v1"}
    missing = run_step(plan, plan_values("prod", **settings), tmp_path)
    assert missing.returncode == 2
    assert "variable AWS_PREVIEW_ROLE_ARN is not set" in missing.stderr
    assert "variable AWS_REGION is not set" in missing.stderr
    assert "Pulumi.prod.yaml sets storage.mode aws" in missing.stderr
    ok = run_step(plan, plan_values("prod", AWS_REGION="us-east-1", AWS_PREVIEW_ROLE_ARN="arn:aws:iam::1:role/p",
                                    **settings), tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert ok.outputs["aws"] == "true"


def test_an_eks_cluster_gets_its_kubeconfig_from_aws(tmp_path, deploy):
    job = deploy["jobs"]["dev"]
    run = run_step(step_with_id(job, "plan"),
                   plan_values("dev", EKS_CLUSTER_NAME="ml", AWS_REGION="us-east-1",
                               AWS_DEPLOY_ROLE_ARN="arn:aws:iam::1:role/d",
                               **{"secrets.PULUMI_ACCESS_TOKEN": "pul-x"}), tmp_path)
    assert run.returncode == 0, run.stderr
    assert run.outputs["cluster"] == "eks" and run.outputs["aws"] == "true"


def test_a_kubeconfig_secret_becomes_the_jobs_kubeconfig(tmp_path, deploy):
    kubectl = next(s for s in deploy["jobs"]["dev"]["steps"] if "kubectl" in s.get("name", ""))
    config = "apiVersion: v1\nkind: Config\nclusters: []\n"
    run = run_step(kubectl, {"steps.plan.outputs.cluster": "kubeconfig", "secrets.KUBE_CONFIG": config}, tmp_path)
    assert run.returncode == 0, run.stderr
    path = run.temp / "kubeconfig"
    assert run.env_file == f"KUBECONFIG={path}\n"
    assert path.read_text() == config + "\n"
    assert path.stat().st_mode & 0o077 == 0  # readable by the runner's user only


def test_deploy_creates_a_missing_stack_with_the_planned_name_and_secrets_provider(deploy):
    for stack in STACKS:
        inputs = step_using(deploy["jobs"][stack], "pulumi/actions")["with"]
        assert inputs["upsert"] is True
        assert inputs["stack-name"] == "${{ steps.plan.outputs.stack-name }}"
        assert inputs["secrets-provider"] == "${{ steps.plan.outputs.secrets-provider }}"


def test_preview_creates_a_missing_stack_before_it_previews(preview):
    run = step_with_id(preview["jobs"]["preview"], "preview")["run"]
    select = run.index("pulumi stack select --non-interactive --create \"$STACK\"")
    assert select < run.index("pulumi preview")
    assert "--secrets-provider" in run
    assert step_with_id(preview["jobs"]["preview"], "preview")["env"]["STACK"] == "${{ steps.plan.outputs.stack-name }}"


# ---- 5: a failed preview leaves a comment ------------------------------------------------------------------


def test_preview_keeps_its_log_and_exit_status(preview):
    step = step_with_id(preview["jobs"]["preview"], "preview")
    # The log goes to tee through a process substitution, not a pipeline: inside a pipeline bash ignores
    # -e, and a failed login would run on into the preview (test_a_failed_login_stops_the_step...).
    assert step["run"].startswith('# ') and 'exec > >(tee "$RUNNER_TEMP/preview.txt") 2>&1' in step["run"]
    assert "| tee" not in step["run"]
    # The action would comment only after a success; the job's own step comments on every outcome.
    assert "command" not in step_using(preview["jobs"]["preview"], "pulumi/actions")["with"]


FAKE_PULUMI = """#!/bin/bash
# A stand-in for the Pulumi CLI (none installs here): records each call; `config refresh` rewrites the stack
# file as the real one does, `config get` answers with a deployed digest, `preview` fails with a violation.
echo "$*" >> "$CALLS"
case "$1 $2" in
  "config refresh") echo "config: {kubeflow-e2e:workers: 9}" > "$STACK_FILE" ;;
  "config get") echo "ghcr.io/acme/kubeflow-e2e/${5#kubeflow-e2e:image.}@sha256:$(printf 'a%.0s' {1..64})" ;;
  "preview --non-interactive") echo "Policy Violations:"; echo "    [mandatory]  k8s-no-public-services"; exit 255 ;;
  "login --non-interactive") [ -z "$FAIL_LOGIN" ] || { echo "error: invalid access token" >&2; exit 1; } ;;
esac
"""


def run_preview_step(tmp_path, preview, fail_login=False):
    """Runs the real preview step in a copy of the checkout, with the stand-in `pulumi` first on PATH."""
    step = dict(step_with_id(preview["jobs"]["preview"], "preview"))
    bin_dir, checkout = tmp_path / "bin", tmp_path / "checkout"
    bin_dir.mkdir()
    checkout.mkdir()
    (checkout / "Pulumi.dev.yaml").write_text((ROOT / "Pulumi.dev.yaml").read_text())
    fake = bin_dir / "pulumi"
    fake.write_text(FAKE_PULUMI)
    fake.chmod(0o755)
    step["run"] = (f'export PATH="{bin_dir}:$PATH" CALLS="{tmp_path}/calls" FAIL_LOGIN="{"1" if fail_login else ""}"\n'
                   + step["run"])
    values = {"matrix.stack": "dev", "steps.plan.outputs.stack-name": "acme/kubeflow-e2e/dev",
              "steps.plan.outputs.secrets-provider": ""}
    run = run_step(step, values, tmp_path, cwd=checkout)
    return run, (tmp_path / "calls").read_text().splitlines(), checkout


def test_the_preview_step_fails_when_pulumi_fails(tmp_path, preview):
    run, _, _ = run_preview_step(tmp_path, preview)
    assert run.returncode == 255
    assert "k8s-no-public-services" in (run.temp / "preview.txt").read_text()


def test_a_failed_login_stops_the_step_and_lands_in_the_log(tmp_path, preview):
    run, calls, _ = run_preview_step(tmp_path, preview, fail_login=True)
    assert run.returncode == 1 and calls == ["login --non-interactive"]
    assert "error: invalid access token" in (run.temp / "preview.txt").read_text()


def test_preview_runs_on_the_deployed_images_and_the_prs_own_settings(tmp_path, preview):
    run, calls, checkout = run_preview_step(tmp_path, preview)
    stack = "acme/kubeflow-e2e/dev"
    digest = "@sha256:" + "a" * 64
    assert calls[:3] == ["login --non-interactive", f"stack select --non-interactive --create {stack}",
                         f"config refresh --non-interactive --stack {stack} --force"]
    sets = [c for c in calls if c.startswith("config set")]
    assert sets == [f"config set --stack {stack} kubeflow-e2e:image.{name} ghcr.io/acme/kubeflow-e2e/{name}{digest}"
                    for name in ("trainer", "sidecar", "tensorboard")]
    assert calls[-1].startswith(f"preview --non-interactive --stack {stack} --diff --policy-pack policy")
    # The refresh rewrote the stack file; the PR's own file is back before the preview.
    assert (checkout / "Pulumi.dev.yaml").read_text() == (ROOT / "Pulumi.dev.yaml").read_text()


def test_a_failed_preview_posts_its_failure_and_edits_the_same_comment(tmp_path, preview):
    job = preview["jobs"]["preview"]
    step = step_using(job, "actions/github-script")
    assert step["if"] == "always()" and index_of(job, step) > index_of(job, step_with_id(job, "preview"))
    assert step["env"]["LOG"] == "${{ runner.temp }}/preview.txt"
    log = tmp_path / "preview.txt"
    log.write_text("\x1b[31mPolicy Violations:\x1b[0m\n    [mandatory]  k8s-no-public-services  Service serving\n")
    env = {"STACK": "prod", "OUTCOME": "failure", "LOG": str(log)}

    [_, (verb, number, body)] = run_comment_script(step["with"]["script"], env, existing=[])
    assert (verb, number) == ("create", 12)
    assert body.startswith("<!-- pulumi-preview:prod -->")
    assert "on prod: failed" in body and "k8s-no-public-services  Service serving" in body
    assert "\x1b" not in body and "https://github.com/o/r/actions/runs/7" in body

    # The next push: the preview passes, and the same comment is edited; the other stack's is left alone.
    log.write_text("Resources:\n    + 40 to create\n")
    mine = {"id": 5, "body": body}
    other = {"id": 6, "body": "<!-- pulumi-preview:dev -->\nold"}
    [_, (verb, comment_id, body2)] = run_comment_script(
        step["with"]["script"], {**env, "OUTCOME": "success"}, existing=[other, mine])
    assert (verb, comment_id) == ("update", 5)
    assert "on prod: succeeded" in body2 and "+ 40 to create" in body2


def test_a_preview_that_never_ran_shows_the_settings_problem(tmp_path, preview):
    """The plan step writes its problems where the preview's log would be, so the comment names them."""
    job = preview["jobs"]["preview"]
    run = run_step(step_with_id(job, "plan"), plan_values("dev"), tmp_path)
    assert run.returncode == 2
    log = run.temp / "preview.txt"
    env = {"STACK": "dev", "OUTCOME": "skipped", "LOG": str(log)}
    [_, (verb, _, body)] = run_comment_script(step_using(job, "actions/github-script")["with"]["script"], env, [])
    assert verb == "create"
    assert "did not run" in body and "secret PULUMI_ACCESS_TOKEN is not set" in body and "no cluster" in body


# ---- 7: one concurrency group per environment -------------------------------------------------------------


def test_each_environment_deploys_in_its_own_concurrency_group(deploy):
    assert "concurrency" not in deploy, "a workflow-wide group lets a run waiting for prod approval block dev"
    groups = {}
    for stack in STACKS:
        job = deploy["jobs"][stack]
        assert job["environment"] == stack
        assert job["concurrency"]["cancel-in-progress"] is False  # never cancelled halfway
        groups[stack] = job["concurrency"]["group"]
        assert stack in groups[stack]
    assert len(set(groups.values())) == len(STACKS)


# ---- 8: the manifest diff renders each side with its own pins, and skips the comment cleanly --------------


def test_each_side_renders_with_its_own_pinned_requirements(preview):
    job = preview["jobs"]["manifests"]
    install = next(s for s in job["steps"] if s.get("name", "").startswith("Install"))["run"]
    assert 'for side in base head' in install
    assert '"$side/requirements/infra.txt"' in install and '"$side/requirements/constraints.txt"' in install
    assert 'python -m venv "$side/.venv"' in install
    render = next(s for s in job["steps"] if s.get("name", "").startswith("Render"))["run"]
    assert '(cd "$side" && .venv/bin/python -m render' in render
    # a base commit from before `render/` left infra/ still renders, with its own command
    assert '(cd "$side" && .venv/bin/python -m infra.render' in render
    assert "head/.venv/bin/python" not in render and '$PWD/head' not in render


def test_the_comment_job_runs_only_when_there_is_a_diff_to_post(preview):
    job = preview["jobs"]["manifests"]
    upload = step_using(job, "actions/upload-artifact")
    flag = step_with_id(job, "uploaded")
    assert index_of(job, flag) == index_of(job, upload) + 1
    assert 'echo "comment=true" >> "$GITHUB_OUTPUT"' in flag["run"]
    assert job["outputs"]["comment"].startswith("${{ steps.uploaded.outputs.comment }}")
    comment = preview["jobs"]["manifests-comment"]
    assert "needs.manifests.outputs.comment == 'true'" in comment["if"]
    assert "always()" in comment["if"]  # still posts when the guardrails failed after the upload


def test_the_uploaded_flag_step_runs(tmp_path, preview):
    run = run_step(step_with_id(preview["jobs"]["manifests"], "uploaded"), {}, tmp_path)
    assert run.returncode == 0 and run.outputs == {"comment": "true"}


def test_config_map_is_valid_yaml_for_the_action(deploy):
    """pulumi/actions parses `config-map` as YAML (actions-parsers getYAMLInput) into {key: {value, secret}}."""
    for stack in STACKS:
        text = step_using(deploy["jobs"][stack], "pulumi/actions")["with"]["config-map"]
        parsed = yaml.safe_load(text)
        assert all(set(v) == {"value", "secret"} and v["secret"] is False for v in parsed.values()), parsed
