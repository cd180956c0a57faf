"""Training: the TFJob (`kubeflow.org/v1`), a chief plus N workers running `python -m trainer train`.

The env is the trainer's contract: S3_ENDPOINT/AWS_REGION, credentials only through `secretKeyRef` (or IRSA,
no keys at all), DATA_URL, RUN_URL and MODEL_URL; the operator adds TF_CONFIG. With
`serving.waitForTraining`, `pulumi up` waits for the job's Succeeded condition through its gate
(`infra.gate`), which fails `pulumi up` within seconds of a Failed condition."""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from infra import component, fluid, gate
from infra.config import StackConfig
from infra.podspec import TMP_VOLUME, S3Access, container, labels, pod_security, trainer_command

TF_PORT = 2222


def data_url_for_training(cfg: StackConfig, s3_data_url: Any) -> Any:
    """`data.source: volume` reads the Fluid-cached copy through the dataset's PVC."""
    return f"file://{fluid.MOUNT_PATH}" if cfg.data.source == "volume" else s3_data_url


def train_args(cfg: StackConfig) -> tuple[str, str, str]:
    """(epochs, batch size, learning rate) as the `train` flags take them."""
    return str(cfg.training.epochs), str(cfg.training.batch_size), cfg.training.learning_rate


def tfjob_spec(
    cfg: StackConfig,
    access: S3Access,
    data_url: Any,
    run_url: Any,
    model_url: Any,
    args: tuple[str, str, str] | None = None,
    volume: bool | None = None,
) -> dict:
    """The TFJob spec in wire format (pulumi does not convert a CustomResource's spec). `volume`: mount the
    Fluid dataset and read DATA_URL from it (default: `data.source: volume`)."""
    epochs, batch_size, learning_rate = args or train_args(cfg)
    volume = cfg.data.source == "volume" if volume is None else volume
    if volume:
        data_url = f"file://{fluid.MOUNT_PATH}"
    train = container(
        "tensorflow",  # the operator finds the TF container by this name
        cfg.image.trainer,
        cfg,
        cfg.resources["training"],
        command=trainer_command(
            "train", "--epochs", epochs, "--batch-size", batch_size, "--learning-rate", learning_rate
        ),
        env=access.pod_env(DATA_URL=data_url, RUN_URL=run_url, MODEL_URL=model_url),
        mounts=[{"name": "data", "mountPath": fluid.MOUNT_PATH, "readOnly": True}] if volume else None,
        ports=[{"name": "tfjob-port", "containerPort": TF_PORT}],
    )
    volumes: list[dict] = [TMP_VOLUME]
    if volume:
        volumes.append({"name": "data", "persistentVolumeClaim": {"claimName": fluid.DATASET, "readOnly": True}})

    def replica(count: int) -> dict:
        return {
            "replicas": count,
            "restartPolicy": "OnFailure",
            "template": {
                "metadata": {"labels": labels(cfg, "training", s3=True)},
                "spec": {
                    "serviceAccountName": "pipeline",
                    "automountServiceAccountToken": False,
                    "securityContext": pod_security(),
                    "containers": [train],
                    "volumes": volumes,
                },
            },
        }

    return {
        "runPolicy": {"backoffLimit": cfg.training.backoff_limit, "cleanPodPolicy": "None"},
        "tfReplicaSpecs": {"Chief": replica(1), "Worker": replica(cfg.workers)},
    }


class Training(pulumi.ComponentResource):
    def __init__(
        self,
        name: str,
        cfg: StackConfig,
        namespace: pulumi.Input[str],
        access: S3Access,
        data_url: Any,
        run_url: Any,
        model_url: Any,
        opts: pulumi.ResourceOptions | None = None,
    ):
        super().__init__("kubeflow-e2e:infra:Training", name, None, opts)
        # Never awaited by the provider: with serving.waitForTraining, its gate waits (and fails fast).
        annotations = {"pulumi.com/skipAwait": "true"}
        self.name = cfg.tfjob_name
        self.tfjob = k8s.apiextensions.CustomResource(
            "tfjob",
            api_version="kubeflow.org/v1",
            kind="TFJob",
            metadata={
                "name": self.name,
                "namespace": namespace,
                "labels": labels(cfg, "training"),
                "annotations": annotations,
            },
            spec=tfjob_spec(cfg, access, data_url, run_url, model_url),
            # A TFJob's replicas cannot be edited in place; a new spec is a new job (and a new run name is a
            # new RUN_URL).
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=component.depends_on(opts),
                replace_on_changes=["spec"],
                delete_before_replace=True,
            ),
        )
        self.gate = None
        if cfg.serving.wait_for_training:
            self.gate = gate.StepGate(
                "gate-tfjob",
                self.tfjob,
                "TFJob",
                namespace,
                self.name,
                cfg.training.timeout_seconds,
                cfg.cluster.kubeconfig,
                cfg.cluster.context,
                opts=pulumi.ResourceOptions(parent=self),
            )
        self.register_outputs({"name": self.name})
