"""Data prep: a one-shot Argo Workflow running the WorkflowTemplate `prepare-data` (Argo runs only Workflows
that reference a template: `infra.argo.RESTRICTION`). `pulumi up` waits for it to succeed through
its gate (`infra.gate`, which fails at once when the Workflow fails), so the TFJob that depends on the gate
starts only once DATA_URL holds the dataset."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from common import rules
from infra import component, gate
from infra.config import ResourcesConfig
from infra.podspec import EXECUTOR_SA, TMP_VOLUME, S3Access, container, labels, pod_security, trainer_command

NAME = "prepare-data"


@dataclass(frozen=True, kw_only=True)
class DataPrepArgs:
    """What data prep takes, built from the config by `infra.program.dataprep_args` (the retraining template's
    prepare step takes the same)."""

    namespace: pulumi.Input[str]
    instance: str  # the stack's name (`app.kubernetes.io/instance`)
    image: str  # the trainer image (the CPU build: data prep needs no GPU)
    pull_policy: str
    resources: ResourcesConfig  # of the prepare pod (the retraining template's evaluate pod too)
    prepare_source: str  # `prepare-data --source`: `digits`, a URL or a path in the image
    workers: int  # the TFJob's workers besides the chief: the shard count suits chief + workers
    access: S3Access  # the pipeline role's S3 access
    data_url: pulumi.Input[str]  # s3://<bucket>/data/mnist, where the shards go
    timeout_seconds: int  # how long the Workflow may run, and `pulumi up` waits for it
    kubeconfig: str | None  # for the gate: the cluster's kubeconfig file (None: the default)
    context: str | None  # for the gate: the kubeconfig context


def prepare_template(a: DataPrepArgs) -> dict:
    """The Argo template (shared with the retraining WorkflowTemplate)."""
    c = container(
        "main",
        a.image,
        a.pull_policy,
        a.resources,
        # One shard per process or a multiple of it: every training process reads whole files, as many as
        # the others (trainer.data.share).
        command=trainer_command(
            "prepare-data", "--source", a.prepare_source, "--shards", str(rules.shards_for(a.workers + 1))
        ),
        env=a.access.pod_env(DATA_URL=a.data_url),
    )
    return {
        "name": NAME,
        "metadata": {"labels": labels(a.instance, "dataprep", s3=True)},
        "retryStrategy": {"limit": 2, "retryPolicy": "OnError"},
        "container": c,
    }


def workflow_pod_spec(instance: str) -> dict:
    """Pod-level settings every workflow of the stack shares. The pods run as `pipeline` (its S3 identity)
    with no API token; only Argo's own containers get the executor account's token."""
    return {
        "serviceAccountName": "pipeline",
        "automountServiceAccountToken": False,
        "executor": {"serviceAccountName": EXECUTOR_SA},
        "securityContext": pod_security(),
        "podMetadata": {"labels": labels(instance, "workflow", s3=True)},
        "volumes": [TMP_VOLUME],
    }


class DataPrep(pulumi.ComponentResource):
    def __init__(self, name: str, *, args: DataPrepArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("kubeflow-e2e:infra:DataPrep", name, None, opts)
        spec = {
            "entrypoint": NAME,
            **workflow_pod_spec(args.instance),
            "activeDeadlineSeconds": args.timeout_seconds,
            "podGC": {"strategy": "OnWorkflowSuccess"},
            "templates": [prepare_template(args)],
        }
        self.template = k8s.apiextensions.CustomResource(
            "workflowtemplate-prepare-data",
            api_version="argoproj.io/v1alpha1",
            kind="WorkflowTemplate",
            metadata={"name": NAME, "namespace": args.namespace, "labels": labels(args.instance, "dataprep")},
            spec=spec,
            opts=pulumi.ResourceOptions(parent=self, depends_on=component.depends_on(opts)),
        )
        # The template's digest in the Workflow's spec: a changed template is a changed spec, so a new Workflow.
        digest = pulumi.Output.from_input(spec).apply(
            lambda s: hashlib.sha256(json.dumps(s, sort_keys=True).encode()).hexdigest()[:16]
        )
        self.workflow = k8s.apiextensions.CustomResource(
            "workflow-prepare-data",
            api_version="argoproj.io/v1alpha1",
            kind="Workflow",
            metadata={
                "name": NAME,
                "namespace": args.namespace,
                "labels": labels(args.instance, "dataprep"),
                # Awaited by its gate, which also sees failure (infra/gate.py).
                "annotations": {"pulumi.com/skipAwait": "true"},
            },
            spec={
                "workflowTemplateRef": {"name": NAME},
                "workflowMetadata": {"annotations": {"kubeflow-e2e/template-digest": digest}},
            },
            # A finished Workflow never runs again: a changed spec means a new Workflow.
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=[self.template, *component.depends_on(opts)],
                replace_on_changes=["spec"],
                delete_before_replace=True,
            ),
        )
        self.gate = gate.StepGate(
            "gate-prepare-data",
            self.workflow,
            "Workflow",
            args.namespace,
            NAME,
            args.timeout_seconds,
            args.kubeconfig,
            args.context,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.register_outputs({"workflow": NAME})
