"""Retraining: an Argo WorkflowTemplate running prepare-data -> TFJob -> evaluate, so a retrain is one
`argo submit --from workflowtemplate/retrain-mnist` (optionally `-p epochs=10`). Each run is its own
TFJob and RUN_URL, named after the workflow; the serving sidecar picks up the new model version."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import yaml

from common import rules
from infra import component
from infra.config import StackConfig
from infra.dataprep import prepare_template, workflow_pod_spec
from infra.podspec import S3Access, container, labels, trainer_command
from infra.training import TrainingArgs, tfjob_spec, train_flags

NAME = "retrain-mnist"
RUN = "{{workflow.name}}"
PARAMS = ("epochs", "batch-size", "learning-rate")

# Argo evaluates a resource step's conditions as Kubernetes label selectors whose keys are gjson paths
# (argo-workflows v4.0.6 `workflow/executor/resource.go`: `labels.Parse`, then `gjson.GetBytes`): a key must be
# a label key (letters, digits, '-', '_', '.'; at most 63 characters), so no gjson query such as
# `conditions.#(type==Failed)` (argo-workflows#2288, open). Each failure requirement fails the step on its own,
# while every success requirement must hold. training-operator v1.9.4 (`pkg/util/status.go`) keeps at most one
# condition per type, of six types, and sets `status.completionTime` in the same update that adds the terminal
# Succeeded or Failed condition. So: fail when any of the six positions holds Failed (a crashing chief that
# restarts in place under `restartPolicy: OnFailure` ends there once `backoffLimit` is spent), and succeed when
# the job has completed (failure is checked first, so a completed job that is not Failed has Succeeded).
# The values a submitter may pick (`-p epochs=10`), besides the stack's own: each parameter is an Argo `enum`,
# so a value outside it is refused at submission, before it is substituted as text into the TFJob manifest
# (where a newline could add fields such as another `image:`).
CHOICES = {
    "epochs": (1, 2, 3, 5, 10, 15, 20, 25, 30, 40, 50, 60, 80, 100, 150, 200),
    "batch-size": tuple(2**i for i in range(3, 14)),  # 8 ... 8192
    "learning-rate": ("0.0001", "0.0003", "0.001", "0.003", "0.01", "0.03", "0.1"),
}
# How long a finished retrain (its pods where podGC keeps them, and its TFJob) stays for `argo logs`.
TTL = {"secondsAfterSuccess": 86400, "secondsAfterFailure": 7 * 86400}
CONDITION_TYPES = 6
TFJOB_FAILURE = ",".join(f"status.conditions.{i}.type == Failed" for i in range(CONDITION_TYPES))
TFJOB_SUCCESS = "status.completionTime"


class _PlainDumper(yaml.SafeDumper):
    def ignore_aliases(self, data: object) -> bool:  # the replicas share dicts; write them out in full
        return True


def tfjob_manifest(training: TrainingArgs, data_url: str, bucket: str, model_url: str) -> str:
    """The TFJob the `train` step creates, as the YAML string Argo's resource template takes. It reads
    DATA_URL from S3 even with `data.source: volume`: the prepare step has just rewritten the data there, and
    the Fluid cache holds what was preloaded at `pulumi up`."""
    job = {
        "apiVersion": "kubeflow.org/v1",
        "kind": "TFJob",
        "metadata": {"name": RUN, "labels": labels(training.instance, "training")},
        "spec": tfjob_spec(
            replace(
                training,
                data_url=data_url,
                run_url=f"s3://{bucket}/runs/{RUN}",
                model_url=model_url,
                from_volume=False,
                job_name=RUN,
                ttl_seconds=TTL["secondsAfterFailure"],
            ),
            flags=tuple(f"{{{{workflow.parameters.{p}}}}}" for p in PARAMS),
        ),
    }
    return yaml.dump(job, Dumper=_PlainDumper, sort_keys=False)


def parameters(training: TrainingArgs) -> list[dict]:
    """The template's arguments: each parameter's default is the stack's value and its `enum` the values
    `train` accepts with this job's processes (chief + workers); every value is digits and at most one dot."""
    defaults = dict(zip(PARAMS, train_flags(training), strict=True))
    processes = training.workers + 1
    out = []
    for p in PARAMS:
        values = {str(v) for v in CHOICES[p]} | {defaults[p]}
        kept = []
        for v in sorted(values, key=float):
            flags = {
                "epochs": training.epochs,
                "batch_size": training.batch_size,
                "learning_rate": float(training.learning_rate),
            }
            flags[p.replace("-", "_")] = float(v) if p == "learning-rate" else int(v)
            if not rules.train_problems(**flags, processes=processes):
                kept.append(v)
        out.append({"name": p, "value": defaults[p], "enum": kept, "description": f"`train --{p}`"})
    return out


def workflow_template_spec(
    cfg: StackConfig, training: TrainingArgs, access: S3Access, data_url: str, bucket: str, model_url: str
) -> dict:
    evaluate = container(
        "main",
        cfg.image.trainer,
        cfg.image.pull_policy,
        cfg.resources["dataprep"],
        command=trainer_command("evaluate"),
        env=access.pod_env(DATA_URL=data_url, RUN_URL=f"s3://{bucket}/runs/{RUN}", MODEL_URL=model_url),
    )
    return {
        "entrypoint": "retrain",
        **workflow_pod_spec(cfg),
        "arguments": {"parameters": parameters(training)},
        "activeDeadlineSeconds": cfg.dataprep.timeout_seconds + cfg.training.timeout_seconds,
        "podGC": {"strategy": "OnWorkflowSuccess"},
        # A submitted retrain is deleted a while after it ends, and its TFJob with it (owner reference).
        "ttlStrategy": TTL,
        "templates": [
            {
                "name": "retrain",
                "steps": [
                    [{"name": "prepare", "template": "prepare-data"}],
                    [{"name": "train", "template": "train"}],
                    [{"name": "evaluate", "template": "evaluate"}],
                ],
            },
            prepare_template(cfg, access, data_url),
            {
                "name": "train",
                "resource": {
                    "action": "create",
                    "setOwnerReference": True,  # deleting the workflow deletes its TFJob
                    "successCondition": TFJOB_SUCCESS,
                    "failureCondition": TFJOB_FAILURE,
                    "manifest": tfjob_manifest(training, data_url, bucket, model_url),
                },
            },
            {
                "name": "evaluate",
                "metadata": {"labels": labels(cfg.stack, "evaluate", s3=True)},
                "container": evaluate,
            },
        ],
    }


class Retraining(pulumi.ComponentResource):
    def __init__(
        self,
        name: str,
        cfg: StackConfig,
        namespace: pulumi.Input[str],
        access: S3Access,
        data_url: Any,
        model_url: Any,
        opts: pulumi.ResourceOptions | None = None,
        *,
        training: TrainingArgs,
    ):
        """`training`: the TFJob's settings, which each retraining run's TFJob takes but for its URLs and its
        `train` flags (the template's parameters, defaulting to the stack's)."""
        super().__init__("kubeflow-e2e:infra:Retraining", name, None, opts)
        spec = pulumi.Output.all(data_url, access.bucket, model_url).apply(
            lambda a: workflow_template_spec(cfg, training, access, a[0], a[1], a[2])
        )
        self.template = k8s.apiextensions.CustomResource(
            "workflowtemplate-retrain",
            api_version="argoproj.io/v1alpha1",
            kind="WorkflowTemplate",
            metadata={"name": NAME, "namespace": namespace, "labels": labels(cfg.stack, "retraining")},
            spec=spec,
            opts=pulumi.ResourceOptions(parent=self, depends_on=component.depends_on(opts)),
        )
        self.submit = f"argo submit -n {cfg.namespace} --from workflowtemplate/{NAME} --watch"
        self.register_outputs({"submit": self.submit})
