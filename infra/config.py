"""The stack's configuration: one schema, one typed frozen record, read and checked before any resource exists.

Every key is declared once, as a field of a grouped record (`TrainingConfig.epochs` is
`setting("training.epochs", 40, meaning, whole(1, 10_000))`): its name, type (the annotation), default,
meaning and check. `load` checks each value, then the rules between keys (the small functions in
`CROSS_CHECKS`), and builds the `StackConfig`. Every error is a `ConfigError` naming the key, the bad value and
the fix. docs/deploy.md's table of keys is `docs_table()`; docs/config.md says how to add a key.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import ipaddress
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from common import rules
from common.errors import UserError

NS = "kubeflow-e2e"  # the config namespace: `pulumi config set kubeflow-e2e:workers 4`
MAX_WORKERS = 64
STORAGE_MODES = ("minio", "aws", "external")
CREDENTIALS = ("access-key", "irsa")
DATA_SOURCES = ("s3", "volume")
PULL_POLICIES = ("IfNotPresent", "Always", "Never")
WORKLOADS = ("training", "dataprep", "serving", "sync", "tensorboard", "minio")
ARGO_SERVER_SA = "argo-workflows-server"  # pinned in the chart values (infra.argo)
# The training operator's standalone overlay installs into this namespace; it is not configurable
# (kubeflow/trainer v1.9.4 `manifests/overlays/standalone/kustomization.yaml`, `namespace: kubeflow`).
OPERATOR_NAMESPACE = "kubeflow"

Getter = Callable[[str], Any]


# ---- the error -----------------------------------------------------------------------------------------


class ConfigError(UserError):
    """A config value the user can fix: `error: config <ns:key> <problem> (<value>): <fix>`."""

    def __init__(
        self, key: str, problem: str, value: object, fix: str, *, what: str | None = None, literal: bool = False
    ):
        """`literal`: the fix is exact as given (otherwise commands on dotted keys get `--path`)."""
        self.key = key
        super().__init__(what or f"config {NS}:{key} {problem}", _show(value), fix if literal else with_path(fix))


_NESTED_COMMAND = re.compile(rf"\b(pulumi config (?:set|rm)(?: --secret)?|or set) ({NS}:\w+\.[\w.]+)")


def with_path(text: str) -> str:
    """`pulumi config set kubeflow-e2e:storage.mode x` -> `pulumi config set --path kubeflow-e2e:storage.mode x`:
    a dotted key is a field of a structured value, which Pulumi writes only with `--path`."""
    return _NESTED_COMMAND.sub(r"\1 --path \2", text)


def _show(value: object) -> str:
    return "unset" if value is None or value == "" else str(value)


# ---- reading one key -----------------------------------------------------------------------------------


class Reader:
    """Raw values by key (`get`, `get_secret`: key -> raw value or None), each key's checked value computed once,
    so a check may read another key's checked value (the region's rule depends on `storage.mode`)."""

    def __init__(self, stack: str, get: Getter, get_secret: Getter):
        self.stack, self.get, self.get_secret = stack, get, get_secret
        self._checked: dict[str, Any] = {}

    def raw(self, key: str) -> Any:
        """The value as set, or the key's default (`<stack>` filled in) when unset or empty."""
        value = self.get(key)
        if value is None or value == "":
            default = KEY_NAMES[key].default
            return default.replace("<stack>", self.stack) if isinstance(default, str) else default
        return value

    def value(self, key: str) -> Any:
        if key not in self._checked:
            self._checked[key] = KEY_NAMES[key].check(self, key)
        return self._checked[key]


Check = Callable[[Reader, str], Any]  # (reader, key) -> the checked value; raises ConfigError


# ---- the checks one key's value goes through -------------------------------------------------------------

_BOOLS = {"true": True, "false": False}
_CPU = re.compile(r"^(\d+(\.\d+)?|\.\d+)m?$")
_MEMORY = re.compile(r"^(\d+(\.\d+)?|\.\d+)(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$")
_UNITS = {
    "": 1,
    "m": Decimal("0.001"),
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "P": 10**15,
    "E": 10**18,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "Pi": 2**50,
    "Ei": 2**60,
}
_SEMVER = re.compile(r"^\d+\.\d+\.\d+$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def _default(key: str) -> Any:
    return KEY_NAMES[key].default


def whole(lo: int, hi: int) -> Check:
    """A whole number from `lo` to `hi`, inclusive."""

    def check(r: Reader, key: str) -> int:
        value = r.raw(key)
        try:
            number = int(str(value).strip())
            if isinstance(value, float) and value != number:
                raise ValueError
        except ValueError:
            raise ConfigError(
                key, "must be a whole number", value, f"pulumi config set {NS}:{key} {_default(key)}"
            ) from None
        if not lo <= number <= hi:
            raise ConfigError(
                key, f"must be between {lo} and {hi}", value, f"pulumi config set {NS}:{key} {max(lo, min(hi, number))}"
            )
        return number

    return check


def boolean(r: Reader, key: str) -> bool:
    value = r.raw(key)
    if isinstance(value, bool):
        return value
    parsed = _BOOLS.get(str(value).strip().lower())
    if parsed is None:
        raise ConfigError(key, "must be true or false", value, f"pulumi config set {NS}:{key} true")
    return parsed


def number(r: Reader, key: str) -> str:
    """A decimal number, kept as written; its range is the trainer's rule (`common.rules`, a cross check)."""
    value = r.raw(key)
    try:
        float(str(value))
    except ValueError:
        raise ConfigError(key, "must be a number", value, f"pulumi config set {NS}:{key} {_default(key)}") from None
    return str(value).strip()


def choice(choices: tuple[str, ...]) -> Check:
    def check(r: Reader, key: str) -> str:
        value = str(r.raw(key)).strip()
        if value not in choices:
            raise ConfigError(
                key, f"must be one of {', '.join(choices)}", value, f"pulumi config set {NS}:{key} {choices[0]}"
            )
        return value

    return check


def nonempty(r: Reader, key: str) -> str:
    value = str(r.raw(key) or "").strip()
    if not value:
        raise ConfigError(key, "must not be empty", value, f"pulumi config rm {NS}:{key} to use the default")
    return value


def optional_text(r: Reader, key: str) -> str | None:
    return str(r.raw(key) or "").strip() or None


def optional(check: Check) -> Check:
    """Unset stays None; a set value goes through `check`."""
    return lambda r, key: check(r, key) if r.raw(key) else None


def secret(r: Reader, key: str) -> Any:
    """As the program hands it over: a `pulumi.Output` secret under Pulumi, the plain value in tests."""
    value = r.get_secret(key)
    return None if value in (None, "") else value


def dns_label(max_len: int = 63) -> Check:
    def check(r: Reader, key: str) -> str:
        value = str(r.raw(key)).strip()
        if len(value) > max_len or not _DNS_LABEL.match(value):
            raise ConfigError(
                key,
                f"must be a DNS label: lower-case letters, digits and '-', at most {max_len} "
                "characters, starting and ending with a letter or digit",
                value,
                f"pulumi config set {NS}:{key} {_default(key) or 'name-of-the-namespace'}",
            )
        return value

    return check


def bucket_name(r: Reader, key: str) -> str:
    """S3's bucket naming rules (general purpose buckets)."""
    value = str(r.raw(key)).strip()
    problem = None
    if not 3 <= len(value) <= 63:
        problem = "must be 3 to 63 characters long"
    elif not re.fullmatch(r"[a-z0-9.-]+", value):
        problem = "may contain only lower-case letters, digits, '.' and '-'"
    elif not (value[0].isalnum() and value[-1].isalnum()):
        problem = "must start and end with a letter or digit"
    elif ".." in value or ".-" in value or "-." in value:
        problem = "must not contain '..', '.-' or '-.'"
    elif _is_ip(value):
        problem = "must not look like an IP address"
    elif value.startswith(("xn--", "sthree-", "amzn-s3-demo-")):
        problem = "must not start with xn--, sthree- or amzn-s3-demo-"
    elif value.endswith(("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")):
        problem = "must not end with -s3alias, --ol-s3, .mrap, --x-s3 or --table-s3"
    if problem:
        fix = re.sub(r"[^a-z0-9-]+", "-", value.lower()).strip("-")[:63] or f"kubeflow-e2e-{r.stack}"
        if len(fix) < 3:
            fix = f"kubeflow-e2e-{r.stack}"
        raise ConfigError(
            key, f"breaks S3's bucket naming rules: it {problem}", value, f"pulumi config set {NS}:{key} {fix}"
        )
    return value


def _is_ip(value: str) -> bool:
    try:
        ipaddress.IPv4Address(value)
        return True
    except ValueError:
        return False


def _matching(r: Reader, key: str, pattern: str, meaning: str) -> str:
    value = str(r.raw(key)).strip()
    if not re.fullmatch(pattern, value):
        raise ConfigError(key, f"is not {meaning}", value, f"pulumi config set {NS}:{key} {_default(key)}")
    return value


def region(r: Reader, key: str) -> str:
    """An AWS region on `aws`; S3-compatible endpoints keep their own names (fr-par, nyc3, auto, minio)."""
    if r.value("storage.mode") == "aws":
        return _matching(r, key, r"[a-z]{2}(-[a-z]+)+-\d", "an AWS region such as us-east-1")
    return _matching(r, key, r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}", "a region name (letters, digits, '.', '_', '-')")


def endpoint_url(r: Reader, key: str) -> str | None:
    """A full URL without a path, checked where it is used (`external`); elsewhere a cross check refuses it."""
    value = r.raw(key)
    if value in (None, ""):
        return None
    if r.value("storage.mode") != "external":
        return value
    text = str(value).strip()
    if not re.fullmatch(r"(https?)://([A-Za-z0-9.-]+|\[[0-9a-fA-F:]+\])(:\d{1,5})?/?", text):
        raise ConfigError(
            key,
            "must be a full URL with scheme, host and optional port, no path",
            value,
            f"pulumi config set {NS}:{key} https://s3.example.com:9000",
        )
    return text.rstrip("/")


def image_ref(r: Reader, key: str) -> str:
    value = str(r.raw(key)).strip()
    fix = f"pulumi config set {NS}:{key} REPOSITORY:TAG (a fixed version) or REPOSITORY@sha256:DIGEST"
    if not value or any(c.isspace() for c in value):
        raise ConfigError(key, "is not an image reference", value, fix)
    if "@" in value:
        name, digest = value.split("@", 1)
        if not name or not _DIGEST.match(digest):
            raise ConfigError(key, "has a malformed digest", value, fix)
        return _registry_host(r.stack, key, value)
    name, _, tag = value.rpartition(":")
    if not name or "/" in tag:  # "host:5000/repo" has no tag
        raise ConfigError(key, "has no tag, so every pull may get a different image", value, fix)
    if tag == "latest":
        raise ConfigError(key, "uses the moving tag latest", value, fix)
    if not _TAG.match(tag):
        raise ConfigError(key, "has a malformed tag", value, fix)
    return _registry_host(r.stack, key, value)


def _registry_host(stack: str, key: str, value: str) -> str:
    """Outside the dev stack an image must name its registry: a bare `kubeflow-e2e/trainer:0.1.0` resolves to
    Docker Hub's `kubeflow-e2e` namespace, which this project does not own. The host is the first path component
    when it holds a `.` or `:` or is `localhost` (Docker's reference grammar, distribution/reference)."""
    first, slash, _ = value.partition("/")
    if stack == "dev" or (slash and ("." in first or ":" in first or first == "localhost")):
        return value
    raise ConfigError(
        key,
        f"names no registry host, so on stack {stack} it would pull from Docker Hub's "
        f"'{first if slash else 'library'}' namespace",
        value,
        f"pulumi config set {NS}:{key} REGISTRY/{value} (e.g. ghcr.io/OWNER/...; docker.io/{value} if Docker "
        "Hub is meant); only the dev stack takes bare names, for images loaded into a local cluster",
    )


def chart_version(r: Reader, key: str) -> str:
    value = str(r.raw(key)).strip()
    if not _SEMVER.match(value):
        raise ConfigError(
            key,
            "is not a pinned chart version (exact MAJOR.MINOR.PATCH, no ranges)",
            value,
            f"pulumi config set {NS}:{key} {_default(key)}",
        )
    return value


def operator_release(r: Reader, key: str) -> str:
    value = str(r.raw(key)).strip()
    fix = f"pulumi config set {NS}:{key} {_default(key)}"
    m = re.fullmatch(r"v(\d+)\.(\d+)\.(\d+)", value)
    if not m:
        raise ConfigError(key, "is not a pinned release tag (vMAJOR.MINOR.PATCH, not a branch)", value, fix)
    if int(m.group(1)) != 1:
        raise ConfigError(key, "is not a v1 release: Kubeflow Trainer v2 dropped TFJob and TensorFlow", value, fix)
    if int(m.group(2)) < 7:
        raise ConfigError(key, "is older than v1.7, whose standalone manifests this stack installs", value, fix)
    return value


def cpu(r: Reader, key: str) -> str:
    value = str(r.raw(key)).strip()
    if not _CPU.match(value):
        fix = f"pulumi config set {NS}:{key} 500m (or a number of cores: 2)"
        raise ConfigError(key, "is not a CPU quantity", value, fix)
    return value


def memory(r: Reader, key: str) -> str:
    value = str(r.raw(key)).strip()
    if not _MEMORY.match(value):
        raise ConfigError(
            key,
            "is not a memory quantity",
            value,
            f"pulumi config set {NS}:{key} 512Mi (binary suffixes Ki, Mi, Gi; or k, M, G)",
        )
    return value


def quantity_value(text: str) -> Decimal:
    """A checked Kubernetes quantity as a number: `500m` -> 0.5, `2Gi` -> 2147483648."""
    m = re.match(r"^([\d.]+)([A-Za-z]*)$", text)
    assert m, text
    return Decimal(m.group(1)) * _UNITS[m.group(2)]


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


# ---- the schema: grouped records, one declared field per key ----------------------------------------------


@dataclass(frozen=True)
class Setting:
    """One config key: `name` as users write it (`training.epochs`), its default (None: unset; `<stack>` is
    filled in per stack), what it means (docs/deploy.md's table), and the check that turns the raw value into
    the field's typed value."""

    name: str
    default: Any
    meaning: str
    check: Check
    secret: bool = False


def setting(name: str, default: Any, meaning: str, check: Check, *, secret: bool = False) -> Any:
    """Declares a record field as the config key `name`."""
    return field(metadata={"setting": Setting(name, default, meaning, check, secret)})


@dataclass(frozen=True)
class ResourcesConfig:
    """A workload's requests and limits (Kubernetes quantities), each request at most its limit."""

    cpu: str
    memory: str
    cpu_limit: str
    memory_limit: str

    def k8s(self) -> dict:
        return {
            "requests": {"cpu": self.cpu, "memory": self.memory},
            "limits": {"cpu": self.cpu_limit, "memory": self.memory_limit},
        }


def resources(workload: str, cpu_: str, memory_: str, cpu_limit: str, memory_limit: str) -> Any:
    """Declares `<workload>.cpu`, `.memory`, `.cpuLimit` and `.memoryLimit` with their defaults."""
    settings = (
        Setting(f"{workload}.cpu", cpu_, f"{workload}: CPU request", cpu),
        Setting(f"{workload}.memory", memory_, f"{workload}: memory request", memory),
        Setting(f"{workload}.cpuLimit", cpu_limit, f"{workload}: CPU limit", cpu),
        Setting(f"{workload}.memoryLimit", memory_limit, f"{workload}: memory limit", memory),
    )
    return field(metadata={"resources": settings})


@dataclass(frozen=True)
class ClusterConfig:
    kubeconfig: str | None = setting(
        "cluster.kubeconfig",
        None,
        "kubeconfig file of the cluster (unset: `$KUBECONFIG`, else `~/.kube/config`)",
        optional_text,
    )
    context: str | None = setting(
        "cluster.context",
        None,
        "kubeconfig context to deploy into; required, so `pulumi up` never uses whatever context is current",
        optional_text,
    )


@dataclass(frozen=True)
class StorageConfig:
    mode: str = setting(
        "storage.mode",
        "minio",
        "`minio` (run MinIO in the namespace), `aws` (create an S3 bucket) or "
        "`external` (an existing S3-compatible endpoint)",
        choice(STORAGE_MODES),
    )
    bucket: str = setting(
        "storage.bucket", "kubeflow-e2e-<stack>", "bucket name (S3 naming rules; global on AWS)", bucket_name
    )
    region: str = setting(
        "storage.region",
        "us-east-1",
        "`aws`: an AWS region; `external`/`minio`: the endpoint's own region name (`fr-par`, `nyc3`, `auto`, ...)",
        region,
    )
    endpoint: str | None = setting(
        "storage.endpoint",
        None,
        "`external` only: full URL of the S3 endpoint, e.g. `https://minio.example:9000`",
        endpoint_url,
    )
    access_key_id: Any = setting(
        "storage.accessKeyId", None, "`external` only: access key (set with `--secret`)", secret, secret=True
    )
    secret_access_key: Any = setting(
        "storage.secretAccessKey", None, "`external` only: secret key (set with `--secret`)", secret, secret=True
    )
    credentials: str = setting(
        "storage.credentials",
        "access-key",
        "`aws` only: `access-key` (an IAM user key per role, in Secrets) or `irsa` (an IAM role per "
        "ServiceAccount; the prod path on EKS)",
        choice(CREDENTIALS),
    )
    oidc_provider_arn: str | None = setting(
        "storage.oidcProviderArn", None, "`irsa` only: ARN of the cluster's IAM OIDC provider", optional_text
    )
    protect: bool = setting(
        "storage.protect",
        False,
        "`aws` only: protect and retain the bucket on delete (otherwise force_destroy)",
        boolean,
    )
    versioning: bool = setting("storage.versioning", False, "`aws` only: turn on bucket versioning", boolean)
    runs_expire_days: int = setting(
        "storage.runsExpireDays",
        30,
        "`aws` only: lifecycle rule deleting objects under `runs/` after N days",
        whole(1, 3650),
    )


@dataclass(frozen=True)
class MinioConfig:
    size: str = setting("minio.size", "10Gi", "`minio` only: size of MinIO's PersistentVolumeClaim", memory)
    resources: ResourcesConfig = resources("minio", "100m", "256Mi", "1", "1Gi")


@dataclass(frozen=True)
class ImageConfig:
    trainer: str = setting(
        "image.trainer",
        "kubeflow-e2e/trainer:0.1.0",
        "trainer image (`python -m trainer`); pinned tag or digest",
        image_ref,
    )
    sidecar: str = setting(
        "image.sidecar", "kubeflow-e2e/sidecar:0.1.0", "sync-model image (no TensorFlow); pinned", image_ref
    )
    tensorboard: str = setting(
        "image.tensorboard", "kubeflow-e2e/tensorboard:0.1.0", "TensorBoard image (no TensorFlow); pinned", image_ref
    )
    serving: str = setting(
        "image.serving",
        "docker.io/tensorflow/serving:2.20.0",
        "TF Serving image; pinned (its TensorFlow minor version is checked against the trainer's export)",
        image_ref,
    )
    minio: str = setting(
        "image.minio", "quay.io/minio/minio:RELEASE.2025-09-07T16-13-09Z", "MinIO server image; pinned", image_ref
    )
    mc: str = setting(
        "image.mc",
        "quay.io/minio/mc:RELEASE.2025-08-13T08-35-41Z",
        "MinIO client image (bucket setup); pinned",
        image_ref,
    )
    pull_policy: str = setting(
        "image.pullPolicy", "IfNotPresent", "imagePullPolicy of our containers", choice(PULL_POLICIES)
    )


@dataclass(frozen=True)
class DataConfig:
    prepare_source: str = setting(
        "data.prepareSource", "digits", "`prepare-data --source`: `digits`, a URL or a path in the image", nonempty
    )
    source: str = setting(
        "data.source",
        "s3",
        "how training reads the dataset: `s3` (DATA_URL on S3) or `volume` (Fluid PVC)",
        choice(DATA_SOURCES),
    )


@dataclass(frozen=True)
class DataPrepConfig:
    timeout_seconds: int = setting(
        "dataprep.timeoutSeconds", 1800, "how long `pulumi up` waits for data prep", whole(60, 24 * 3600)
    )
    resources: ResourcesConfig = resources("dataprep", "250m", "512Mi", "1", "1Gi")


@dataclass(frozen=True)
class TrainingConfig:
    run: str = setting(
        "training.run",
        "baseline",
        "run name: TFJob `mnist-<run>`, RUN_URL `s3://<bucket>/runs/<run>-<digest of the run's settings>`",
        dns_label(max_len=40),
    )
    epochs: int = setting("training.epochs", 40, "`train --epochs` (the trainer's tuned default)", whole(1, 10_000))
    batch_size: int = setting("training.batchSize", 64, "`train --batch-size`", whole(1, 65_536))
    learning_rate: str = setting(
        "training.learningRate", "0.003", "`train --learning-rate` (the trainer's tuned default)", number
    )
    backoff_limit: int = setting("training.backoffLimit", 3, "TFJob `runPolicy.backoffLimit`", whole(0, 100))
    timeout_seconds: int = setting(
        "training.timeoutSeconds",
        3600,
        "how long `pulumi up` waits for the TFJob to succeed",
        whole(60, 7 * 24 * 3600),
    )
    resources: ResourcesConfig = resources("training", "1", "2Gi", "2", "2Gi")


@dataclass(frozen=True)
class ServingConfig:
    wait_for_training: bool = setting(
        "serving.waitForTraining",
        True,
        "serving rolls out only after the TFJob succeeded; `false`: `pulumi up` awaits neither the TFJob nor "
        "serving (Deployment and Service), whose pods become ready once a model exists",
        boolean,
    )
    model_name: str = setting("serving.modelName", "mnist", "TF Serving model name (`predict --model`)", dns_label())
    replicas: int = setting("serving.replicas", 1, "TF Serving replicas", whole(1, 100))
    poll_seconds: int = setting(
        "serving.pollSeconds", 30, "sidecar sync interval and TF Serving's file-system poll", whole(1, 3600)
    )
    keep_versions: int = setting(
        "serving.keepVersions", 2, "model versions the sidecar keeps on disk (`sync-model --keep`)", whole(1, 100)
    )
    resources: ResourcesConfig = resources("serving", "250m", "512Mi", "1", "1Gi")


@dataclass(frozen=True)
class SyncConfig:
    """The serving sidecar and the MinIO bucket Job."""

    resources: ResourcesConfig = resources("sync", "50m", "128Mi", "250m", "256Mi")


@dataclass(frozen=True)
class TensorBoardConfig:
    resources: ResourcesConfig = resources("tensorboard", "100m", "512Mi", "500m", "1Gi")


@dataclass(frozen=True)
class AccessConfig:
    from_namespace: str | None = setting(
        "access.fromNamespace",
        None,
        "namespace of your authenticating proxy or Ingress controller: its pods may reach TF Serving (8500, 8501) "
        "and TensorBoard (6006); unset, only `kubectl port-forward` reaches them",
        optional(dns_label()),
    )


@dataclass(frozen=True)
class OperatorConfig:
    install: bool = setting(
        "operator.install",
        True,
        "install the training operator; `false`: use the cluster's own (its TFJob CRD must exist)",
        boolean,
    )
    version: str = setting(
        "operator.version", "v1.9.4", "Kubeflow training-operator release (v1.x: serves TFJob)", operator_release
    )


@dataclass(frozen=True)
class ArgoConfig:
    install: bool = setting(
        "argo.install",
        True,
        "install Argo Workflows; `false`: use the cluster's own (its Workflow CRDs must exist)",
        boolean,
    )
    chart_version: str = setting(
        "argo.chartVersion", "1.0.18", "`argo-workflows` Helm chart version (Argo Workflows v4.0.6)", chart_version
    )
    namespace: str = setting("argo.namespace", "argo", "namespace of the Argo controller and server", dns_label())


@dataclass(frozen=True)
class FluidConfig:
    enabled: bool = setting(
        "fluid.enabled",
        False,
        "install Fluid; with `data.source: volume` the dataset is preloaded onto nodes",
        boolean,
    )
    install: bool = setting(
        "fluid.install",
        True,
        "with `fluid.enabled`: install Fluid; `false`: use the cluster's own (its Dataset CRDs must exist)",
        boolean,
    )
    chart_version: str = setting("fluid.chartVersion", "1.0.8", "`fluid` Helm chart version", chart_version)
    namespace: str = setting("fluid.namespace", "fluid-system", "namespace of the Fluid controllers", dns_label())
    cache_size: str = setting("fluid.cacheSize", "2Gi", "memory cache per Alluxio worker", memory)
    replicas: int = setting("fluid.replicas", 1, "Alluxio cache workers (and DataLoad replicas)", whole(1, 64))


@dataclass(frozen=True)
class StackConfig:
    """The whole config; `project` and `stack` come from Pulumi, every other field from a key."""

    project: str
    stack: str
    cluster: ClusterConfig
    namespace: str = setting(
        "namespace",
        "kubeflow-e2e",
        "Kubernetes namespace for the whole pipeline; not `kubeflow` (the training operator's), Argo's or Fluid's",
        dns_label(),
    )
    workers: int = setting("workers", 1, f"TFJob workers besides the chief (1-{MAX_WORKERS})", whole(1, MAX_WORKERS))
    storage: StorageConfig
    minio: MinioConfig
    image: ImageConfig
    data: DataConfig
    dataprep: DataPrepConfig
    training: TrainingConfig
    serving: ServingConfig
    sync: SyncConfig
    tensorboard: TensorBoardConfig
    access: AccessConfig
    operator: OperatorConfig
    argo: ArgoConfig
    fluid: FluidConfig

    @property
    def resources(self) -> dict[str, ResourcesConfig]:
        """Workload (`WORKLOADS`) -> its requests and limits."""
        return {w: getattr(self, w).resources for w in WORKLOADS}

    # The bucket layout (docs/design.md); the bucket itself may be an Output, so these are plain strings
    # built from the configured name.
    @property
    def data_prefix(self) -> str:
        return "data/mnist"

    @property
    def run_spec(self) -> dict[str, Any]:
        """What shapes a training run: a checkpoint trained under other settings must not be resumed. The
        learning rate is compared as a number (`0.003` and `3e-3` are one spec)."""
        t = self.training
        return {
            "image": self.image.trainer,
            "workers": self.workers,
            "epochs": t.epochs,
            "batchSize": t.batch_size,
            "learningRate": float(t.learning_rate),
            "prepareSource": self.data.prepare_source,
        }

    @property
    def run_digest(self) -> str:
        """8 hex digits of sha256 over `run_spec` as canonical JSON."""
        canonical = json.dumps(self.run_spec, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:8]

    @property
    def run_id(self) -> str:
        """`<training.run>-<run_digest>`: RUN_URL's last part. Same spec, same run (it resumes); a changed
        spec is a new run that trains from scratch."""
        return f"{self.training.run}-{self.run_digest}"

    @property
    def run_prefix(self) -> str:
        return f"runs/{self.run_id}"

    @property
    def model_prefix(self) -> str:
        return f"models/{self.serving.model_name}"

    @property
    def tfjob_name(self) -> str:
        return f"mnist-{self.training.run}"

    @property
    def irsa_subjects(self) -> dict[str, tuple[str, str]]:
        """S3 role -> the (namespace, ServiceAccount) its IAM role trusts, one each (IRSA)."""
        out = {sa: (self.namespace, sa) for sa in ("pipeline", "serving", "tensorboard")}
        out["argo-server"] = (self.argo.namespace, ARGO_SERVER_SA)
        return out

    @property
    def irsa_role_names(self) -> dict[str, str]:
        """S3 role -> its IAM role's name (the pipeline's as earlier versions named it)."""
        base = f"{self.project}-{self.stack}-{self.namespace}"
        return {
            role: (base if role == "pipeline" else f"{base[: 63 - len(role)]}-{role}")[:64]
            for role in self.irsa_subjects
        }

    def irsa_role_arn(self, role: str) -> str | None:
        """A role's ARN is known from config: a role lives in the account of the OIDC provider it trusts."""
        if self.storage.credentials != "irsa":
            return None
        partition, account = arn_parts(self.storage.oidc_provider_arn or "")
        return f"arn:{partition}:iam::{account}:role/{self.irsa_role_names[role]}"

    @property
    def cache_namespace(self) -> str:
        """Where Fluid's cache runtime runs (`data.source: volume`): its pods need the host network and
        privileged FUSE, which our namespace's restricted Pod Security level refuses."""
        return f"{self.namespace[:57].rstrip('-')}-cache"


def _walk(record: type) -> Iterable[tuple[dataclasses.Field, str]]:
    """The record's fields with what each is: "setting", "resources" or "group" (a nested record)."""
    for f in dataclasses.fields(record):
        if "setting" in f.metadata:
            yield f, "setting"
        elif "resources" in f.metadata:
            yield f, "resources"
        elif f.name not in ("project", "stack"):
            yield f, "group"


_GROUPS: dict[str, type] = {f.name: globals()[str(f.type)] for f, kind in _walk(StackConfig) if kind == "group"}


def _settings(record: type) -> list[Setting]:
    out: list[Setting] = []
    for f, kind in _walk(record):
        if kind == "setting":
            out.append(f.metadata["setting"])
        elif kind == "group":
            out += _settings(_GROUPS[f.name])
    return out


def _resource_settings() -> list[Setting]:
    by_workload = {}
    for group in _GROUPS.values():
        for f, kind in _walk(group):
            if kind == "resources":
                by_workload[f.metadata["resources"][0].name.split(".")[0]] = list(f.metadata["resources"])
    return [s for w in WORKLOADS for s in by_workload[w]]


# Every key, in the order docs/deploy.md lists them (workload resources last).
KEYS: list[Setting] = _settings(StackConfig) + _resource_settings()
KEY_NAMES: dict[str, Setting] = {k.name: k for k in KEYS}
GROUPS = sorted({k.split(".", 1)[0] for k in KEY_NAMES if "." in k})  # structured keys: storage, training, ...


def _build(record: type, r: Reader, **fixed: Any) -> Any:
    values: dict[str, Any] = dict(fixed)
    for f, kind in _walk(record):
        if kind == "setting":
            values[f.name] = r.value(f.metadata["setting"].name)
        elif kind == "resources":
            values[f.name] = ResourcesConfig(*(r.value(s.name) for s in f.metadata["resources"]))
        else:
            values[f.name] = _build(_GROUPS[f.name], r)
    return record(**values)


# ---- the rules between keys: each a small function of the checked values, run in this order ------------------


def external_storage_has_endpoint_and_keys(v: Mapping[str, Any]) -> None:
    """`external` needs its endpoint and keys; the other modes make their own and take none."""
    mode = v["storage.mode"]
    if mode == "external":
        if not v["storage.endpoint"]:
            raise ConfigError(
                "storage.endpoint",
                "is required when storage.mode is external",
                v["storage.endpoint"],
                f"pulumi config set {NS}:storage.endpoint https://s3.example.com",
            )
        for key in ("storage.accessKeyId", "storage.secretAccessKey"):
            if v[key] is None:
                fix = f"pulumi config set --secret {NS}:{key} <value>"
                raise ConfigError(key, "is required when storage.mode is external", None, fix)
        return
    for key in ("storage.endpoint", "storage.accessKeyId", "storage.secretAccessKey"):
        if v[key] is not None:
            raise ConfigError(
                key,
                f"is only used with storage.mode external, not {mode}",
                "set",
                f"pulumi config rm {NS}:{key}, or set {NS}:storage.mode external",
            )


def irsa_has_aws_and_an_oidc_provider(v: Mapping[str, Any]) -> None:
    credentials, oidc = v["storage.credentials"], v["storage.oidcProviderArn"]
    if credentials != "irsa":
        if oidc:
            raise ConfigError(
                "storage.oidcProviderArn",
                "is only used with storage.credentials irsa",
                oidc,
                f"pulumi config rm {NS}:storage.oidcProviderArn",
            )
        return
    if v["storage.mode"] != "aws":
        raise ConfigError(
            "storage.credentials",
            f"irsa needs storage.mode aws, not {v['storage.mode']}",
            credentials,
            f"pulumi config set {NS}:storage.credentials access-key",
        )
    if not oidc:
        raise ConfigError(
            "storage.oidcProviderArn",
            "is required when storage.credentials is irsa",
            oidc,
            "aws eks describe-cluster --name CLUSTER --query cluster.identity.oidc.issuer, then "
            f"pulumi config set {NS}:storage.oidcProviderArn "
            "arn:aws:iam::ACCOUNT:oidc-provider/oidc.eks.REGION.amazonaws.com/id/ID",
        )
    arn_parts(oidc)


def volume_has_fluid_and_keys(v: Mapping[str, Any]) -> None:
    """`data.source: volume` reads Fluid's cache, whose Alluxio runtime takes keys from a Secret."""
    if v["data.source"] != "volume":
        return
    if not v["fluid.enabled"]:
        raise ConfigError(
            "data.source",
            "volume needs the Fluid dataset",
            "volume",
            f"pulumi config set {NS}:fluid.enabled true, or set {NS}:data.source s3",
        )
    if v["storage.credentials"] == "irsa":
        raise ConfigError(
            "data.source",
            "volume cannot use irsa: Fluid's Alluxio runtime reads keys from a Secret",
            "volume",
            f"set {NS}:storage.credentials access-key, or {NS}:data.source s3",
        )


TRAIN_FLAGS = {
    "--epochs": "training.epochs",
    "--batch-size": "training.batchSize",
    "--learning-rate": "training.learningRate",
}


def training_passes_the_trainers_rules(v: Mapping[str, Any]) -> None:
    """`train`'s own argument rules (`common.rules`, the one definition both use), with the cross-check
    against the TFJob's processes (chief + workers), so no pod exits 2 on a value the stack let through."""
    processes = v["workers"] + 1
    problems = rules.train_problems(
        epochs=v["training.epochs"],
        batch_size=v["training.batchSize"],
        learning_rate=float(v["training.learningRate"]),
        processes=processes,
    )
    for p in problems:
        key = TRAIN_FLAGS[p.flag]
        if p.problem.startswith("is smaller than the number of processes"):
            raise ConfigError(
                key,
                f"is smaller than the number of training processes (workers + the chief = {processes}), "
                "which split the global batch between them",
                p.value,
                f"pulumi config set {NS}:{key} {p.suggestion}, or lower {NS}:workers",
            )
        value = v["training.learningRate"] if p.flag == "--learning-rate" else p.value  # as the user wrote it
        raise ConfigError(key, p.problem, value, f"pulumi config set {NS}:{key} {p.suggestion}")


def requests_within_limits(v: Mapping[str, Any]) -> None:
    for workload in WORKLOADS:
        for what in ("cpu", "memory"):
            key = f"{workload}.{what}"
            request, limit = v[key], v[f"{key}Limit"]
            if quantity_value(request) > quantity_value(limit):
                raise ConfigError(
                    key,
                    f"is above its limit {key}Limit ({limit})",
                    request,
                    f"pulumi config set {NS}:{key}Limit {request}, or lower {NS}:{key}",
                )


def argo_has_its_own_namespace(v: Mapping[str, Any]) -> None:
    if v["argo.namespace"] == v["namespace"]:
        raise ConfigError(
            "argo.namespace",
            "must differ from the pipeline namespace",
            v["argo.namespace"],
            f"pulumi config set {NS}:argo.namespace argo",
        )


def namespace_is_no_controllers(v: Mapping[str, Any]) -> None:
    """The pipeline namespace gets a default-deny NetworkPolicy and restricted Pod Security: in the training
    operator's namespace (or Fluid's, with Fluid on) that would cut the controller off from the API server and
    its webhook from the API server's calls. Argo's namespace is checked on `argo.namespace` itself."""
    taken = {OPERATOR_NAMESPACE: "the Kubeflow training operator's (fixed by its manifests)"}
    if v["fluid.enabled"]:
        taken[v["fluid.namespace"]] = "Fluid's (fluid.namespace)"
    namespace = v["namespace"]
    if namespace in taken:
        raise ConfigError(
            "namespace",
            f"must differ from {taken[namespace]} namespace: the pipeline's default-deny network policy would "
            "cut that controller off",
            namespace,
            f"pulumi config set {NS}:namespace kubeflow-e2e",
        )


CROSS_CHECKS: tuple[Callable[[Mapping[str, Any]], None], ...] = (
    external_storage_has_endpoint_and_keys,
    irsa_has_aws_and_an_oidc_provider,
    volume_has_fluid_and_keys,
    training_passes_the_trainers_rules,
    requests_within_limits,
    argo_has_its_own_namespace,
    namespace_is_no_controllers,
)


# ---- loading ----------------------------------------------------------------------------------------------


def load(stack: str, get: Getter, get_secret: Getter | None = None, present: Iterable[str] = ()) -> StackConfig:
    """Builds the config from `get(key) -> raw value or None` (Pulumi gives strings; tests may give typed
    values). `present` lists the keys set in the stack (`kubeflow-e2e:workers`, ...), to catch misspelt ones.
    Raises ConfigError: each key's own check in `KEYS` order, then `CROSS_CHECKS` in order."""
    for key in present:
        if key.startswith(NS + ":"):
            name = key[len(NS) + 1 :]
            if name not in KEY_NAMES:
                raise ConfigError(name, "is not a known key", get(name), did_you_mean(name))
    reader = Reader(stack, get, get_secret or get)
    values = {k.name: reader.value(k.name) for k in KEYS}
    for check in CROSS_CHECKS:
        check(values)
    return _build(StackConfig, reader, project=NS, stack=stack)


def nested_values(present: Iterable[str], get: Getter, get_object: Getter) -> dict[str, Any]:
    """The stack's config as dotted keys (`storage.mode`), read the way Pulumi structures it: a key such as
    `kubeflow-e2e:storage` holds an object (`pulumi config set --path kubeflow-e2e:storage.mode minio`).
    `present` lists the keys set in the stack; `get`/`get_object` read one. A flat dotted key (set without
    `--path`, or by the deploy workflow's `config-map`) is read too, unless the object sets the same field.
    Refuses a group that is not an object and unknown keys or fields, with a did-you-mean hint."""
    nested: dict[str, Any] = {}
    flat: dict[str, Any] = {}
    for full in sorted(present):
        if not full.startswith(NS + ":"):
            continue
        name = full[len(NS) + 1 :]
        if name in GROUPS:
            obj = get_object(name)
            if not isinstance(obj, Mapping):
                raise ConfigError(
                    name,
                    f"must be an object of settings ({', '.join(k for k in KEY_NAMES if k.startswith(name + '.'))})",
                    obj,
                    f"pulumi config rm {NS}:{name}, then pulumi config set --path {NS}:{name}.<field> <value>",
                )
            for field_name, value in obj.items():
                key = f"{name}.{field_name}"
                if key not in KEY_NAMES:
                    raise ConfigError(key, "is not a known key", value, did_you_mean(key))
                nested[key] = value
        elif name in KEY_NAMES:
            flat[name] = get(name)
        else:
            # A flat unknown key is removed without --path.
            raise ConfigError(name, "is not a known key", get(name), did_you_mean(name), literal="." in name)
    for key in sorted(flat.keys() & nested.keys()):
        group, field_name = key.split(".", 1)
        raise ConfigError(
            key,
            f"is set twice: as a flat key and as field {field_name} of {NS}:{group}",
            flat[key],
            f"pulumi config rm {NS}:{key} (removes the flat one; fields are set with --path)",
            literal=True,
        )
    return {**flat, **nested}


def did_you_mean(name: str) -> str:
    close = difflib.get_close_matches(name, list(KEY_NAMES), n=1)
    hint = f"did you mean {NS}:{close[0]}? " if close else ""
    return f"{hint}pulumi config rm {NS}:{name}; the keys are listed in the README's Deploy section"


def stack_values(config: Mapping[str, Any]) -> dict[str, Any]:
    """`{"kubeflow-e2e:workers": "2", "kubeflow-e2e:storage": '{"mode": "aws"}', ...}` (as the language host
    hands config over: objects as JSON) -> `{"workers": "2", "storage.mode": "aws", ...}`."""

    def get_object(name: str) -> Any:
        raw = config.get(f"{NS}:{name}")
        try:
            return json.loads(raw) if isinstance(raw, str) else raw
        except ValueError:
            return raw

    return nested_values(config, lambda name: config.get(f"{NS}:{name}"), get_object)


def from_pulumi() -> StackConfig:
    """Reads the running program's (or the mocks') config with `pulumi.Config("kubeflow-e2e")`: `get` for
    plain keys, `get_object` for the structured ones; the secret keys come back as Pulumi secrets."""
    import pulumi
    from pulumi.runtime import config as runtime_config

    c = pulumi.Config(NS)
    # The language host passes config in PULUMI_CONFIG; an Automation API inline program (`make e2e`) only in
    # the runtime's own map: take the keys from both.
    present = {*pulumi.runtime.get_config_env(), *runtime_config.CONFIG.get()}
    values = nested_values(present, c.get, c.get_object)

    def get_secret(key: str) -> Any:
        value = values.get(key)
        return None if value in (None, "") else pulumi.Output.secret(value)

    cfg = load(pulumi.get_stack(), values.get, get_secret)
    if not cfg.cluster.context:
        raise ConfigError(
            "cluster.context",
            "is required, so that `pulumi up` never deploys into whichever kubeconfig context is current",
            None,
            f"pulumi config set --path {NS}:cluster.context <context> (kubectl config get-contexts)",
        )
    return cfg


# ---- the documentation ------------------------------------------------------------------------------------

_RESOURCE_SUFFIXES = ("cpu", "memory", "cpuLimit", "memoryLimit")


def _shown(default: Any) -> str:
    if default is None:
        return "(none)"
    if isinstance(default, bool):
        return "`true`" if default else "`false`"
    return f"`{default}`"


def docs_table() -> str:
    """docs/deploy.md's two tables of keys (Markdown): every key with its default and meaning, then each
    workload's resource defaults."""
    resource_keys = {f"{w}.{s}" for w in WORKLOADS for s in _RESOURCE_SUFFIXES}
    lines = ["| key | default | meaning |", "|---|---|---|"]
    for k in KEYS:
        if k.name not in resource_keys:
            lines.append(f"| `{k.name}`{' (secret)' if k.secret else ''} | {_shown(k.default)} | {k.meaning} |")
    lines += ["", "| workload | " + " | ".join(f"`.{s}`" for s in _RESOURCE_SUFFIXES) + " |", "|---|---|---|---|---|"]
    for w in WORKLOADS:
        defaults = (_shown(KEY_NAMES[f"{w}.{s}"].default) for s in _RESOURCE_SUFFIXES)
        lines.append(f"| `{w}` | " + " | ".join(defaults) + " |")
    return "\n".join(lines) + "\n"
