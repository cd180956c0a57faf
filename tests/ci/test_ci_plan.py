"""`ci plan`: every setting a stack job needs, checked before it spends any time, each problem named
with its fix; and the stack name form that works on Pulumi Cloud and on a self-managed backend."""

from __future__ import annotations

import shutil

import pytest

from ci import settings
from tests.ci.tools import ROOT

CLOUD = {"HAS_PULUMI_ACCESS_TOKEN": "true", "HAS_KUBE_CONFIG": "true"}
AWS = {"AWS_REGION": "us-east-1", "AWS_DEPLOY_ROLE_ARN": "arn:aws:iam::123456789012:role/deploy"}


def plan(stack="dev", root=ROOT, **env):
    return settings.plan(stack, env, "AWS_DEPLOY_ROLE_ARN", root)


def problems(stack="dev", root=ROOT, **env) -> str:
    with pytest.raises(settings.CIError) as info:
        plan(stack, root, **env)
    return str(info.value)


@pytest.fixture
def salted(tmp_path):
    """A copy of the stack files with the salt a `pulumi stack init --secrets-provider passphrase` writes."""
    for stack in ("dev", "prod"):
        text = (ROOT / f"Pulumi.{stack}.yaml").read_text()
        (tmp_path / f"Pulumi.{stack}.yaml").write_text("encryptionsalt: v1:abc=:v1:def:ghi==\n" + text)
    return tmp_path


def test_pulumi_cloud_with_an_org_gets_the_fully_qualified_name():
    assert plan(**CLOUD, PULUMI_ORG="acme").stack_name == "acme/kubeflow-e2e/dev"
    assert plan(**CLOUD).stack_name == "dev"  # the token's default organization
    assert plan(**CLOUD).secrets_provider == ""  # Pulumi Cloud's own


def test_a_self_managed_backend_gets_the_plain_name_and_the_passphrase(salted):
    env = {"PULUMI_BACKEND_URL": "file:///state", "HAS_PULUMI_CONFIG_PASSPHRASE": "true", "HAS_KUBE_CONFIG": "true"}
    result = plan(root=salted, **env)
    assert (result.stack_name, result.secrets_provider, result.aws) == ("dev", "passphrase", False)
    assert plan(root=salted, PULUMI_ORG="organization", **env).stack_name == "dev"
    assert "variable PULUMI_ORG is 'acme'" in problems(root=salted, PULUMI_ORG="acme", **env)


def test_no_token_and_no_backend_is_named():
    text = problems(HAS_KUBE_CONFIG="true")
    assert "secret PULUMI_ACCESS_TOKEN is not set" in text and "PULUMI_BACKEND_URL" in text


def test_a_passphrase_stack_needs_the_secret_and_a_committed_salt():
    text = problems(PULUMI_BACKEND_URL="file:///state", HAS_KUBE_CONFIG="true")
    assert "secret PULUMI_CONFIG_PASSPHRASE is not set" in text
    assert "Pulumi.dev.yaml has no encryptionsalt" in text
    assert "pulumi stack init dev --secrets-provider passphrase" in text and "commit Pulumi.dev.yaml" in text


def test_a_kms_provider_needs_its_key_in_the_stack_file_and_aws(tmp_path):
    shutil.copy(ROOT / "Pulumi.dev.yaml", tmp_path)
    env = {**CLOUD, "PULUMI_SECRETS_PROVIDER": "awskms://alias/pulumi"}
    assert "Pulumi.dev.yaml has no encryptedkey" in problems(root=tmp_path, **env)
    (tmp_path / "Pulumi.dev.yaml").write_text(
        "secretsprovider: awskms://alias/pulumi\nencryptedkey: AQICAH==\n" + (ROOT / "Pulumi.dev.yaml").read_text())
    assert "AWS_DEPLOY_ROLE_ARN is not set" in problems(root=tmp_path, **env)
    result = plan(root=tmp_path, **env, **AWS)
    assert result.aws and result.secrets_provider == "awskms://alias/pulumi"
    assert result.aws_reasons == ("the secrets provider is AWS KMS (PULUMI_SECRETS_PROVIDER)",)


def test_state_on_s3_needs_aws_even_for_the_minio_stack(salted):
    env = {"PULUMI_BACKEND_URL": "s3://state?region=us-east-1", "HAS_PULUMI_CONFIG_PASSPHRASE": "true",
           "HAS_KUBE_CONFIG": "true"}
    assert "variable AWS_REGION is not set" in problems(root=salted, **env)
    assert plan(root=salted, **env, **AWS).aws


def test_one_cluster_source_only():
    text = problems(HAS_PULUMI_ACCESS_TOKEN="true", HAS_KUBE_CONFIG="true", EKS_CLUSTER_NAME="ml", **AWS)
    assert "both the variable EKS_CLUSTER_NAME (ml) and the secret KUBE_CONFIG are set" in text


def test_every_problem_is_reported_at_once():
    assert len(problems("prod").splitlines()) == 4  # token, cluster, role, region


def test_an_unknown_stack_is_named():
    assert "no Pulumi.staging.yaml; the stacks are dev, prod" in problems("staging", **CLOUD)


@pytest.mark.parametrize("value", ["acme", "https://ghcr.io/acme", "ghcr.io/Acme", "ghcr.io/acme:1.0"])
def test_a_bad_registry_is_refused(value):
    with pytest.raises(settings.CIError, match="IMAGE_REGISTRY"):
        settings.registry({"IMAGE_REGISTRY": value})


def test_the_cli_prints_outputs_and_exits_2_on_problems(capsys, tmp_path):
    assert settings.main(["plan", "--stack", "dev", "--role-variable", "AWS_DEPLOY_ROLE_ARN"], env=CLOUD) == 0
    assert capsys.readouterr().out.splitlines() == [
        "stack-name=dev", "aws=false", "cluster=kubeconfig", "secrets-provider="]
    error_file = tmp_path / "problems.txt"
    argv = ["plan", "--stack", "dev", "--role-variable", "AWS_DEPLOY_ROLE_ARN", "--error-file", str(error_file)]
    assert settings.main(argv, env={"GITHUB_ACTIONS": "true"}) == 2
    err = capsys.readouterr().err
    assert err.startswith("::error::") and "no cluster for stack dev" in err
    assert "no cluster for stack dev" in error_file.read_text()
