"""Who may do what in the bucket: the S3 roles with their prefixes, the pods' identities that hold them, and
their names in each storage mode (a Secret of keys, or under IRSA an IAM role trusting one ServiceAccount)."""

from __future__ import annotations

import re

from infra.config import StackConfig
from infra.configcheck import ConfigError

CREDENTIALS_SECRET = "s3-credentials"  # the pipeline's keys; other roles' Secrets are s3-credentials-<role>
ARGO_SERVER_SA = "argo-workflows-server"  # pinned in the chart values (infra.argo)

# The identities our pods run as, each with its own S3 rights (its IRSA role trusts it alone). None of them
# gets an API token: pods of ours never talk to the Kubernetes API.
SERVICE_ACCOUNTS = ("pipeline", "serving", "tensorboard")

# Each role's rights, by prefix (docs/design.md's layout; `argo/` holds Argo's archived logs). Each role gets
# its own IAM policy (and user or IRSA role), or its own MinIO user.
S3_ROLES: dict[str, dict[str, tuple[str, ...]]] = {
    # data prep writes data/, training writes runs/ and models/, evaluate reads; Argo's wait container
    # archives the workflow pods' logs under argo/
    "pipeline": {"write": ("data/", "runs/", "models/", "argo/")},
    "serving": {"read": ("models/",)},  # the sync-model sidecar
    "tensorboard": {"read": ("runs/",)},
    "cache": {"read": ("data/",)},  # Fluid's Alluxio (data.source volume)
    "argo-server": {"read": ("argo/",)},  # the Argo server showing archived logs (IRSA)
}


def s3_roles(cfg: StackConfig) -> list[str]:
    """The roles this stack gives S3 access to: the cache only when training reads from it, the Argo server
    only under IRSA (with keys, it reads the artifact repository's Secret, the pipeline's)."""
    out = list(SERVICE_ACCOUNTS)
    if cfg.data.source == "volume":
        out.append("cache")
    if cfg.storage.credentials == "irsa":
        out.append("argo-server")
    return out


def credentials_secret(role: str) -> str:
    return CREDENTIALS_SECRET if role == "pipeline" else f"{CREDENTIALS_SECRET}-{role}"


def irsa_subjects(cfg: StackConfig) -> dict[str, tuple[str, str]]:
    """S3 role -> the (namespace, ServiceAccount) its IAM role trusts, one each (IRSA)."""
    out = {sa: (cfg.namespace, sa) for sa in SERVICE_ACCOUNTS}
    out["argo-server"] = (cfg.argo.namespace, ARGO_SERVER_SA)
    return out


def irsa_role_names(cfg: StackConfig) -> dict[str, str]:
    """S3 role -> its IAM role's name (the pipeline's as earlier versions named it)."""
    base = f"{cfg.project}-{cfg.stack}-{cfg.namespace}"
    return {
        role: (base if role == "pipeline" else f"{base[: 63 - len(role)]}-{role}")[:64] for role in irsa_subjects(cfg)
    }


def irsa_role_arn(cfg: StackConfig, role: str) -> str | None:
    """A role's ARN is known from config: a role lives in the account of the OIDC provider it trusts."""
    if cfg.storage.credentials != "irsa":
        return None
    partition, account = arn_parts(cfg.storage.oidc_provider_arn or "")
    return f"arn:{partition}:iam::{account}:role/{irsa_role_names(cfg)[role]}"


def arn_parts(arn: str) -> tuple[str, str]:
    """An IAM OIDC provider's ARN -> (partition, account); ConfigError otherwise."""
    m = re.match(r"^arn:(aws[a-z-]*):iam::(\d{12}):oidc-provider/(.+)$", arn)
    if not m:
        raise ConfigError(
            "storage.oidcProviderArn",
            "is not an IAM OIDC provider ARN",
            arn,
            "use arn:aws:iam::ACCOUNT:oidc-provider/oidc.eks.REGION.amazonaws.com/id/ID "
            "(aws iam list-open-id-connect-providers)",
        )
    return m.group(1), m.group(2)


def oidc_issuer(arn: str) -> str:
    """`arn:aws:iam::1:oidc-provider/oidc.eks...` -> `oidc.eks...` (the trust policy's condition prefix)."""
    return arn.split(":oidc-provider/", 1)[1]
