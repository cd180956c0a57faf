"""Each component on its own, in this process, under Pulumi's mocks (`pulumi.runtime.set_mocks`, through
`render.mocks`): what it registers for a given config."""

from __future__ import annotations

import json

import pulumi
import pytest
import yaml

from infra.configcheck import NS
from infra.podspec import S3Access
from infra.s3identities import irsa_role_arn, irsa_role_names

from .conftest import (
    EXTERNAL,
    argo_args,
    dataprep_args,
    fluid_args,
    make_config,
    namespace_args,
    retraining_args,
    serving_args,
    storage_args,
    storage_component,
    tensorboard_args,
    training_args,
)

ARN = "arn:aws:iam::123456789012:oidc-provider/oidc.eks.us-east-1.amazonaws.com/id/EXAMPLE0123"
IRSA = S3Access(bucket="b", region="eu-west-1", endpoint=None, secret_name=None)


def named(records: list[dict], name: str) -> dict:
    """The resource of that name, not one of our components (which may share it)."""
    (r,) = [r for r in records if r["name"] == name and not r["type"].startswith(f"{NS}:")]
    return r


def types(records: list[dict]) -> list[str]:
    return sorted(r["type"] for r in records)


def test_namespace(declare):
    from infra.namespace import Namespace

    cfg = make_config()
    records = declare(lambda: Namespace("namespace", args=namespace_args(cfg)).name)
    (component,) = [r for r in records if r["type"] == f"{NS}:infra:Namespace"]
    assert named(records, "namespace")["parent"] == component["urn"]
    sas = {r["inputs"]["metadata"]["name"]: r["inputs"] for r in records if r["type"].endswith("ServiceAccount")}
    assert {k: v["automountServiceAccountToken"] for k, v in sas.items()} == {
        "pipeline": False,
        "serving": False,
        "tensorboard": False,
        "workflow-executor": False,
    }
    assert all("annotations" not in v["metadata"] for v in sas.values())
    role = named(records, "role-executor")["inputs"]
    assert {
        "apiGroups": ["argoproj.io"],
        "resources": ["workflowtaskresults"],
        "verbs": ["create", "patch"],
    } in role["rules"]
    # default-deny, dns, s3, apiserver, training peers, and minio's; serving and TensorBoard get none by default
    assert len([r for r in records if r["type"].endswith("NetworkPolicy")]) == 6
    # Everything inside the namespace waits for it.
    # (but the read of the API server's endpoints, in `default`)
    skip = ("namespace", "apiserver-endpoints")
    inner = [r for r in records if r["type"].startswith("kubernetes:") and r["name"] not in skip]
    assert all(
        ns_urn in r["dependencies"]
        for r in inner
        for ns_urn in [x["urn"] for x in records if x["type"] == "kubernetes:core/v1:Namespace"]
    )


def test_namespace_with_irsa(declare):
    from infra.namespace import Namespace

    cfg = make_config(storage__mode="aws", storage__credentials="irsa", storage__oidcProviderArn=ARN)
    records = declare(lambda: Namespace("namespace", args=namespace_args(cfg)).name)
    for sa in ("pipeline", "serving", "tensorboard"):
        meta = named(records, f"sa-{sa}")["inputs"]["metadata"]
        assert meta["annotations"]["eks.amazonaws.com/role-arn"] == irsa_role_arn(cfg, sa)
    policies = {r["inputs"]["metadata"]["name"] for r in records if r["type"].endswith("NetworkPolicy")}
    assert "allow-minio" not in policies


def test_storage_minio(declare):

    cfg = make_config()
    box = {}

    def build():
        box["storage"] = storage_component(cfg)
        return box["storage"].access.url("data/mnist")

    records = declare(build)
    access = box["storage"].access
    assert access.endpoint == "http://minio.kubeflow-e2e.svc:9000" and access.secret_name == "s3-credentials"
    # pods wait for the bucket: the Job, through its gate (which fails fast on a stuck pod)
    assert {type(r).__name__ for r in access.depends_on} == {"StepGate", "Secret"}
    job = named(records, "job-minio-bucket")
    secret = named(records, "secret-s3-credentials")
    assert named(records, "secret-minio-users")["urn"] in job["dependencies"]
    # Every role MinIO mode can have (the cache too, so turning it on later finds a kept key); the Job makes
    # users only for the roles in use ($ROLES).
    assert set(named(records, "secret-minio-users")["inputs"]["stringData"]) == {
        f"{role}.{part}" for role in ("pipeline", "serving", "tensorboard", "cache") for part in ("id", "key")
    }
    assert named(records, "deployment-minio")["urn"] in job["dependencies"]
    assert secret["inputs"]["data"] == {
        "AWS_ACCESS_KEY_ID": "[secret]",
        "AWS_SECRET_ACCESS_KEY": "[secret]",
    }
    assert not [r for r in records if r["type"].startswith("aws:")]


@pytest.mark.parametrize(
    ("mode", "values"),
    [
        ("minio", {}),
        ("aws", {"storage__mode": "aws"}),
        (
            "external",
            {
                "storage__mode": "external",
                "storage__endpoint": "https://s3.example.com",
                "storage__accessKeyId": "id",
                "storage__secretAccessKey": "key",
            },
        ),
    ],
)
def test_a_storage_mode_returns_what_it_made_and_sets_nothing_on_its_parent(declare, mode, values):
    """Each mode is a function returning a `StorageMode`; its resources are children of the parent it is
    given (the Storage component), which it leaves as it found it."""
    from infra import minio, s3bucket, storage
    from infra.namespace import Namespace
    from infra.storagemode import StorageMode

    cfg = make_config(**values)
    declare_mode = {"minio": minio.declare, "aws": s3bucket.declare, "external": storage.external}[mode]
    box = {}

    def build():
        parent = pulumi.ComponentResource(f"{NS}:infra:Storage", f"storage-{mode}")
        before = dict(vars(parent))
        ns = Namespace(f"namespace-{mode}", args=namespace_args(cfg))
        box["result"] = declare_mode(parent, storage_args(cfg), ns)
        box["changed"] = {k for k in vars(parent) if k not in before or vars(parent)[k] is not before[k]}
        return parent.urn

    records = declare(build)
    result = box["result"]
    assert isinstance(result, StorageMode) and box["changed"] == set()
    assert result.access is result.accesses["pipeline"] and result.ready
    parent = next(r["urn"] for r in records if r["name"] == f"storage-{mode}")
    ours = [r for r in records if r["type"].startswith("aws:") or r["name"].startswith(("secret-s3-", "secret-minio"))]
    assert ours and all(r["parent"] == parent for r in ours), [(r["name"], r["parent"]) for r in ours]
    assert "Secret" in {type(r).__name__ for r in result.ready}  # the pipeline's keys, before any pod
    assert set(result.keys) >= {"pipeline"}


def test_storage_aws_access_key(declare):

    cfg = make_config(storage__mode="aws", storage__protect=True, storage__versioning=True)
    records = declare(lambda: storage_component(cfg).bucket)
    got = {r["type"].split(":")[-1] for r in records if r["type"].startswith("aws:")}
    assert got == {
        "Bucket",
        "BucketOwnershipControls",
        "BucketPublicAccessBlock",
        "BucketServerSideEncryptionConfiguration",
        "BucketPolicy",
        "BucketVersioning",
        "BucketLifecycleConfiguration",
        "Policy",
        "User",
        "UserPolicyAttachment",
        "AccessKey",
    }
    bucket = named(records, "bucket")
    assert bucket["options"]["protect"] and bucket["options"]["retainOnDelete"]
    # The bucket policy goes after the public-access block; lifecycle after versioning.
    assert named(records, "bucket-public-access-block")["urn"] in named(records, "bucket-tls-only")["dependencies"]
    assert named(records, "bucket-versioning")["urn"] in named(records, "bucket-lifecycle")["dependencies"]
    provider = named(records, "aws")
    assert provider["type"] == "pulumi:providers:aws" and provider["inputs"]["region"] == "us-east-1"


def test_storage_irsa(declare):

    cfg = make_config(storage__mode="aws", storage__credentials="irsa", storage__oidcProviderArn=ARN)
    box = {}

    def build():
        box["s"] = storage_component(cfg)
        return box["s"].bucket

    records = declare(build)
    assert box["s"].access.secret_name is None and box["s"].access.env() == [
        {"name": "AWS_REGION", "value": "us-east-1"}
    ]
    role = named(records, "pipeline-role")["inputs"]
    assert role["name"] == irsa_role_names(cfg)["pipeline"]
    assert json.loads(role["assumeRolePolicy"])["Statement"][0]["Principal"] == {"Federated": ARN}


def test_storage_external(declare):

    cfg = make_config(
        storage__mode="external",
        storage__endpoint="http://10.0.0.5:9000",
        storage__accessKeyId="AKIAEXAMPLE",
        storage__secretAccessKey="wJalrEXAMPLE",
    )
    records = declare(lambda: storage_component(cfg).bucket)
    secret = named(records, "secret-s3-credentials")["inputs"]
    assert secret["data"] == {"AWS_ACCESS_KEY_ID": "[secret]", "AWS_SECRET_ACCESS_KEY": "[secret]"}
    assert "AKIAEXAMPLE" not in json.dumps(records) and "wJalrEXAMPLE" not in json.dumps(records)


def test_training_operator(declare):
    from infra.operator import TrainingOperator, TrainingOperatorArgs

    args = TrainingOperatorArgs(install=True, version="v1.9.2")
    records = declare(lambda: TrainingOperator("training-operator", args=args).url)
    d = named(records, "training-operator")
    assert d["type"] == "kubernetes:kustomize/v2:Directory"
    assert (
        d["inputs"]["directory"] == "github.com/kubeflow/training-operator.git/manifests/overlays/standalone?ref=v1.9.2"
    )


def test_argo(declare):
    from infra.argo import Argo

    cfg = make_config(argo__chartVersion="1.0.17")
    records = declare(lambda: Argo("argo", args=argo_args(cfg)).chart.urn)
    chart = named(records, "argo-workflows")["inputs"]
    assert (chart["chart"], chart["version"], chart["namespace"]) == ("argo-workflows", "1.0.17", "argo")
    assert chart["repositoryOpts"]["repo"] == "https://argoproj.github.io/argo-helm"
    v = chart["values"]
    assert v["server"]["authModes"] == ["client"] and v["crds"]["full"] is False
    assert "artifactRepository" not in v
    repo = yaml.safe_load(named(records, "artifact-repositories")["inputs"]["data"]["default"])
    assert repo["s3"]["endpoint"] == "minio.kubeflow-e2e.svc:9000" and repo["s3"]["insecure"] is True
    assert named(records, "argo-namespace")["urn"] in named(records, "argo-workflows")["dependencies"]


def test_argo_on_aws_with_irsa(declare):
    from infra.argo import artifact_repository

    repo = artifact_repository("b", IRSA)["s3"]
    assert repo["endpoint"] == "s3.eu-west-1.amazonaws.com" and repo["useSDKCreds"] is True
    assert "accessKeySecret" not in repo


def test_fluid(declare):
    from infra.fluid import Fluid

    cfg = make_config(**EXTERNAL, fluid__enabled=True, data__source="volume", fluid__replicas=3)

    def build():

        storage = storage_component(cfg)
        f = Fluid("fluid", args=fluid_args(cfg))
        return f.dataset("kubeflow-e2e", storage.access, "s3://b/data/mnist", storage, depends_on=[])[0].urn

    records = declare(build)
    chart = named(records, "fluid")["inputs"]
    assert (chart["chart"], chart["version"], chart["repositoryOpts"]["repo"]) == (
        "fluid",
        "1.0.8",
        "https://fluid-cloudnative.github.io/charts",
    )
    dataset = named(records, "dataset")["inputs"]
    (mount,) = dataset["spec"]["mounts"]
    assert mount["options"]["alluxio.underfs.s3.endpoint"] == EXTERNAL["storage__endpoint"]
    assert dataset["metadata"]["namespace"] == "kubeflow-e2e-cache"
    copy = named(records, "secret-s3-credentials-cache")["inputs"]
    assert copy["metadata"]["namespace"] == "kubeflow-e2e-cache" and set(copy["data"]) == {
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
    }
    reference = named(records, "dataset-reference")["inputs"]
    assert reference["metadata"]["namespace"] == "kubeflow-e2e"
    assert reference["spec"]["mounts"] == [{"name": "mnist", "mountPoint": "dataset://kubeflow-e2e-cache/mnist"}]
    assert mount["options"]["alluxio.underfs.s3.disable.dns.buckets"] == "true"
    load = named(records, "dataload")
    assert load["inputs"]["spec"]["target"] == [{"path": "/", "replicas": 3}]
    assert {named(records, "dataset")["urn"], named(records, "alluxio-runtime")["urn"]} <= set(load["dependencies"])
    assert named(records, "fluid")["urn"] in named(records, "dataset")["dependencies"]


def test_dataprep(declare):
    from infra.dataprep import DataPrep

    cfg = make_config(data__prepareSource="https://example.com/mnist.npz", dataprep__timeoutSeconds=600)
    records = declare(lambda: DataPrep("dataprep", args=dataprep_args(cfg)).workflow.urn)
    wf = named(records, "workflow-prepare-data")
    assert wf["options"]["replaceOnChanges"] == ["spec"] and wf["options"]["deleteBeforeReplace"]
    inputs = wf["inputs"]
    assert inputs["metadata"]["annotations"] == {"pulumi.com/skipAwait": "true"}  # its gate waits
    gate = named(records, "gate-prepare-data")["inputs"]
    assert (gate["kind"], gate["name"], gate["timeoutSeconds"]) == ("Workflow", "prepare-data", 600)
    assert inputs["spec"]["workflowTemplateRef"] == {"name": "prepare-data"}  # Argo runs only templates
    tmpl = named(records, "workflowtemplate-prepare-data")
    assert tmpl["urn"] in wf["dependencies"]
    (template,) = tmpl["inputs"]["spec"]["templates"]
    assert template["container"]["command"][-5:] == [
        "prepare-data",
        "--source",
        "https://example.com/mnist.npz",
        "--shards",
        "4",  # a multiple of chief + 1 worker, at least 4: whole files for each process
    ]


@pytest.mark.parametrize("workers", [1, 7])
def test_training(declare, workers):
    from infra.training import Training

    cfg = make_config(workers=workers, training__epochs=12, training__learningRate="0.01")
    records = declare(lambda: Training("training", args=training_args(cfg, run_url="s3://b/runs/baseline")).tfjob.urn)
    spec = named(records, "tfjob")["inputs"]["spec"]
    assert spec["tfReplicaSpecs"]["Worker"]["replicas"] == workers
    command = spec["tfReplicaSpecs"]["Chief"]["template"]["spec"]["containers"][0]["command"]
    assert command == [
        "python",
        "-m",
        "trainer",
        "train",
        "--epochs",
        "12",
        "--batch-size",
        "64",
        "--learning-rate",
        "0.01",
    ]


def test_training_from_the_volume(declare):
    from infra.training import Training

    cfg = make_config(**EXTERNAL, fluid__enabled=True, data__source="volume")
    records = declare(lambda: Training("training", args=training_args(cfg)).tfjob.urn)
    c = named(records, "tfjob")["inputs"]["spec"]["tfReplicaSpecs"]["Worker"]["template"]["spec"]["containers"][0]
    assert {e["name"]: e.get("value") for e in c["env"]}["DATA_URL"] == "file:///data/mnist"


def test_tensorboard(declare):
    from infra.tensorboard import TensorBoard

    records = declare(
        lambda: TensorBoard("tensorboard", args=tensorboard_args(make_config())).deployment.urn
    )
    spec = named(records, "deployment-tensorboard")["inputs"]["spec"]["template"]["spec"]
    assert spec["containers"][0]["command"][:3] == ["tensorboard", "--logdir", "s3://b/runs/"]
    assert named(records, "service-tensorboard")["inputs"]["spec"]["ports"][0]["port"] == 6006


def test_serving(declare):
    from infra.serving import Serving

    cfg = make_config(
        serving__modelName="digits",
        serving__pollSeconds=7,
        serving__keepVersions=3,
        serving__minAccuracy="0.95",
        serving__maxRegression=0.01,
        serving__waitForTraining=False,
    )
    records = declare(lambda: Serving("serving", args=serving_args(cfg, "s3://b/models/digits")).deployment.urn)
    d = named(records, "deployment-serving")["inputs"]
    assert d["metadata"]["annotations"] == {"pulumi.com/skipAwait": "true"}
    spec = d["spec"]["template"]["spec"]
    server, sidecar = spec["containers"]
    assert "--model_name=digits" in server["args"] and "--file_system_poll_wait_seconds=7" in server["args"]
    gate = ["--min-accuracy", "0.95", "--max-regression", "0.01", "--max-bytes", str(2 * 2**30)]
    assert sidecar["args"] == ["--dest", "/models/digits", "--keep", "3", *gate, "--watch", "--interval", "7",
                               "--metrics-port", "9102"]
    assert spec["initContainers"][0]["args"] == ["--dest", "/models/digits", "--keep", "3", *gate]
    assert server["readinessProbe"]["httpGet"]["path"] == "/v1/models/digits"


def test_retraining(declare):
    from infra.retraining import Retraining

    cfg = make_config()
    records = declare(lambda: Retraining("retraining", args=retraining_args(cfg)).template.urn)
    spec = named(records, "workflowtemplate-retrain")["inputs"]["spec"]
    manifest = {t["name"]: t for t in spec["templates"]}["train"]["resource"]["manifest"]
    assert "s3://b/runs/{{workflow.name}}" in manifest and "&id" not in manifest


def test_program_reports_config_errors_without_a_traceback(declare, monkeypatch):
    from infra import program

    monkeypatch.setenv("PULUMI_CONFIG", json.dumps({f"{NS}:workers": "0"}))
    with pytest.raises(
        pulumi.RunError, match=rf"^config {NS}:workers must be between 1 and 64 \(0\): pulumi config set"
    ):
        declare(program.main)


@pytest.mark.parametrize(
    ("component", "waiting"),
    [
        ("dataprep", "workflow-prepare-data"),
        ("training", "tfjob"),
        ("tensorboard", "deployment-tensorboard"),
        ("serving", "deployment-serving"),
        ("retraining", "workflowtemplate-retrain"),
    ],
)
def test_components_take_depends_on_through_opts(declare, component, waiting):
    """A component records the caller's `opts.depends_on` and hands it on to the child that must wait (Pulumi
    does not pass a component's dependencies to its children)."""
    import pulumi_kubernetes as k8s

    from infra.dataprep import DataPrep
    from infra.retraining import Retraining
    from infra.serving import Serving
    from infra.tensorboard import TensorBoard
    from infra.training import Training

    cfg = make_config()
    build = {
        "dataprep": lambda o: DataPrep("dataprep", args=dataprep_args(cfg), opts=o),
        "training": lambda o: Training("training", args=training_args(cfg), opts=o),
        "tensorboard": lambda o: TensorBoard("tensorboard", args=tensorboard_args(cfg), opts=o),
        "serving": lambda o: Serving("serving", args=serving_args(cfg, "s3://b/models/m"), opts=o),
        "retraining": lambda o: Retraining("retraining", args=retraining_args(cfg), opts=o),
    }[component]

    def program():
        first = k8s.core.v1.ConfigMap(f"first-{component}", metadata={"name": "first"})
        build(pulumi.ResourceOptions(depends_on=[first]))
        return first.urn

    records = declare(program)
    first = named(records, f"first-{component}")["urn"]
    assert first in named(records, waiting)["dependencies"]
    (own,) = [r for r in records if r["type"].startswith(f"{NS}:") and r["name"] == component]
    assert first in own["dependencies"]


def test_a_component_refuses_an_output_as_depends_on():
    from infra import component

    assert component.depends_on(None) == [] and component.depends_on(pulumi.ResourceOptions()) == []
    with pytest.raises(TypeError, match="pass a list of resources"):
        component.depends_on(pulumi.ResourceOptions(depends_on=pulumi.Output.from_input([])))
