"""Data prep: a one-shot Argo Workflow running the WorkflowTemplate `prepare-data` (Argo runs only Workflows
that reference a template: `infra.argo.RESTRICTION`). `pulumi up` waits for it to succeed through
its gate (`infra.gate`, which fails at once when the Workflow fails), so the TFJob that depends on the gate
starts only once DATA_URL holds the dataset."""

from __future__ import annotations

import hashlib
import json

import pulumi
import pulumi_kubernetes as k8s

from common import rules
from infra import component, gate
from infra.config import StackConfig
from infra.podspec import EXECUTOR_SA, TMP_VOLUME, S3Access, container, labels, pod_security, trainer_command

NAME = "prepare-data"


def prepare_template(cfg: StackConfig, access: S3Access, data_url: pulumi.Input[str]) -> dict:
    """The Argo template (shared with the retraining WorkflowTemplate)."""
    c = container(
        "main",
        cfg.image.trainer,
        cfg.image.pull_policy,
        cfg.resources["dataprep"],
        # One shard per process or a multiple of it: every training process reads whole files, as many as
        # the others (trainer.data.share).
        command=trainer_command(
            "prepare-data", "--source", cfg.data.prepare_source, "--shards", str(rules.shards_for(cfg.workers + 1))
        ),
        env=access.pod_env(DATA_URL=data_url),
    )
    return {
        "name": NAME,
        "metadata": {"labels": labels(cfg.stack, "dataprep", s3=True)},
        "retryStrategy": {"limit": 2, "retryPolicy": "OnError"},
        "container": c,
    }


def workflow_pod_spec(cfg: StackConfig) -> dict:
    """Pod-level settings every workflow of the stack shares. The pods run as `pipeline` (its S3 identity)
    with no API token; only Argo's own containers get the executor account's token."""
    return {
        "serviceAccountName": "pipeline",
        "automountServiceAccountToken": False,
        "executor": {"serviceAccountName": EXECUTOR_SA},
        "securityContext": pod_security(),
        "podMetadata": {"labels": labels(cfg.stack, "workflow", s3=True)},
        "volumes": [TMP_VOLUME],
    }


class DataPrep(pulumi.ComponentResource):
    def __init__(
        self,
        name: str,
        cfg: StackConfig,
        namespace: pulumi.Input[str],
        access: S3Access,
        data_url: pulumi.Input[str],
        opts: pulumi.ResourceOptions | None = None,
    ):
        super().__init__("kubeflow-e2e:infra:DataPrep", name, None, opts)
        spec = {
            "entrypoint": NAME,
            **workflow_pod_spec(cfg),
            "activeDeadlineSeconds": cfg.dataprep.timeout_seconds,
            "podGC": {"strategy": "OnWorkflowSuccess"},
            "templates": [prepare_template(cfg, access, data_url)],
        }
        self.template = k8s.apiextensions.CustomResource(
            "workflowtemplate-prepare-data",
            api_version="argoproj.io/v1alpha1",
            kind="WorkflowTemplate",
            metadata={"name": NAME, "namespace": namespace, "labels": labels(cfg.stack, "dataprep")},
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
                "namespace": namespace,
                "labels": labels(cfg.stack, "dataprep"),
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
            namespace,
            NAME,
            cfg.dataprep.timeout_seconds,
            cfg.cluster.kubeconfig,
            cfg.cluster.context,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.register_outputs({"workflow": NAME})
