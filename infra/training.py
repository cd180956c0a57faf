"""Training: the TFJob (`kubeflow.org/v1`), a chief plus N workers running `python -m trainer train`.

The env is the trainer's contract: S3_ENDPOINT/AWS_REGION, credentials only through `secretKeyRef` (or IRSA,
no keys at all), DATA_URL, RUN_URL and MODEL_URL; the operator adds TF_CONFIG. With a gate, `pulumi up` waits
for the job's Succeeded condition (`infra.gate`), and fails within seconds of a Failed condition."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from infra import component, fluid, gate
from infra.config import ResourcesConfig
from infra.podspec import TMP_VOLUME, S3Access, container, labels, pod_security, trainer_command

TF_PORT = 2222
# The private key that signs model versions: only the TFJobs' pods (the stack's and the retrains') mount it.
SIGNING_SECRET = "model-signing-key"
SIGNING_DIR = "/var/run/kubeflow-e2e/signing"
GPU_RESOURCE = "nvidia.com/gpu"  # the NVIDIA device plugin's extended resource
# The taint GPU node pools carry (EKS, GKE and AKS GPU groups, the NVIDIA GPU operator's docs): GPU pods tolerate it.
GPU_TOLERATION = {"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}


@dataclass(frozen=True, kw_only=True)
class TrainingArgs:
    """What the TFJob needs, built from the config by `infra.program.training_args`."""

    namespace: pulumi.Input[str]
    instance: str  # the stack's name (`app.kubernetes.io/instance`)
    job_name: str  # the TFJob's name, `mnist-<training.run>`; also the chief's identity for the run's lease
    image: str  # the trainer image
    pull_policy: str
    resources: ResourcesConfig  # of each pod, the chief's and every worker's
    workers: int  # TFJob workers besides the chief
    epochs: int
    batch_size: int  # global: split over the chief and the workers
    learning_rate: str  # as configured (`0.003`): the flag gets it as written
    backoff_limit: int  # TFJob `runPolicy.backoffLimit`: restarts summed over all the job's pods
    from_volume: bool  # read the dataset from the Fluid PVC mounted at `fluid.MOUNT_PATH`, not from DATA_URL on S3
    access: S3Access  # the pipeline role's S3 access
    data_url: pulumi.Input[str]  # s3://<bucket>/data/mnist
    run_url: pulumi.Input[str]  # s3://<bucket>/runs/<run id>
    model_url: pulumi.Input[str]  # s3://<bucket>/models/<model name>
    gate_timeout_seconds: int | None  # how long `pulumi up` waits for success; None: it does not wait
    kubeconfig: str | None  # for the gate: the cluster's kubeconfig file (None: the default)
    context: str | None  # for the gate: the kubeconfig context
    gpus: int = 0  # per process (`nvidia.com/gpu`); the same for the chief and every worker
    node_selector: tuple[tuple[str, str], ...] = ()  # the pods' nodeSelector, as (label, value) pairs
    tolerations: tuple[str, ...] = ()  # more tolerations of the pods, each as JSON
    signing_key: Any = None  # the PEM private key that signs versions (a Pulumi secret); None: unsigned
    ttl_seconds: int | None = None  # `runPolicy.ttlSecondsAfterFinished`; None: kept (the stack's job is Pulumi's)

    def placement(self) -> dict:
        """The pod spec's `nodeSelector` and `tolerations` ({} when neither is set and there are no GPUs)."""
        out: dict = {}
        if self.node_selector:
            out["nodeSelector"] = dict(self.node_selector)
        tolerations = [*([GPU_TOLERATION] if self.gpus else []), *(json.loads(t) for t in self.tolerations)]
        if tolerations:
            out["tolerations"] = tolerations
        return out


def train_flags(a: TrainingArgs) -> tuple[str, str, str]:
    """(epochs, batch size, learning rate) as the `train` flags take them."""
    return str(a.epochs), str(a.batch_size), a.learning_rate


def tfjob_spec(a: TrainingArgs, flags: tuple[str, str, str] | None = None) -> dict:
    """The TFJob spec in wire format (pulumi does not convert a CustomResource's spec); `flags`: the `train`
    flags' values (default: `train_flags(a)`; the retraining template passes its parameters)."""
    epochs, batch_size, learning_rate = flags or train_flags(a)
    signing = a.signing_key is not None
    data_url = f"file://{fluid.MOUNT_PATH}" if a.from_volume else a.data_url
    train = container(
        "tensorflow",  # the operator finds the TF container by this name
        a.image,
        a.pull_policy,
        a.resources,
        command=trainer_command(
            "train", "--epochs", epochs, "--batch-size", batch_size, "--learning-rate", learning_rate
        ),
        # TFJOB_NAME: the identity the chief holds the run's lease with; the job's restarts share it, another
        # job on the same RUN_URL is refused.
        env=a.access.pod_env(DATA_URL=data_url, RUN_URL=a.run_url, MODEL_URL=a.model_url, TFJOB_NAME=a.job_name,
                             **({"MODEL_SIGNING_KEY_FILE": f"{SIGNING_DIR}/key.pem"} if signing else {})),
        mounts=[
            *([{"name": "data", "mountPath": fluid.MOUNT_PATH, "readOnly": True}] if a.from_volume else []),
            *([{"name": "signing-key", "mountPath": SIGNING_DIR, "readOnly": True}] if signing else []),
        ] or None,
        ports=[{"name": "tfjob-port", "containerPort": TF_PORT}],
    )
    if a.gpus:
        # Extended resources are set as limits only (the request is made equal to it); every replica gets the
        # same count, which the trainer relies on to pick NCCL for its collectives on every process alike.
        limits = {**train["resources"]["limits"], GPU_RESOURCE: str(a.gpus)}
        train["resources"] = {**train["resources"], "limits": limits}
    volumes: list[dict] = [TMP_VOLUME]
    if a.from_volume:
        volumes.append({"name": "data", "persistentVolumeClaim": {"claimName": fluid.DATASET, "readOnly": True}})
    if signing:
        # Readable by the pod's fsGroup only (the trainer runs as that non-root user).
        volumes.append({"name": "signing-key", "secret": {"secretName": SIGNING_SECRET, "defaultMode": 0o440}})

    def replica(count: int) -> dict:
        return {
            "replicas": count,
            "restartPolicy": "OnFailure",
            "template": {
                "metadata": {"labels": labels(a.instance, "training", s3=True)},
                "spec": {
                    "serviceAccountName": "pipeline",
                    "automountServiceAccountToken": False,
                    "securityContext": pod_security(),
                    "containers": [train],
                    "volumes": volumes,
                    **a.placement(),
                },
            },
        }

    return {
        # "Running": when the job ends, pods still running (workers after the chief finished) go and free the
        # quota; finished pods stay for their logs.
        "runPolicy": {
            "backoffLimit": a.backoff_limit,
            "cleanPodPolicy": "Running",
            **({"ttlSecondsAfterFinished": a.ttl_seconds} if a.ttl_seconds is not None else {}),
        },
        "tfReplicaSpecs": {"Chief": replica(1), "Worker": replica(a.workers)},
    }


def disruption_budget_spec(instance: str) -> dict:
    """The PodDisruptionBudget of every TFJob's pods of the stack (its own and the retrains'): no voluntary
    eviction of a running one. training-operator v1.9.4 counts a pod that is being deleted while it runs as a
    failed replica (`updateJobReplicaStatuses` in `pkg/controller.v1/common/pod.go`) and fails the TFJob
    under every restart policy, so a `kubectl drain` or a cluster autoscaler's scale-down would end a training
    (measured on `make e2e`'s real node with a deleted pod). With this budget a drain waits until the job is
    done. `AlwaysAllow`: a pod that is not Ready (crash-looping) can still be evicted, so a broken job never
    blocks a node's maintenance."""
    selected = labels(instance, "training")
    return {
        "maxUnavailable": 0,
        "selector": {"matchLabels": {k: selected[k] for k in (
            "app.kubernetes.io/part-of", "app.kubernetes.io/instance", "app.kubernetes.io/component")}},
        "unhealthyPodEvictionPolicy": "AlwaysAllow",
    }


def signing_key_secret(a: TrainingArgs, parent: pulumi.Resource) -> k8s.core.v1.Secret | None:
    """The Secret with `training.signingKey` (None when versions are not signed)."""
    import base64

    if a.signing_key is None:
        return None
    pem = pulumi.Output.secret(a.signing_key).apply(lambda v: base64.b64encode(str(v).encode()).decode())
    return k8s.core.v1.Secret(
        "secret-model-signing-key",
        metadata={"name": SIGNING_SECRET, "namespace": a.namespace, "labels": labels(a.instance, "training")},
        type="Opaque",
        data={"key.pem": pem},
        opts=pulumi.ResourceOptions(parent=parent),
    )


class Training(pulumi.ComponentResource):
    def __init__(self, name: str, *, args: TrainingArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("kubeflow-e2e:infra:Training", name, None, opts)
        # Never awaited by the provider: with a gate, the gate waits (and fails fast).
        annotations = {"pulumi.com/skipAwait": "true"}
        self.name = args.job_name
        self.signing_key = signing_key_secret(args, self)
        self.disruption_budget = k8s.policy.v1.PodDisruptionBudget(
            "pdb-training",
            metadata={"name": "training", "namespace": args.namespace, "labels": labels(args.instance, "training")},
            spec=disruption_budget_spec(args.instance),
            opts=pulumi.ResourceOptions(parent=self, depends_on=component.depends_on(opts)),
        )
        self.tfjob = k8s.apiextensions.CustomResource(
            "tfjob",
            api_version="kubeflow.org/v1",
            kind="TFJob",
            metadata={
                "name": self.name,
                "namespace": args.namespace,
                "labels": labels(args.instance, "training"),
                "annotations": annotations,
            },
            spec=tfjob_spec(args),
            # A TFJob's replicas cannot be edited in place; a new spec is a new job (and a new run name is a
            # new RUN_URL).
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=[*component.depends_on(opts), self.disruption_budget,
                            *([self.signing_key] if self.signing_key else [])],
                replace_on_changes=["spec"],
                delete_before_replace=True,
            ),
        )
        self.gate = None
        if args.gate_timeout_seconds is not None:
            self.gate = gate.StepGate(
                "gate-tfjob",
                self.tfjob,
                "TFJob",
                args.namespace,
                self.name,
                args.gate_timeout_seconds,
                args.kubeconfig,
                args.context,
                opts=pulumi.ResourceOptions(parent=self),
            )
        self.register_outputs({"name": self.name})
