"""What a GitHub Actions job must know before it touches a stack, checked before it spends any time.

    python -m ci plan --stack dev --role-variable AWS_DEPLOY_ROLE_ARN   # key=value lines for $GITHUB_OUTPUT
    python -m ci registry                                              # where the deploy pushes images
    python -m ci timeout --stack prod                                  # the job timeout the stack needs

`plan` reads the repository's settings from the environment (the workflow passes each variable by its own
name, and each secret only as `HAS_<NAME>=true|false`) and the stack's file `Pulumi.<stack>.yaml`, and
either prints what the next steps need (`stack-name`, `aws`, `cluster`, `secrets-provider`) or exits 2 with
one line per missing setting, naming the variable or secret and the fix. Nothing here talks to GitHub,
Pulumi or AWS; the workflows under `.github/workflows/` own those calls.

Upstream facts this relies on (each read 2026-11-29):
- Stack names: `<stack>` works on Pulumi Cloud (the token's default organization) and on every self-managed
  backend; `<org>/<project>/<stack>` works on Pulumi Cloud, while self-managed backends accept only the
  organization `organization` and legacy ones no qualified name at all (Pulumi docs, Automation API
  `fullyQualifiedStackName`).
- The passphrase secrets provider keeps its salt in `Pulumi.<stack>.yaml` (`encryptionsalt`), cloud KMS
  providers their data key (`encryptedkey`); Pulumi's docs call committing them safe and good practice
  (pulumi/docs#12483). A salt made on a CI runner is lost with it, and the next run cannot decrypt the state.
- `aws-actions/configure-aws-credentials` v6.2.3: `role-duration-seconds` defaults to one hour and accepts up
  to 12 hours (43,200 s), bounded by the role's own maximum session duration (its README).
"""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROJECT = "kubeflow-e2e"
MARGIN_MINUTES = 30  # installs, Helm charts and the operator, serving's rollout after training (10 min awaits)
MAX_ROLE_SESSION_SECONDS = 43_200  # configure-aws-credentials v6.2.3 README: 15 min to 12 hours
GITHUB_HOSTED_MAX_MINUTES = 360  # GitHub-hosted runners end any job after 6 hours
DIY_ORGANIZATION = "organization"  # the only organization name a self-managed backend accepts
IMAGES = ("trainer", "sidecar", "tensorboard")


class CIError(Exception):
    """Settings a job cannot run with: one message per problem, each naming the setting and the fix."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class Plan:
    stack_name: str  # what `pulumi` gets as --stack
    aws: bool  # the job needs AWS credentials
    aws_reasons: tuple[str, ...]  # why (empty when aws is False)
    cluster: str  # "eks" (aws eks update-kubeconfig) or "kubeconfig" (the KUBE_CONFIG secret)
    secrets_provider: str  # for `--secrets-provider`; "" = the backend's default (Pulumi Cloud's)

    def outputs(self) -> dict[str, str]:
        return {
            "stack-name": self.stack_name,
            "aws": "true" if self.aws else "false",
            "cluster": self.cluster,
            "secrets-provider": self.secrets_provider,
        }


def _set(env: Mapping[str, str], name: str) -> str:
    return (env.get(name) or "").strip()


def _has(env: Mapping[str, str], secret: str) -> bool:
    return _set(env, f"HAS_{secret}") == "true"


def stack_file(stack: str, root: Path = ROOT) -> dict:
    """`Pulumi.<stack>.yaml` as a dict (the stack's settings and its `config`)."""
    import yaml

    path = root / f"Pulumi.{stack}.yaml"
    if not path.is_file():
        names = sorted(p.name[len("Pulumi.") : -len(".yaml")] for p in root.glob("Pulumi.*.yaml"))
        raise CIError([f"stack {stack}: no {path.name}; the stacks are {', '.join(names)}"])
    return yaml.safe_load(path.read_text()) or {}


def plan(stack: str, env: Mapping[str, str], role_variable: str, root: Path = ROOT) -> Plan:
    """Checks every setting a job on `stack` needs and says what its next steps do.

    `env` holds the repository's variables by name (PULUMI_BACKEND_URL, PULUMI_ORG, PULUMI_SECRETS_PROVIDER,
    EKS_CLUSTER_NAME, AWS_REGION and the role variable named by `role_variable`) and, for each secret,
    `HAS_<NAME>` = "true" or "false" (PULUMI_ACCESS_TOKEN, PULUMI_CONFIG_PASSPHRASE, KUBE_CONFIG).
    Raises CIError listing every problem at once."""
    settings = stack_file(stack, root)
    config = settings.get("config") or {}
    file = f"Pulumi.{stack}.yaml"
    problems: list[str] = []

    # The backend and the stack's name.
    backend = _set(env, "PULUMI_BACKEND_URL")
    org = _set(env, "PULUMI_ORG")
    if backend:
        if org and org != DIY_ORGANIZATION:
            problems.append(
                f"variable PULUMI_ORG is {org!r}, but a self-managed backend (PULUMI_BACKEND_URL={backend}) "
                "has no organizations: delete PULUMI_ORG, or unset PULUMI_BACKEND_URL to use Pulumi Cloud"
            )
        stack_name = stack
    else:
        if not _has(env, "PULUMI_ACCESS_TOKEN"):
            problems.append(
                "secret PULUMI_ACCESS_TOKEN is not set: add a Pulumi Cloud access token as a repository secret, "
                "or set the variable PULUMI_BACKEND_URL (e.g. s3://my-state?region=us-east-1) for a "
                "self-managed backend"
            )
        stack_name = f"{org}/{PROJECT}/{stack}" if org else stack

    # The secrets provider the stack file needs.
    provider = _set(env, "PULUMI_SECRETS_PROVIDER")
    effective = provider or ("passphrase" if backend else "default")
    login = f"pulumi login {backend}" if backend else "pulumi login"
    init = f"`{login}`, `pulumi stack init {stack_name} --secrets-provider {effective}`, then commit {file}"
    if effective == "passphrase":
        if not _has(env, "PULUMI_CONFIG_PASSPHRASE"):
            problems.append(
                f"secret PULUMI_CONFIG_PASSPHRASE is not set: stack {stack} uses the passphrase secrets provider "
                f"({'the default of a self-managed backend' if not provider else 'PULUMI_SECRETS_PROVIDER'}); "
                "add the passphrase as a secret, or set the variable PULUMI_SECRETS_PROVIDER (e.g. awskms://alias/pulumi)"
            )
        if not settings.get("encryptionsalt"):
            problems.append(
                f"{file} has no encryptionsalt: a salt made on the runner is lost with it and the next run "
                f"cannot decrypt the stack; create the stack once from your machine ({init})"
            )
    elif effective != "default" and not settings.get("encryptedkey"):
        problems.append(
            f"{file} has no encryptedkey for secrets provider {effective}: a key made on the runner is lost "
            f"with it; create the stack once from your machine ({init})"
        )

    # The cluster.
    eks = _set(env, "EKS_CLUSTER_NAME")
    kubeconfig = _has(env, "KUBE_CONFIG")
    if eks and kubeconfig:
        problems.append(
            f"both the variable EKS_CLUSTER_NAME ({eks}) and the secret KUBE_CONFIG are set for stack {stack}: "
            "keep one"
        )
    elif not eks and not kubeconfig:
        problems.append(
            f"no cluster for stack {stack}: set the variable EKS_CLUSTER_NAME (an EKS cluster) or the secret "
            "KUBE_CONFIG (a kubeconfig file for any other cluster); without one, preview shows every resource "
            "as a create and up fails on an unreachable cluster"
        )
    cluster = "eks" if eks else "kubeconfig"

    # AWS: only when something in this job talks to it.
    reasons = []
    storage = config.get(f"{PROJECT}:storage")  # structured config; a flat key is read too
    mode = storage.get("mode") if isinstance(storage, dict) else None
    if str(mode or config.get(f"{PROJECT}:storage.mode", "minio")) == "aws":
        reasons.append(f"{file} sets storage.mode aws")
    if eks:
        reasons.append("the cluster is EKS (EKS_CLUSTER_NAME)")
    if backend.startswith("s3://"):
        reasons.append("the Pulumi state is on S3 (PULUMI_BACKEND_URL)")
    if effective.startswith("awskms://"):
        reasons.append("the secrets provider is AWS KMS (PULUMI_SECRETS_PROVIDER)")
    if reasons:
        for name, example in ((role_variable, "arn:aws:iam::123456789012:role/deploy"), ("AWS_REGION", "us-east-1")):
            if not _set(env, name):
                problems.append(
                    f"variable {name} is not set, and stack {stack} needs AWS because {'; '.join(reasons)}: "
                    f"set it (e.g. {example})"
                )

    if problems:
        raise CIError(problems)
    return Plan(stack_name, bool(reasons), tuple(reasons), cluster, "" if effective == "default" else effective)


# ---- images -----------------------------------------------------------------------------------------------

_REGISTRY = re.compile(r"^[a-z0-9.-]+(:\d+)?(/[a-z0-9._-]+)*$")


def registry(env: Mapping[str, str]) -> dict[str, str]:
    """Where the deploy workflow pushes the images: `IMAGE_REGISTRY` (e.g. `ghcr.io/my-org`,
    `registry.example.com:5000/team`) or, unset, `ghcr.io/<repository owner, lower case>`. Returns `host`
    (for `docker login`) and `prefix` (images are `<prefix>/kubeflow-e2e/<image>`)."""
    value = _set(env, "IMAGE_REGISTRY").rstrip("/")
    if not value:
        owner = _set(env, "GITHUB_REPOSITORY_OWNER").lower()
        if not owner:
            raise CIError(["neither the variable IMAGE_REGISTRY nor GITHUB_REPOSITORY_OWNER is set"])
        value = f"ghcr.io/{owner}"
    host = value.split("/")[0]
    if not _REGISTRY.match(value) or ("." not in host and ":" not in host):  # a bare name is Docker Hub's
        raise CIError([
            f"variable IMAGE_REGISTRY is {value!r}: give a registry host and optional path, lower case, no scheme "
            "or tag, e.g. ghcr.io/my-org or 123456789012.dkr.ecr.us-east-1.amazonaws.com"
        ])
    return {"host": host, "prefix": f"{value}/{PROJECT}"}


# ---- how long a deploy may take -----------------------------------------------------------------------------


def awaited_seconds(resources: list[dict]) -> int:
    """Sum of the waits `pulumi up` makes in turn, over a render's resources: every gate (`infra.gate`: data
    prep, Fluid's DataLoad, the TFJob, the Deployments' rollouts and MinIO's bucket Job; its `timeoutSeconds`),
    and any Kubernetes object still awaited by the
    provider with a `pulumi.com/timeoutSeconds` annotation. They run one after another (each depends on the one
    before), so the worst case is their sum."""
    total = 0
    for r in resources:
        inputs = r.get("inputs") or {}
        if r.get("type") == "pulumi-python:dynamic:Resource" and "timeoutSeconds" in inputs:
            total += int(inputs["timeoutSeconds"])
            continue
        notes = (inputs.get("metadata") or {}).get("annotations") or {}
        if "pulumi.com/timeoutSeconds" in notes and notes.get("pulumi.com/skipAwait") != "true":
            total += int(notes["pulumi.com/timeoutSeconds"])
    return total


def job_timeout_minutes(resources: list[dict]) -> int:
    """The deploy job's `timeout-minutes` for a stack (a render's resources): its awaited waits plus
    MARGIN_MINUTES. The job's AWS session (`role-duration-seconds`) must last as long."""
    return math.ceil(awaited_seconds(resources) / 60) + MARGIN_MINUTES


# ---- command line -------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ci", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("plan", help="check a job's settings; print stack-name, aws, cluster, secrets-provider")
    p.add_argument("--stack", required=True)
    p.add_argument("--role-variable", required=True, help="the variable holding the job's IAM role ARN")
    p.add_argument("--error-file", help="also write the problems here (the PR comment shows them)")
    sub.add_parser("registry", help="print host and prefix of the image registry")
    t = sub.add_parser("timeout", help="print the deploy job timeout (minutes) the stack's waits need")
    t.add_argument("--stack", required=True)
    i = sub.add_parser("impact", help="print what a change does to data prep, training and serving (ci.impact)")
    i.add_argument("base_dir", help="the base's `python -m render --out` folder (one subfolder per stack)")
    i.add_argument("head_dir", help="the head's")
    args = parser.parse_args(argv)
    if args.command == "impact":
        from ci import impact

        return impact.main([args.base_dir, args.head_dir])
    env = os.environ if env is None else env
    try:
        if args.command == "plan":
            try:
                result = plan(args.stack, env, args.role_variable)
            except CIError as e:
                if args.error_file:
                    Path(args.error_file).write_text(str(e) + "\n")
                raise
            out = result.outputs()
            print(
                f"stack {out['stack-name']}: cluster from {result.cluster}, "
                + (f"AWS credentials because {'; '.join(result.aws_reasons)}" if result.aws else "no AWS"),
                file=sys.stderr,
            )
        elif args.command == "registry":
            out = registry(env)
        else:
            from render import render

            out = {"timeout-minutes": str(job_timeout_minutes(render(args.stack).resources))}
    except CIError as e:
        for problem in e.problems:
            print(f"::error::{problem}" if env.get("GITHUB_ACTIONS") == "true" else f"error: {problem}",
                  file=sys.stderr)
        return 2
    print("\n".join(f"{k}={v}" for k, v in out.items()))
    return 0

