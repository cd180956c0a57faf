"""The whole stack: config first (validated before any resource), then the components in dependency order,
then the outputs. `__main__.py` calls `main()`; so does `python -m render` under mocks."""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s

from infra import bounds, configload, fluid, preview
from infra.argo import SERVER_PORT, Argo, ArgoArgs
from infra.config import StackConfig
from infra.configcheck import ConfigError
from infra.dataprep import DataPrep, DataPrepArgs
from infra.fluid import Fluid, FluidArgs
from infra.namespace import SUBMITTER_ROLE, Namespace, NamespaceArgs
from infra.operator import TrainingOperator, TrainingOperatorArgs
from infra.podspec import S3Access
from infra.retraining import Retraining, RetrainingArgs
from infra.s3identities import SERVICE_ACCOUNTS, irsa_role_arn, irsa_role_names, irsa_subjects, s3_roles
from infra.serving import REST_PORT, Serving, ServingArgs
from infra.storage import Storage
from infra.storagemode import StorageArgs
from infra.tensorboard import PORT as TENSORBOARD_PORT
from infra.tensorboard import TensorBoard, TensorBoardArgs
from infra.training import Training, TrainingArgs


def kubernetes_provider(cfg: StackConfig) -> k8s.Provider:
    """The one Kubernetes provider every Kubernetes resource of the stack uses: the cluster named by
    `cluster.context` (in `cluster.kubeconfig`, or `$KUBECONFIG` / `~/.kube/config`), never whichever
    context happens to be current."""
    kubeconfig = {"kubeconfig": cfg.cluster.kubeconfig} if cfg.cluster.kubeconfig else {}
    return k8s.Provider("kubernetes", context=cfg.cluster.context, **kubeconfig)


def data_url_for_training(cfg: StackConfig, s3_data_url: pulumi.Input[str]) -> pulumi.Input[str]:
    """`data.source: volume` reads the Fluid-cached copy through the dataset's PVC."""
    return f"file://{fluid.MOUNT_PATH}" if cfg.data.source == "volume" else s3_data_url


def namespace_args(cfg: StackConfig) -> NamespaceArgs:
    return NamespaceArgs(
        name=cfg.namespace,
        instance=cfg.stack,
        minio=cfg.storage.mode == "minio",
        s3_endpoint=cfg.storage.endpoint,
        gpus=cfg.training.gpus,
        proxy_namespace=cfg.access.from_namespace,
        argo_namespace=cfg.argo.namespace,
        metrics_namespace=cfg.metrics.from_namespace,
        irsa_role_arns={sa: arn for sa in SERVICE_ACCOUNTS if (arn := irsa_role_arn(cfg, sa))},  # IRSA only
        quota=bounds.quota_spec(cfg), limit_range=bounds.limit_range_spec(cfg),
    )


def storage_args(cfg: StackConfig) -> StorageArgs:
    return StorageArgs(
        project=cfg.project,
        instance=cfg.stack,
        namespace=cfg.namespace,
        storage=cfg.storage,
        roles=tuple(s3_roles(cfg)),
        irsa_subjects=irsa_subjects(cfg),
        irsa_role_names=irsa_role_names(cfg),
        minio_size=cfg.minio.size,
        minio_image=cfg.image.minio,
        mc_image=cfg.image.mc,
        pull_policy=cfg.image.pull_policy,
        minio_resources=cfg.minio.resources,
        bucket_job_resources=cfg.sync.resources,
        rollout=preview.rollout_gate(cfg),
    )


def argo_args(cfg: StackConfig, *, namespace: pulumi.Input[str], access: S3Access) -> ArgoArgs:
    return ArgoArgs(
        install=cfg.argo.install,
        chart_version=cfg.argo.chart_version,
        argo_namespace=cfg.argo.namespace,
        namespace=namespace,
        instance=cfg.stack,
        bucket=cfg.storage.bucket,
        access=access,
        server_role_arn=irsa_role_arn(cfg, "argo-server"),  # None without IRSA
        cron=cfg.retrain.schedule is not None,
    )


def dataprep_args(
    cfg: StackConfig, *, namespace: pulumi.Input[str], access: S3Access, data_url: pulumi.Input[str]
) -> DataPrepArgs:
    return DataPrepArgs(
        namespace=namespace,
        instance=cfg.stack,
        image=cfg.image.trainer,
        pull_policy=cfg.image.pull_policy,
        resources=cfg.dataprep.resources,
        prepare_source=cfg.data.prepare_source,
        workers=cfg.workers,
        access=access,
        data_url=data_url,
        timeout_seconds=cfg.dataprep.timeout_seconds,
        kubeconfig=cfg.cluster.kubeconfig,
        context=cfg.cluster.context,
    )


def fluid_args(cfg: StackConfig) -> FluidArgs:
    f = cfg.fluid
    return FluidArgs(
        install=f.install,
        chart_version=f.chart_version,
        controllers_namespace=f.namespace,
        cache_namespace=cfg.cache_namespace,
        instance=cfg.stack,
        replicas=f.replicas,
        cache_size=f.cache_size,
        load_timeout_seconds=cfg.dataprep.timeout_seconds,
        kubeconfig=cfg.cluster.kubeconfig,
        context=cfg.cluster.context,
    )


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
        backoff_limit=t.backoff_limit * (cfg.workers + 1),  # restarts summed over pods: per incident, all restart
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


def retraining_args(
    cfg: StackConfig, *, namespace: pulumi.Input[str], prep: DataPrepArgs, training: TrainingArgs
) -> RetrainingArgs:
    """Each retrain runs the stack's data prep and TFJob; the workflow may take both their waits."""
    return RetrainingArgs(
        namespace=namespace,
        namespace_name=cfg.namespace,
        prep=prep,
        training=training,
        timeout_seconds=cfg.dataprep.timeout_seconds + cfg.training.timeout_seconds,
        schedule=cfg.retrain.schedule,
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
        rollout=preview.rollout_gate(cfg),
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
        service_monitor=preview.wants_service_monitor(cfg),
        rollout=preview.rollout_gate(cfg),
    )


def build(cfg: StackConfig) -> dict[str, pulumi.Input]:
    """Declares every resource; returns the stack outputs."""
    on_cluster = pulumi.ResourceOptions(providers={"kubernetes": kubernetes_provider(cfg)})

    def opts(**more) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions.merge(on_cluster, pulumi.ResourceOptions(**more))

    ns = Namespace("namespace", args=namespace_args(cfg), opts=opts())
    storage = Storage("storage", args=storage_args(cfg), ns=ns, opts=opts())
    access = storage.access
    data_url, run_url, model_url = (access.url(p) for p in (cfg.data_prefix, cfg.run_prefix, cfg.model_prefix))
    # The current run's logs only: TensorBoard loads every run under its logdir before it lists the newest,
    # which grows with the runs kept (docs/performance.md, "TensorBoard over many runs").
    logdir = access.url(f"{cfg.run_prefix}/logs/")

    operator_args = TrainingOperatorArgs(install=cfg.operator.install, version=cfg.operator.version)
    operator = TrainingOperator("training-operator", args=operator_args, opts=opts())
    argo = Argo("argo", args=argo_args(cfg, namespace=ns.name, access=access), opts=opts(depends_on=[ns.namespace]))

    # data -> train -> serve: each step depends on the previous one's awaited resource.
    prepare = dataprep_args(cfg, namespace=ns.name, access=access, data_url=data_url)
    prep = DataPrep("dataprep", args=prepare, opts=opts(depends_on=[*argo.ready, *access.depends_on, *ns.ready]))
    data_ready: list[pulumi.Resource] = [prep.gate]
    if cfg.fluid.enabled:
        volume = Fluid("fluid", args=fluid_args(cfg), opts=opts())
        # The cache exists only when training reads from it (`data.source: volume`, which config refuses
        # with IRSA: Alluxio would run without credentials).
        if cfg.data.source == "volume":
            data_ready += volume.dataset(ns.name, storage.accesses["cache"], data_url, storage, depends_on=[prep.gate])
    train = training_args(cfg, namespace=ns.name, access=access, data_url=data_url, run_url=run_url,
                          model_url=model_url)
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
        args=retraining_args(cfg, namespace=ns.name, prep=prepare, training=train),
        opts=opts(depends_on=[*argo.ready, *operator.ready, prep.gate, *ns.ready]),
    )

    n, tb = cfg.namespace, TENSORBOARD_PORT
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
    preview.check_capacity(cfg)
    for key, value in build(cfg).items():
        pulumi.export(key, value)
