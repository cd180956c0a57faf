"""Retraining: an Argo WorkflowTemplate running check-parameters -> prepare-data -> TFJob -> evaluate, so a
retrain is one `argo submit --from workflowtemplate/retrain-mnist` (optionally `-p epochs=10`). Each run is
its own TFJob and RUN_URL, named after the workflow; the serving sidecar picks up the new model version."""

from __future__ import annotations

from dataclasses import dataclass, replace

import pulumi
import pulumi_kubernetes as k8s
import yaml

from common import rules
from infra import component
from infra.dataprep import DataPrepArgs, prepare_template, workflow_pod_spec
from infra.podspec import container, labels, trainer_command
from infra.training import TrainingArgs, tfjob_spec, train_flags

NAME = "retrain-mnist"
CRON_NAME = "retrain-mnist-scheduled"
# Finished scheduled Workflows the controller keeps (for `argo cron get` and the logs), per outcome.
HISTORY_LIMIT = 3
RUN = "{{workflow.name}}"
PARAMS = ("epochs", "batch-size", "learning-rate")
CHECK = "check-parameters"  # the first step's template: refuses a value outside its enum

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
# which `argo submit` checks before it creates the Workflow (a newline substituted as text into the TFJob
# manifest could add fields such as another `image:`). The controller does not check it for a Workflow created
# through the API, so the template's first step does (`check-parameters`) before any step uses a value.
CHOICES = {
    "epochs": (1, 2, 3, 5, 10, 15, 20, 25, 30, 40, 50, 60, 80, 100, 150, 200),
    "batch-size": tuple(2**i for i in range(3, 14)),  # 8 ... 8192
    "learning-rate": ("0.0001", "0.0003", "0.001", "0.003", "0.01", "0.03", "0.1"),
}
# How each parameter reaches the TFJob manifest: through an Argo expression that converts it to a number
# (``{{=asInt(workflow.parameters[`epochs`])}}``), never as text. A Workflow may set its own `entrypoint` and so
# start at the `train` step, past `check-parameters`; a value that is not a number then fails the expression
# (argo-workflows v4.0.7: `asInt` is expr's `int`, strconv.Atoi; `asFloat` its `float`; the result is written
# JSON-marshalled), so what reaches the manifest is digits, a dot or an exponent, or the expression's own text
# (see `tfjob_manifest`): never the value, so it cannot add a field.
# The names are expr's raw strings (backticks): with `setOwnerReference` the controller re-marshals the
# manifest as YAML (`executeResource`), and an expression it evaluates after that sees any quote in it escaped
# or doubled (seen on the real node), which only backticks survive.
NUMBER = {"epochs": "asInt", "batch-size": "asInt", "learning-rate": "asFloat"}
PARAM_LABEL = "kubeflow-e2e/"  # a retrain TFJob's labels: kubeflow-e2e/epochs=10 and so on
# How long a finished retrain (its pods where podGC keeps them, and its TFJob) stays for `argo logs`.
TTL = {"secondsAfterSuccess": 86400, "secondsAfterFailure": 7 * 86400}
CONDITION_TYPES = 6
TFJOB_FAILURE = ",".join(f"status.conditions.{i}.type == Failed" for i in range(CONDITION_TYPES))
TFJOB_SUCCESS = "status.completionTime"


@dataclass(frozen=True, kw_only=True)
class RetrainingArgs:
    """What the retraining WorkflowTemplate takes, built by `infra.program.retraining_args`: each run's prepare
    step is the stack's data prep, its TFJob the stack's but for its URLs and its `train` flags (the template's
    parameters, defaulting to the stack's)."""

    namespace: pulumi.Input[str]  # where the template lives (the Namespace component's output: it waits for it)
    # The same namespace as configured, for the printed `argo submit -n` command (known before the deploy).
    namespace_name: str
    prep: DataPrepArgs  # the prepare step; its image, pull policy and resources also run the evaluate step
    training: TrainingArgs
    timeout_seconds: int  # the workflow's activeDeadlineSeconds: data prep's and training's waits together
    schedule: str | None = None  # `retrain.schedule`: a cron spec a CronWorkflow submits the template on


class _PlainDumper(yaml.SafeDumper):
    def ignore_aliases(self, data: object) -> bool:  # the replicas share dicts; write them out in full
        return True


def tfjob_manifest(training: TrainingArgs, data_url: str, bucket: str, model_url: str) -> str:
    """The TFJob the `train` step creates, as the YAML string Argo's resource template takes. It reads
    DATA_URL from S3 even with `data.source: volume`: the prepare step has just rewritten the data there, and
    the Fluid cache holds what was preloaded at `pulumi up`."""
    flags = tuple(f"{{{{={NUMBER[p]}(workflow.parameters[`{p}`])}}}}" for p in PARAMS)
    # The same expressions label the job. One that fails on a value that is no number is left as its own text
    # (Argo substitutes with unresolved tags allowed), which no label value may hold: the API server refuses
    # the TFJob and the step fails at once, where the flag alone would reach `train` and crash its pods up to
    # the backoff limit. (A number outside the enum is `train`'s to refuse, on this route.)
    params = {f"{PARAM_LABEL}{p}": f for p, f in zip(PARAMS, flags, strict=True)}
    job = {
        "apiVersion": "kubeflow.org/v1",
        "kind": "TFJob",
        "metadata": {"name": RUN, "labels": {**labels(training.instance, "training"), **params}},
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
            flags=flags,
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


def workflow_template_spec(a: RetrainingArgs, data_url: str, bucket: str, model_url: str) -> dict:
    """The template's spec, once the URLs and the bucket are known (they may be Outputs in `a`)."""
    training, prep, access = a.training, a.prep, a.prep.access
    params = parameters(training)

    def step(subcommand: str, **kw) -> dict:  # a step in the trainer image, run like the prepare step
        return container("main", prep.image, prep.pull_policy, prep.resources,
                         command=trainer_command(subcommand), **kw)

    check = step(
        "check-parameters",
        # Argo substitutes each value into one argument, as it would into the manifest: the step sees it whole.
        args=[arg for p in params
              for arg in ("--param", p["name"], f"{{{{workflow.parameters.{p['name']}}}}}", ",".join(p["enum"]))],
    )
    evaluate = step(
        "evaluate",
        env=access.pod_env(DATA_URL=data_url, RUN_URL=f"s3://{bucket}/runs/{RUN}", MODEL_URL=model_url),
    )
    return {
        "entrypoint": "retrain",
        **workflow_pod_spec(prep.instance),
        "arguments": {"parameters": params},
        "activeDeadlineSeconds": a.timeout_seconds,
        "podGC": {"strategy": "OnWorkflowSuccess"},
        # A submitted retrain is deleted a while after it ends, and its TFJob with it (owner reference).
        "ttlStrategy": TTL,
        "templates": [
            {
                "name": "retrain",
                "steps": [
                    [{"name": "check", "template": CHECK}],
                    [{"name": "prepare", "template": "prepare-data"}],
                    [{"name": "train", "template": "train"}],
                    [{"name": "evaluate", "template": "evaluate"}],
                ],
            },
            {"name": CHECK, "metadata": {"labels": labels(prep.instance, CHECK)}, "container": check},
            prepare_template(replace(prep, data_url=data_url)),
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
                "metadata": {"labels": labels(prep.instance, "evaluate", s3=True)},
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
    def __init__(self, name: str, *, args: RetrainingArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("kubeflow-e2e:infra:Retraining", name, None, opts)
        spec = pulumi.Output.all(args.prep.data_url, args.prep.access.bucket, args.training.model_url).apply(
            lambda urls: workflow_template_spec(args, urls[0], urls[1], urls[2])
        )
        self.template = k8s.apiextensions.CustomResource(
            "workflowtemplate-retrain",
            api_version="argoproj.io/v1alpha1",
            kind="WorkflowTemplate",
            metadata={"name": NAME, "namespace": args.namespace, "labels": labels(args.prep.instance, "retraining")},
            spec=spec,
            opts=pulumi.ResourceOptions(parent=self, depends_on=component.depends_on(opts)),
        )
        self.schedule = None
        if args.schedule:
            self.schedule = k8s.apiextensions.CustomResource(
                "cronworkflow-retrain",
                api_version="argoproj.io/v1alpha1",
                kind="CronWorkflow",
                metadata={"name": CRON_NAME, "namespace": args.namespace,
                          "labels": labels(args.prep.instance, "retraining")},
                spec=cron_workflow_spec(args.schedule, args.prep.instance),
                opts=pulumi.ResourceOptions(parent=self, depends_on=[self.template]),
            )
        self.submit = f"argo submit -n {args.namespace_name} --from workflowtemplate/{NAME} --watch"
        self.register_outputs({"submit": self.submit})
