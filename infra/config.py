"""The stack's configuration schema: every key is one field of a grouped, frozen record, declared once with its
name, type (the annotation), default, meaning and check (`TrainingConfig.epochs` is
`setting("training.epochs", 40, meaning, whole(1, 10_000))`). `infra.configload` reads and checks a stack
against it and builds the `StackConfig`; docs/deploy.md's table of keys is `docs_table()`. Adding a key is
adding a field here and reading it where it is used."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from infra.configcheck import (
    Check,
    Reader,
    boolean,
    bucket_name,
    chart_version,
    choice,
    cpu,
    dns_label,
    endpoint_url,
    image_ref,
    memory,
    nonempty,
    number,
    operator_release,
    optional,
    optional_text,
    region,
    secret,
    whole,
)
from infra.configsched import cron, gpu_count, gpu_image, node_labels
from infra.configsched import tolerations as toleration_list
from infra.servingkeys import auto_or_bool, ed25519_public_key, fraction

MAX_WORKERS = 64
STORAGE_MODES = ("minio", "aws", "external")
CREDENTIALS = ("access-key", "irsa")
DATA_SOURCES = ("s3", "volume")
PULL_POLICIES = ("IfNotPresent", "Always", "Never")
WORKLOADS = ("training", "dataprep", "serving", "sync", "tensorboard", "minio")


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
        True,
        "`aws` only: protect and retain the bucket on delete; `false`: `pulumi destroy` empties and deletes it "
        "(force_destroy), for a throwaway bucket (the dev stack file sets it)",
        boolean,
    )
    versioning: bool = setting("storage.versioning", False, "`aws` only: turn on bucket versioning", boolean)
    runs_expire_days: int = setting(
        "storage.runsExpireDays",
        30,
        "`aws` only: lifecycle rule deleting objects under `runs/` after N days",
        whole(1, 3650),
    )
    checksums: str = setting(
        "storage.checksums",
        "when_supported",
        "`when_required`: botocore sends and checks CRC32 checksums only where S3 requires them (for S3-compatible "
        "servers that refuse botocore's checksum headers); sets AWS_REQUEST_CHECKSUM_CALCULATION and "
        "AWS_RESPONSE_CHECKSUM_VALIDATION in every pod whose boto3 talks to S3",
        choice(("when_supported", "when_required")),
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
    trainer_gpu: str = setting(
        "image.trainerGpu",
        "kubeflow-e2e/trainer-gpu:0.1.0",
        "trainer image with TensorFlow's CUDA libraries (`docker/trainer-gpu.Dockerfile`), run by the TFJob "
        "when `training.gpus` > 0; pinned",
        gpu_image("image.trainer", "training.gpus"),
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
    gpus: int = setting(
        "training.gpus",
        0,
        "GPUs per training process (the chief and each worker): their `nvidia.com/gpu` limit, a toleration of "
        "the `nvidia.com/gpu` NoSchedule taint and `image.trainerGpu`; a whole number",
        gpu_count,
    )
    node_selector: tuple[tuple[str, str], ...] = setting(
        "training.nodeSelector",
        None,
        "`nodeSelector` of the TFJob's pods, an object of node labels (e.g. a GPU node pool's label)",
        node_labels,
    )
    tolerations: tuple[str, ...] = setting(
        "training.tolerations",
        None,
        "more `tolerations` of the TFJob's pods, a list of Kubernetes toleration objects",
        toleration_list,
    )
    backoff_limit: int = setting(
        "training.backoffLimit",
        3,
        "restarts of the whole job before it fails: the TFJob's `runPolicy.backoffLimit` is this times the "
        "processes (chief + workers), as the operator sums restarts over all pods and a lost peer restarts every one",
        whole(0, 100),
    )
    timeout_seconds: int = setting(
        "training.timeoutSeconds",
        3600,
        "how long `pulumi up` waits for the TFJob to succeed",
        whole(60, 7 * 24 * 3600),
    )
    signing_key: Any = setting(
        "training.signingKey",
        None,
        "Ed25519 private key (PKCS#8 PEM, `python -m trainer signing-key`) that signs each model version; in a "
        "Secret only the TFJob's pods mount (`pulumi config set --secret --path kubeflow-e2e:training.signingKey "
        "< key.pem`); set with `serving.publicKey`",
        secret,
        secret=True,
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
    min_accuracy: str = setting(
        "serving.minAccuracy",
        "0.5",
        "promotion gate: the sidecar serves only versions whose recorded test accuracy is at least this "
        "(`sync-model --min-accuracy`); dev's floor only stops a broken model (chance is 0.1), short trainings pass",
        fraction,
    )
    max_regression: str = setting(
        "serving.maxRegression",
        "0.02",
        "promotion gate: and at most this much below the version being served (`sync-model --max-regression`)",
        fraction,
    )
    public_key: str | None = setting(
        "serving.publicKey",
        None,
        "the signing key's public half (base64, printed by `python -m trainer signing-key`): serving refuses "
        "versions it did not sign (`sync-model --public-key`); set with `training.signingKey`",
        optional(ed25519_public_key),
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
class MetricsConfig:
    service_monitor: str = setting(
        "metrics.serviceMonitor",
        "auto",
        "declare a Prometheus Operator ServiceMonitor for serving: `true`, `false`, or `auto` (when `pulumi "
        "preview` can read the cluster and it has the `servicemonitors.monitoring.coreos.com` CRD)",
        auto_or_bool,
    )
    from_namespace: str | None = setting(
        "metrics.fromNamespace",
        None,
        "namespace of your Prometheus: its pods may scrape the serving pods (8501, 9102); unset, no scrape "
        "gets through the NetworkPolicies",
        optional(dns_label()),
    )


@dataclass(frozen=True)
class RetrainConfig:
    schedule: str | None = setting(
        "retrain.schedule",
        None,
        "cron schedule (`0 3 * * *`, `@weekly`; the Argo controller's time zone) of an Argo CronWorkflow that "
        "submits the retrain template; unset: no scheduled retraining",
        cron,
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
        "argo.chartVersion",
        "1.0.18",
        "`argo-workflows` Helm chart version (its images run Argo Workflows v4.0.7)",
        chart_version,
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
    metrics: MetricsConfig
    retrain: RetrainConfig
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
        spec = {
            "image": self.trainer_image,
            "workers": self.workers,
            "epochs": t.epochs,
            "batchSize": t.batch_size,
            "learningRate": float(t.learning_rate),
            "prepareSource": self.data.prepare_source,
        }
        if t.gpus:  # only then: a CPU stack's digest (and so its RUN_URL) stays what it was
            spec["gpus"] = t.gpus
        return spec

    @property
    def trainer_image(self) -> str:
        """The image the TFJob runs: the GPU build when its processes get GPUs."""
        return self.image.trainer_gpu if self.training.gpus else self.image.trainer

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
    def cache_namespace(self) -> str:
        """Where Fluid's cache runtime runs (`data.source: volume`): its FUSE pods are privileged, which our
        namespace's restricted Pod Security level refuses."""
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


def build(record: type, r: Reader, **fixed: Any) -> Any:
    values: dict[str, Any] = dict(fixed)
    for f, kind in _walk(record):
        if kind == "setting":
            values[f.name] = r.value(f.metadata["setting"].name)
        elif kind == "resources":
            values[f.name] = ResourcesConfig(*(r.value(s.name) for s in f.metadata["resources"]))
        else:
            values[f.name] = build(_GROUPS[f.name], r)
    return record(**values)


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
