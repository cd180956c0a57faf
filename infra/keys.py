"""Every config key of the stack, with its default and meaning: the loader, the table in docs/deploy.md and the tests
all read this list. Keys live in the `kubeflow-e2e` namespace (`pulumi config set kubeflow-e2e:workers 4`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

NS = "kubeflow-e2e"
MAX_WORKERS = 64
STORAGE_MODES = ("minio", "aws", "external")
CREDENTIALS = ("access-key", "irsa")
DATA_SOURCES = ("s3", "volume")
WORKLOADS = ("training", "dataprep", "serving", "sync", "tensorboard", "minio")


@dataclass(frozen=True)
class Key:
    name: str
    default: Any  # None: empty/required; a string containing <stack> is filled in per stack
    meaning: str
    secret: bool = False


_RES_DEFAULTS = {
    "training": ("1", "2Gi", "2", "2Gi"),
    "dataprep": ("250m", "512Mi", "1", "1Gi"),
    "serving": ("250m", "512Mi", "1", "1Gi"),
    "sync": ("50m", "128Mi", "250m", "256Mi"),
    "tensorboard": ("100m", "512Mi", "500m", "1Gi"),
    "minio": ("100m", "256Mi", "1", "1Gi"),
}

KEYS: list[Key] = [
    Key(
        "cluster.kubeconfig",
        None,
        "kubeconfig file of the cluster (unset: `$KUBECONFIG`, else `~/.kube/config`)",
    ),
    Key(
        "cluster.context",
        None,
        "kubeconfig context to deploy into; required, so `pulumi up` never uses whatever context is current",
    ),
    Key(
        "namespace",
        "kubeflow-e2e",
        "Kubernetes namespace for the whole pipeline; not `kubeflow` (the training operator's), Argo's or Fluid's",
    ),
    Key("workers", 1, f"TFJob workers besides the chief (1-{MAX_WORKERS})"),
    Key(
        "storage.mode",
        "minio",
        "`minio` (run MinIO in the namespace), `aws` (create an S3 bucket) or "
        "`external` (an existing S3-compatible endpoint)",
    ),
    Key("storage.bucket", "kubeflow-e2e-<stack>", "bucket name (S3 naming rules; global on AWS)"),
    Key(
        "storage.region",
        "us-east-1",
        "`aws`: an AWS region; `external`/`minio`: the endpoint's own region name (`fr-par`, `nyc3`, `auto`, ...)",
    ),
    Key(
        "storage.endpoint",
        None,
        "`external` only: full URL of the S3 endpoint, e.g. `https://minio.example:9000`",
    ),
    Key("storage.accessKeyId", None, "`external` only: access key (set with `--secret`)", secret=True),
    Key("storage.secretAccessKey", None, "`external` only: secret key (set with `--secret`)", secret=True),
    Key(
        "storage.credentials",
        "access-key",
        "`aws` only: `access-key` (an IAM user key per role, in Secrets) or `irsa` (an IAM role per "
        "ServiceAccount; the prod path on EKS)",
    ),
    Key("storage.oidcProviderArn", None, "`irsa` only: ARN of the cluster's IAM OIDC provider"),
    Key(
        "storage.protect",
        False,
        "`aws` only: protect and retain the bucket on delete (otherwise force_destroy)",
    ),
    Key("storage.versioning", False, "`aws` only: turn on bucket versioning"),
    Key("storage.runsExpireDays", 30, "`aws` only: lifecycle rule deleting objects under `runs/` after N days"),
    Key("minio.size", "10Gi", "`minio` only: size of MinIO's PersistentVolumeClaim"),
    Key(
        "image.trainer",
        "kubeflow-e2e/trainer:0.1.0",
        "trainer image (`python -m trainer`); pinned tag or digest",
    ),
    Key("image.sidecar", "kubeflow-e2e/sidecar:0.1.0", "sync-model image (no TensorFlow); pinned"),
    Key("image.tensorboard", "kubeflow-e2e/tensorboard:0.1.0", "TensorBoard image (no TensorFlow); pinned"),
    Key(
        "image.serving",
        "docker.io/tensorflow/serving:2.20.0",
        "TF Serving image; pinned (its TensorFlow minor version is checked against the trainer's export)",
    ),
    Key("image.minio", "quay.io/minio/minio:RELEASE.2025-09-07T16-13-09Z", "MinIO server image; pinned"),
    Key(
        "image.mc",
        "quay.io/minio/mc:RELEASE.2025-08-13T08-35-41Z",
        "MinIO client image (bucket setup); pinned",
    ),
    Key("image.pullPolicy", "IfNotPresent", "imagePullPolicy of our containers"),
    Key("data.prepareSource", "digits", "`prepare-data --source`: `digits`, a URL or a path in the image"),
    Key("data.source", "s3", "how training reads the dataset: `s3` (DATA_URL on S3) or `volume` (Fluid PVC)"),
    Key("dataprep.timeoutSeconds", 1800, "how long `pulumi up` waits for data prep"),
    Key(
        "training.run",
        "baseline",
        "run name: TFJob `mnist-<run>`, RUN_URL `s3://<bucket>/runs/<run>-<digest of the run's settings>`",
    ),
    Key("training.epochs", 40, "`train --epochs` (the trainer's tuned default)"),
    Key("training.batchSize", 64, "`train --batch-size`"),
    Key("training.learningRate", "0.003", "`train --learning-rate` (the trainer's tuned default)"),
    Key("training.backoffLimit", 3, "TFJob `runPolicy.backoffLimit`"),
    Key("training.timeoutSeconds", 3600, "how long `pulumi up` waits for the TFJob to succeed"),
    Key(
        "serving.waitForTraining",
        True,
        "serving rolls out only after the TFJob succeeded; `false`: `pulumi up` awaits neither the TFJob nor "
        "serving (Deployment and Service), whose pods become ready once a model exists",
    ),
    Key("serving.modelName", "mnist", "TF Serving model name (`predict --model`)"),
    Key("serving.replicas", 1, "TF Serving replicas"),
    Key("serving.pollSeconds", 30, "sidecar sync interval and TF Serving's file-system poll"),
    Key("serving.keepVersions", 2, "model versions the sidecar keeps on disk (`sync-model --keep`)"),
    Key(
        "access.fromNamespace",
        None,
        "namespace of your authenticating proxy or Ingress controller: its pods may reach TF Serving (8500, 8501) "
        "and TensorBoard (6006); unset, only `kubectl port-forward` reaches them",
    ),
    Key(
        "operator.install",
        True,
        "install the training operator; `false`: use the cluster's own (its TFJob CRD must exist)",
    ),
    Key("operator.version", "v1.9.4", "Kubeflow training-operator release (v1.x: serves TFJob)"),
    Key(
        "argo.install",
        True,
        "install Argo Workflows; `false`: use the cluster's own (its Workflow CRDs must exist)",
    ),
    Key("argo.chartVersion", "1.0.18", "`argo-workflows` Helm chart version (Argo Workflows v4.0.6)"),
    Key("argo.namespace", "argo", "namespace of the Argo controller and server"),
    Key("fluid.enabled", False, "install Fluid; with `data.source: volume` the dataset is preloaded onto nodes"),
    Key(
        "fluid.install",
        True,
        "with `fluid.enabled`: install Fluid; `false`: use the cluster's own (its Dataset CRDs must exist)",
    ),
    Key("fluid.chartVersion", "1.0.8", "`fluid` Helm chart version"),
    Key("fluid.namespace", "fluid-system", "namespace of the Fluid controllers"),
    Key("fluid.cacheSize", "2Gi", "memory cache per Alluxio worker"),
    Key("fluid.replicas", 1, "Alluxio cache workers (and DataLoad replicas)"),
]
for _w, (_c, _m, _cl, _ml) in _RES_DEFAULTS.items():
    KEYS += [
        Key(f"{_w}.cpu", _c, f"{_w}: CPU request"),
        Key(f"{_w}.memory", _m, f"{_w}: memory request"),
        Key(f"{_w}.cpuLimit", _cl, f"{_w}: CPU limit"),
        Key(f"{_w}.memoryLimit", _ml, f"{_w}: memory limit"),
    ]
KEY_NAMES = {k.name: k for k in KEYS}
