"""Retraining: an Argo WorkflowTemplate running prepare-data -> TFJob -> evaluate, so a retrain is one
`argo submit --from workflowtemplate/retrain-mnist` (optionally `-p epochs=10`). Each run is its own
TFJob and RUN_URL, named after the workflow; the serving sidecar picks up the new model version."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import yaml

from infra import component
from infra.config import StackConfig
from infra.dataprep import prepare_template, workflow_pod_spec
from infra.podspec import S3Access, container, labels, trainer_command
from infra.training import TrainingArgs, tfjob_spec, train_flags

NAME = "retrain-mnist"
CRON_NAME = "retrain-mnist-scheduled"
# Finished scheduled Workflows the controller keeps (for `argo cron get` and the logs), per outcome.
HISTORY_LIMIT = 3
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
            ),
            flags=tuple(f"{{{{workflow.parameters.{p}}}}}" for p in PARAMS),
        ),
    }
    return yaml.dump(job, Dumper=_PlainDumper, sort_keys=False)


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
    defaults = dict(zip(PARAMS, train_flags(training), strict=True))
    return {
        "entrypoint": "retrain",
        **workflow_pod_spec(cfg),
        "arguments": {"parameters": [{"name": p, "value": defaults[p]} for p in PARAMS]},
        "activeDeadlineSeconds": cfg.dataprep.timeout_seconds + cfg.training.timeout_seconds,
        "podGC": {"strategy": "OnWorkflowSuccess"},
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


def cron_workflow_spec(schedule: str, instance: str) -> dict:
    """A CronWorkflow that submits the retrain template with its default parameters on `schedule` (a cron
    spec). Forbid: a retrain still running when the next one is due makes the controller skip that one, so two
    never train at once. What gets served is still the serving sidecar's promotion gate's decision."""
    return {
        "schedules": [schedule],
        "concurrencyPolicy": "Forbid",
        "successfulJobsHistoryLimit": HISTORY_LIMIT,
        "failedJobsHistoryLimit": HISTORY_LIMIT,
        "workflowMetadata": {"labels": labels(instance, "retraining")},
        "workflowSpec": {"workflowTemplateRef": {"name": NAME}},
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
        self.schedule = None
        if cfg.retrain.schedule:
            self.schedule = k8s.apiextensions.CustomResource(
                "cronworkflow-retrain",
                api_version="argoproj.io/v1alpha1",
                kind="CronWorkflow",
                metadata={"name": CRON_NAME, "namespace": namespace, "labels": labels(cfg.stack, "retraining")},
                spec=cron_workflow_spec(cfg.retrain.schedule, cfg.stack),
                opts=pulumi.ResourceOptions(parent=self, depends_on=[self.template]),
            )
        self.submit = f"argo submit -n {cfg.namespace} --from workflowtemplate/{NAME} --watch"
        self.register_outputs({"submit": self.submit})
