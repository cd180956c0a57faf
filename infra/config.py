"""The stack's configuration: one typed, validated object, read before any resource is declared.

`infra.keys` lists the keys and defaults, `infra.configread` reads them as Pulumi structures them,
`infra.parse` checks each value, `load` (here) checks them together and builds the `StackConfig`
(`infra.stackconfig`); every error (`infra.configerror.ConfigError`) names the key, the bad value and the fix.
The rest of the repository imports all of these names from here.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from infra.configread import GROUPS, did_you_mean, nested_values, stack_values  # noqa: F401
from infra.keys import (  # noqa: F401  (re-exported: the rest of infra reads them from here)
    CREDENTIALS,
    DATA_SOURCES,
    KEY_NAMES,
    KEYS,
    MAX_WORKERS,
    NS,
    STORAGE_MODES,
    WORKLOADS,
    Key,
)
from infra.parse import ConfigError, Getter, Parser, arn_parts, oidc_issuer, quantity_value  # noqa: F401
from infra.stackconfig import Cluster, Fluid, Images, Resources, Serving, StackConfig, Storage, Training  # noqa: F401

# ---- loading ----------------------------------------------------------------------------------------------


def load(stack: str, get: Getter, get_secret: Getter | None = None, present: Iterable[str] = ()) -> StackConfig:
    """Builds the config from `get(key) -> raw value or None` (Pulumi gives strings; tests may give
    typed values). `present` lists the keys set in the stack, to catch misspelt ones."""
    get_secret = get_secret or get
    for key in present:
        if key.startswith(NS + ":"):
            name = key[len(NS) + 1 :]
            if name not in KEY_NAMES:
                raise ConfigError(name, "is not a known key", get(name), did_you_mean(name))
    p = Parser(stack, get, get_secret)

    namespace = p.dns_label("namespace")
    workers = p.int("workers", 1, MAX_WORKERS)
    mode = p.choice("storage.mode", STORAGE_MODES)
    bucket = p.bucket("storage.bucket")
    if mode == "aws":
        region = p.match("storage.region", r"[a-z]{2}(-[a-z]+)+-\d", "an AWS region such as us-east-1")
    else:  # S3-compatible endpoints keep their own names: fr-par, nyc3, auto, us-west-004, minio
        region = p.match(
            "storage.region", r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}", "a region name (letters, digits, '.', '_', '-')"
        )
    credentials = p.choice("storage.credentials", CREDENTIALS)
    endpoint = p.raw("storage.endpoint")
    access_key = p.secret("storage.accessKeyId")
    secret_key = p.secret("storage.secretAccessKey")
    oidc = p.raw("storage.oidcProviderArn")

    if mode == "external":
        if not endpoint:
            raise ConfigError(
                "storage.endpoint",
                "is required when storage.mode is external",
                endpoint,
                f"pulumi config set {NS}:storage.endpoint https://s3.example.com",
            )
        endpoint = p.endpoint("storage.endpoint", str(endpoint))
        for key, value in (("storage.accessKeyId", access_key), ("storage.secretAccessKey", secret_key)):
            if value is None or value == "":
                raise ConfigError(
                    key,
                    "is required when storage.mode is external",
                    None,
                    f"pulumi config set --secret {NS}:{key} <value>",
                )
    else:
        for key, value in (
            ("storage.endpoint", endpoint),
            ("storage.accessKeyId", access_key),
            ("storage.secretAccessKey", secret_key),
        ):
            if value not in (None, ""):
                raise ConfigError(
                    key,
                    f"is only used with storage.mode external, not {mode}",
                    "set",
                    f"pulumi config rm {NS}:{key}, or set {NS}:storage.mode external",
                )
        endpoint, access_key, secret_key = None, None, None
    if credentials == "irsa":
        if mode != "aws":
            raise ConfigError(
                "storage.credentials",
                f"irsa needs storage.mode aws, not {mode}",
                credentials,
                f"pulumi config set {NS}:storage.credentials access-key",
            )
        if not oidc:
            raise ConfigError(
                "storage.oidcProviderArn",
                "is required when storage.credentials is irsa",
                oidc,
                "aws eks describe-cluster --name CLUSTER --query cluster.identity.oidc.issuer, then "
                f"pulumi config set {NS}:storage.oidcProviderArn "
                "arn:aws:iam::ACCOUNT:oidc-provider/oidc.eks.REGION.amazonaws.com/id/ID",
            )
        arn_parts(str(oidc))
    elif oidc:
        raise ConfigError(
            "storage.oidcProviderArn",
            "is only used with storage.credentials irsa",
            oidc,
            f"pulumi config rm {NS}:storage.oidcProviderArn",
        )

    storage = Storage(
        mode=mode,
        bucket=bucket,
        region=region,
        endpoint=endpoint,
        access_key_id=access_key,
        secret_access_key=secret_key,
        credentials=credentials,
        oidc_provider_arn=oidc or None,
        protect=p.bool("storage.protect"),
        versioning=p.bool("storage.versioning"),
        runs_expire_days=p.int("storage.runsExpireDays", 1, 3650),
        minio_size=p.memory("minio.size"),
    )
    images = Images(
        trainer=p.image("image.trainer"),
        sidecar=p.image("image.sidecar"),
        tensorboard=p.image("image.tensorboard"),
        serving=p.image("image.serving"),
        minio=p.image("image.minio"),
        mc=p.image("image.mc"),
        pull_policy=p.choice("image.pullPolicy", ("IfNotPresent", "Always", "Never")),
    )
    data_source = p.choice("data.source", DATA_SOURCES)
    fluid = Fluid(
        enabled=p.bool("fluid.enabled"),
        install=p.bool("fluid.install"),
        chart_version=p.chart_version("fluid.chartVersion"),
        namespace=p.dns_label("fluid.namespace"),
        cache_size=p.memory("fluid.cacheSize"),
        replicas=p.int("fluid.replicas", 1, 64),
    )
    if data_source == "volume":
        if not fluid.enabled:
            raise ConfigError(
                "data.source",
                "volume needs the Fluid dataset",
                data_source,
                f"pulumi config set {NS}:fluid.enabled true, or set {NS}:data.source s3",
            )
        if credentials == "irsa":
            raise ConfigError(
                "data.source",
                "volume cannot use irsa: Fluid's Alluxio runtime reads keys from a Secret",
                data_source,
                f"set {NS}:storage.credentials access-key, or {NS}:data.source s3",
            )
    training = Training(
        run=p.dns_label("training.run", max_len=40),
        epochs=p.int("training.epochs", 1, 10_000),
        batch_size=p.int("training.batchSize", 1, 65_536),
        learning_rate=p.number("training.learningRate"),
        backoff_limit=p.int("training.backoffLimit", 0, 100),
        timeout_seconds=p.int("training.timeoutSeconds", 60, 7 * 24 * 3600),
    )
    serving = Serving(
        wait_for_training=p.bool("serving.waitForTraining"),
        model_name=p.dns_label("serving.modelName"),
        replicas=p.int("serving.replicas", 1, 100),
        poll_seconds=p.int("serving.pollSeconds", 1, 3600),
        keep_versions=p.int("serving.keepVersions", 1, 100),
    )
    _check_like_the_trainer(training, workers)
    resources = {w: Resources(*p.resources(w)) for w in WORKLOADS}
    argo_namespace = p.dns_label("argo.namespace")
    if argo_namespace == namespace:
        raise ConfigError(
            "argo.namespace",
            "must differ from the pipeline namespace",
            argo_namespace,
            f"pulumi config set {NS}:argo.namespace argo",
        )
    check_foreign_namespaces(namespace, fluid)
    access_from = p.dns_label("access.fromNamespace") if p.raw("access.fromNamespace") else None
    return StackConfig(
        project=NS,
        stack=stack,
        namespace=namespace,
        workers=workers,
        storage=storage,
        images=images,
        data_prepare_source=p.nonempty("data.prepareSource"),
        data_source=data_source,
        dataprep_timeout_seconds=p.int("dataprep.timeoutSeconds", 60, 24 * 3600),
        training=training,
        serving=serving,
        operator_version=p.operator_version("operator.version"),
        argo_chart_version=p.chart_version("argo.chartVersion"),
        operator_install=p.bool("operator.install"),
        argo_install=p.bool("argo.install"),
        argo_namespace=argo_namespace,
        fluid=fluid,
        access_from_namespace=access_from,
        resources=resources,
        cluster=Cluster(
            kubeconfig=str(p.raw("cluster.kubeconfig") or "").strip() or None,
            context=str(p.raw("cluster.context") or "").strip() or None,
        ),
    )


# The training operator's standalone overlay installs into this namespace; it is not configurable
# (kubeflow/trainer v1.9.4 `manifests/overlays/standalone/kustomization.yaml`, `namespace: kubeflow`).
OPERATOR_NAMESPACE = "kubeflow"


def check_foreign_namespaces(namespace: str, fluid: Fluid) -> None:
    """The pipeline namespace gets a default-deny NetworkPolicy and restricted Pod Security: in the training
    operator's namespace (or Fluid's, with Fluid on) that would cut the controller off from the API server and
    its webhook from the API server's calls. Argo's namespace is checked on `argo.namespace` itself."""
    taken = {OPERATOR_NAMESPACE: "the Kubeflow training operator's (fixed by its manifests)"}
    if fluid.enabled:
        taken[fluid.namespace] = "Fluid's (fluid.namespace)"
    if namespace in taken:
        raise ConfigError(
            "namespace",
            f"must differ from {taken[namespace]} namespace: the pipeline's default-deny network policy would "
            "cut that controller off",
            namespace,
            f"pulumi config set {NS}:namespace kubeflow-e2e",
        )


TRAIN_FLAGS = {
    "--epochs": "training.epochs",
    "--batch-size": "training.batchSize",
    "--learning-rate": "training.learningRate",
}


def _check_like_the_trainer(training: Training, workers: int) -> None:
    """`train`'s own argument rules (`trainer.rules`, the one definition both use), with the cross-check
    against the TFJob's processes (chief + workers), so no pod exits 2 on a value the stack let through."""
    from trainer import rules

    processes = workers + 1
    problems = rules.train_problems(
        epochs=training.epochs,
        batch_size=training.batch_size,
        learning_rate=float(training.learning_rate),
        processes=processes,
    )
    for p in problems:
        key = TRAIN_FLAGS[p.flag]
        if p.problem.startswith("is smaller than the number of processes"):
            raise ConfigError(
                key,
                f"is smaller than the number of training processes (workers + the chief = {processes}), "
                "which split the global batch between them",
                p.value,
                f"pulumi config set {NS}:{key} {p.suggestion}, or lower {NS}:workers",
            )
        value = training.learning_rate if p.flag == "--learning-rate" else p.value  # as the user wrote it
        raise ConfigError(key, p.problem, value, f"pulumi config set {NS}:{key} {p.suggestion}")


def from_pulumi() -> StackConfig:
    """Reads the running program's (or the mocks') config with `pulumi.Config("kubeflow-e2e")`: `get` for
    plain keys, `get_object` for the structured ones; the secret keys come back as Pulumi secrets."""
    import pulumi

    c = pulumi.Config(NS)
    from pulumi.runtime import config as runtime_config

    # The language host passes config in PULUMI_CONFIG; an Automation API inline program (`make e2e`) only in
    # the runtime's own map: take the keys from both.
    present = {*pulumi.runtime.get_config_env(), *runtime_config.CONFIG.get()}
    values = nested_values(present, c.get, c.get_object)

    def secret(key: str) -> Any:
        value = values.get(key)
        return None if value in (None, "") else pulumi.Output.secret(value)

    cfg = load(pulumi.get_stack(), values.get, secret)
    if not cfg.cluster.context:
        raise ConfigError(
            "cluster.context",
            "is required, so that `pulumi up` never deploys into whichever kubeconfig context is current",
            None,
            f"pulumi config set --path {NS}:cluster.context <context> (kubectl config get-contexts)",
        )
    return cfg
