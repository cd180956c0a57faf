"""The whole stack: config first (validated before any resource), then the components in dependency order,
then the outputs. `__main__.py` calls `main()`; so does `python -m render` under mocks."""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s

from infra import configload, fluid
from infra.argo import SERVER_PORT, Argo
from infra.config import StackConfig
from infra.configcheck import ConfigError
from infra.dataprep import DataPrep
from infra.fluid import Fluid
from infra.namespace import SUBMITTER_ROLE, Namespace
from infra.operator import TrainingOperator
from infra.podspec import S3Access
from infra.retraining import Retraining
from infra.serving import REST_PORT, Serving, ServingArgs
from infra.storage import Storage
from infra.tensorboard import PORT as TENSORBOARD_PORT
from infra.tensorboard import TensorBoard, TensorBoardArgs
from infra.training import Training, TrainingArgs


def kubernetes_provider(cfg: StackConfig) -> k8s.Provider:
    """The one Kubernetes provider every Kubernetes resource of the stack uses: the cluster named by
    `cluster.context` (in `cluster.kubeconfig`, or `$KUBECONFIG` / `~/.kube/config`), never whichever
    context happens to be current."""
    args: dict = {"context": cfg.cluster.context}
    if cfg.cluster.kubeconfig:
        args["kubeconfig"] = cfg.cluster.kubeconfig
    return k8s.Provider("kubernetes", **args)


def data_url_for_training(cfg: StackConfig, s3_data_url: pulumi.Input[str]) -> pulumi.Input[str]:
    """`data.source: volume` reads the Fluid-cached copy through the dataset's PVC."""
    return f"file://{fluid.MOUNT_PATH}" if cfg.data.source == "volume" else s3_data_url


def training_args(
    cfg: StackConfig,
    *,
    namespace: pulumi.Input[str],
    access: S3Access,
    data_url: pulumi.Input[str],
    run_url: pulumi.Input[str],
    model_url: pulumi.Input[str],
) -> TrainingArgs:
    """What the TFJob takes from the config. `pulumi up` waits for it only where serving waits for a model."""
    t = cfg.training
    return TrainingArgs(
        namespace=namespace,
        instance=cfg.stack,
        job_name=cfg.tfjob_name,
        image=cfg.trainer_image,
        pull_policy=cfg.image.pull_policy,
        resources=t.resources,
        workers=cfg.workers,
        epochs=t.epochs,
        batch_size=t.batch_size,
        learning_rate=t.learning_rate,
        # The operator sums container restarts over all pods (training-operator v1.9.4 `pkg/core/job.go`), and
        # one lost peer makes every survivor exit and restart: so a limit per incident, times the processes.
        backoff_limit=t.backoff_limit * (cfg.workers + 1),
        from_volume=cfg.data.source == "volume",
        access=access,
        data_url=data_url,
        run_url=run_url,
        model_url=model_url,
        gate_timeout_seconds=t.timeout_seconds if cfg.serving.wait_for_training else None,
        kubeconfig=cfg.cluster.kubeconfig,
        context=cfg.cluster.context,
        gpus=t.gpus,
        node_selector=t.node_selector,
        tolerations=t.tolerations,
        signing_key=t.signing_key,
    )


def tensorboard_args(
    cfg: StackConfig, *, namespace: pulumi.Input[str], access: S3Access, logdir: pulumi.Input[str]
) -> TensorBoardArgs:
    return TensorBoardArgs(
        namespace=namespace,
        instance=cfg.stack,
        image=cfg.image.tensorboard,
        pull_policy=cfg.image.pull_policy,
        resources=cfg.tensorboard.resources,
        access=access,
        logdir=logdir,
    )


def serving_args(
    cfg: StackConfig, *, namespace: pulumi.Input[str], access: S3Access, model_url: pulumi.Input[str]
) -> ServingArgs:
    """What TF Serving takes from the config: `pulumi up` awaits it only where training has made a model."""
    s = cfg.serving
    return ServingArgs(
        namespace=namespace,
        instance=cfg.stack,
        server_image=cfg.image.serving,
        sidecar_image=cfg.image.sidecar,
        pull_policy=cfg.image.pull_policy,
        server_resources=s.resources,
        sidecar_resources=cfg.sync.resources,
        model_name=s.model_name,
        replicas=s.replicas,
        poll_seconds=s.poll_seconds,
        keep_versions=s.keep_versions,
        min_accuracy=s.min_accuracy,
        max_regression=s.max_regression,
        public_key=s.public_key,
        irsa=cfg.storage.credentials == "irsa",
        awaited=s.wait_for_training,
        access=access,
        model_url=model_url,
    )


def build(cfg: StackConfig) -> dict[str, pulumi.Input]:
    """Declares every resource; returns the stack outputs."""
    on_cluster = pulumi.ResourceOptions(providers={"kubernetes": kubernetes_provider(cfg)})

    def opts(**more) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions.merge(on_cluster, pulumi.ResourceOptions(**more))

    ns = Namespace("namespace", cfg, opts=opts())
    storage = Storage("storage", cfg, ns, opts=opts())
    access = storage.access
    data_url = access.url(cfg.data_prefix)
    run_url = access.url(cfg.run_prefix)
    model_url = access.url(cfg.model_prefix)
    # The current run's logs only: TensorBoard loads every run under its logdir before it lists the newest,
    # which grows with the runs kept (docs/performance.md, "TensorBoard over many runs").
    logdir = access.url(f"{cfg.run_prefix}/logs/")

    operator = TrainingOperator("training-operator", cfg, opts=opts())
    argo = Argo("argo", cfg, access, ns.name, opts=opts(depends_on=[ns.namespace]))

    # data -> train -> serve: each step depends on the previous one's awaited resource.
    prep = DataPrep(
        "dataprep",
        cfg,
        ns.name,
        access,
        data_url,
        opts=opts(depends_on=[*argo.ready, *access.depends_on, *ns.ready]),
    )
    data_ready: list[pulumi.Resource] = [prep.gate]
    if cfg.fluid.enabled:
        volume = Fluid("fluid", cfg, opts=opts())
        # The cache exists only when training reads from it (`data.source: volume`, which config refuses
        # with IRSA: Alluxio would run without credentials).
        if cfg.data.source == "volume":
            data_ready += volume.dataset(
                ns.name, storage.accesses["cache"], data_url, storage, depends_on=[prep.gate]
            )
    train = training_args(
        cfg, namespace=ns.name, access=access, data_url=data_url, run_url=run_url, model_url=model_url
    )
    training = Training("training", args=train, opts=opts(depends_on=[*operator.ready, *ns.ready, *data_ready]))
    TensorBoard(
        "tensorboard",
        args=tensorboard_args(cfg, namespace=ns.name, access=storage.accesses["tensorboard"], logdir=logdir),
        opts=opts(depends_on=[*access.depends_on, *ns.ready]),
    )
    serve_after = [training.gate] if training.gate else []
    Serving(
        "serving",
        args=serving_args(cfg, namespace=ns.name, access=storage.accesses["serving"], model_url=model_url),
        opts=opts(depends_on=[*access.depends_on, *ns.ready, *serve_after]),
    )
    retraining = Retraining(
        "retraining",
        cfg,
        ns.name,
        access,
        data_url,
        model_url,
        opts=opts(depends_on=[*argo.ready, *operator.ready, prep.gate, *ns.ready]),
        training=train,
    )

    n = cfg.namespace
    tb = TENSORBOARD_PORT
    return {
        "bucket": storage.bucket,
        "endpoint": access.endpoint or f"https://s3.{cfg.storage.region}.amazonaws.com",
        "region": cfg.storage.region,
        "namespace": ns.name,
        "dataUrl": data_url,
        "trainingDataUrl": data_url_for_training(cfg, data_url),
        "runUrl": run_url,
        "runSpec": {**cfg.run_spec, "digest": cfg.run_digest},
        "modelUrl": model_url,
        "tfjobName": training.name,
        "tensorboardUrl": f"http://tensorboard.{n}.svc:{tb}",
        "servingUrl": f"http://serving.{n}.svc:{REST_PORT}",
        "retrainCommand": retraining.submit,
        # Who may run that: bind the declared Role (or use a Group, `--group NAME`).
        "grantRetrain": f"kubectl -n {cfg.namespace} create rolebinding retrain-submitters "
        f"--role {SUBMITTER_ROLE} --user USER",
        "portForward": {
            "tensorboard": f"kubectl -n {n} port-forward svc/tensorboard {tb}:{tb}",
            "serving": f"kubectl -n {n} port-forward svc/serving {REST_PORT}:{REST_PORT}",
            "argo": f"kubectl -n {cfg.argo.namespace} port-forward svc/{argo.server_service} "
            f"{SERVER_PORT}:{SERVER_PORT}",
        },
        # Serving goes back to version N at the sidecar's next sync: every newer version gets _REJECTED.
        "rollbackCommand": pulumi.Output.from_input(model_url).apply(
            lambda url: f"python -m trainer rollback --model-url {url} --to N"
        ),
        "predictCommand": f"python -m trainer predict --server http://localhost:{REST_PORT} "
        f"--model {cfg.serving.model_name}",
    }


def main() -> None:
    try:
        cfg = configload.from_pulumi()
    except ConfigError as e:
        # RunError: pulumi prints "error: <message>" alone, without a Python traceback.
        raise pulumi.RunError(str(e)) from None
    for key, value in build(cfg).items():
        pulumi.export(key, value)
