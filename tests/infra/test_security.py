"""The retrain and prod paths as a first real run meets them, and least privilege: each test reads
what the stack declares (rendered under mocks) against the upstream behaviour its docstring cites."""

from __future__ import annotations

import json

import pytest
import yaml

from . import argo_conditions, iam_eval, pods

# What the restricted Pod Security level requires of every container (kubernetes.io/docs/concepts/security/
# pod-security-standards, "Restricted"); a read-only root filesystem is not among them.
RESTRICTED = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "runAsNonRoot": True,
    "seccompProfile": {"type": "RuntimeDefault"},
}


def argo_values(rendered) -> dict:
    (chart,) = [r for r in rendered.by_type("kubernetes:helm.sh/v4:Chart") if r["name"] == "argo-workflows"]
    return chart["inputs"]["values"]


# ---- 1. the retrain's resource step can start --------------------------------------------------------------


def test_argo_executor_can_write_the_resource_manifest(variant):
    """`argoexec init` writes a resource template's manifest to /tmp/manifest.yaml (argo-workflows v4.0.6
    `workflow/executor/executor.go` StageFiles, called from `cmd/argoexec/commands/init.go`), and the controller
    mounts a /tmp volume only into the pod's regular containers, not the init container
    (`workflow/controller/workflowpod.go`). The chart's `executor.securityContext` applies to every executor
    container, init included, so a read-only root fails every `resource` step (argo-workflows#10787, open;
    Argo's own default for resource templates leaves the flag unset on init and wait for that reason). The
    executor keeps everything the restricted level requires."""
    context = argo_values(variant)["executor"]["securityContext"]
    assert context.get("readOnlyRootFilesystem") is not True
    assert RESTRICTED.items() <= context.items()


# ---- 2. the retrain's train step sees a failing TFJob ------------------------------------------------------


def _train_step(rendered) -> dict:
    spec = rendered.one("WorkflowTemplate", "retrain-mnist")["spec"]
    return {t["name"]: t for t in spec["templates"]}["train"]["resource"]


def _tfjob(conditions: list[tuple[str, str]], chief: dict, completed: bool) -> dict:
    status: dict = {
        "conditions": [{"type": t, "status": s, "reason": f"TFJob{t}"} for t, s in conditions],
        "replicaStatuses": {"Chief": chief, "Worker": {"active": 1}},
    }
    if completed:
        status["completionTime"] = "2026-11-29T17:00:00Z"
    return {"apiVersion": "kubeflow.org/v1", "kind": "TFJob", "status": status}


# TFJob statuses as training-operator v1.9.4 writes them (`pkg/util/status.go`: one condition per type,
# Running and Restarting replace each other, a terminal condition turns Running False and comes last;
# `pkg/controller.v1/common/job.go`: past `backoffLimit` the job is Failed with `completionTime` set, and
# with `restartPolicy: OnFailure` the chief's container restarts in place, so no chief pod ever counts as
# failed).
STATUSES = {
    "running": (_tfjob([("Created", "True"), ("Running", "True")], {"active": 1}, False), "waiting"),
    "chief crash-looping": (
        _tfjob([("Created", "True"), ("Running", "True")], {"active": 1, "failed": 0}, False),
        "waiting",
    ),
    "backoff limit spent": (
        _tfjob([("Created", "True"), ("Running", "False"), ("Failed", "True")], {"active": 1, "failed": 0}, True),
        "failed",
    ),
    "failed before running": (_tfjob([("Created", "True"), ("Failed", "True")], {}, True), "failed"),
    "failed after suspend and restart": (
        _tfjob(
            [("Created", "True"), ("Suspended", "False"), ("Restarting", "True"), ("Failed", "True")],
            {"failed": 1},
            True,
        ),
        "failed",
    ),
    "succeeded": (
        _tfjob([("Created", "True"), ("Running", "False"), ("Succeeded", "True")], {"succeeded": 1}, True),
        "succeeded",
    ),
    "succeeded unseen running": (
        _tfjob([("Created", "True"), ("Succeeded", "True")], {"succeeded": 1}, True),
        "succeeded",
    ),
}


@pytest.mark.parametrize("case", list(STATUSES))
def test_train_step_follows_the_tfjob_conditions(stack, case):
    """The step's success and failure conditions, evaluated as Argo v4.0.6 evaluates them
    (`tests/infra/argo_conditions.py`), against each TFJob status the operator can write."""
    obj, expected = STATUSES[case]
    assert argo_conditions.outcome(_train_step(stack), obj) == expected


def test_train_step_conditions_parse_as_argo_parses_them(stack):
    """A gjson query (`status.conditions.#(type==Failed)`) is not a valid label key, so Argo rejects it when the
    step starts (argo-workflows#2288): the conditions must parse under Kubernetes' selector rules."""
    step = _train_step(stack)
    for key in ("successCondition", "failureCondition"):
        assert argo_conditions.parse(step[key])
    with pytest.raises(argo_conditions.SelectorError):
        argo_conditions.parse('status.conditions.#(type=="Failed").status == True')
    job = yaml.safe_load(step["manifest"])
    assert job["kind"] == "TFJob" and job["spec"]["runPolicy"]["backoffLimit"] >= 0


# ---- 3. the cache reads S3 over TLS ------------------------------------------------------------------------


def _s3_mount(rendered) -> dict:
    mounts = [m for d in rendered.find("Dataset") for m in d["spec"]["mounts"] if m["mountPoint"].startswith("s3://")]
    assert len(mounts) == 1, mounts
    return mounts[0]


def test_prod_cache_reads_s3_over_tls(prod):
    """Alluxio's S3 client uses plain HTTP unless `alluxio.underfs.s3.secure.http.enabled` is true (default
    false: Alluxio 2.x `core/common/src/main/java/alluxio/conf/PropertyKey.java`; Fluid 1.0.8's chart runs
    Alluxio 2.9.0, `charts/fluid/fluid/values.yaml`), and the prod bucket denies every request without TLS
    (`aws:SecureTransport` false), so without it every read gets 403 and the DataLoad never completes."""
    options = _s3_mount(prod)["options"]
    assert options["alluxio.underfs.s3.secure.http.enabled"] == "true"
    (policy,) = [r for r in prod.resources if r["type"] == "aws:s3/bucketPolicy:BucketPolicy"]
    assert '"aws:SecureTransport": "false"' in policy["inputs"]["policy"]


@pytest.mark.parametrize(
    "endpoint, secure",
    [(None, "true"), ("https://s3.example.com:9443", "true"), ("http://minio.kubeflow-e2e.svc:9000", "false")],
)
def test_cache_tls_follows_the_endpoint(endpoint, secure):
    from infra import fluid
    from infra.podspec import S3Access

    access = S3Access(bucket="b", region="us-east-1", endpoint=endpoint, secret_name="s3-credentials")
    options = fluid.dataset_mount(access, "s3://b/data/mnist")["options"]
    assert options["alluxio.underfs.s3.secure.http.enabled"] == secure
    assert options.get("alluxio.underfs.s3.endpoint") == endpoint


# ---- 5. no cache that nothing reads (and none without credentials) -----------------------------------------


def test_no_cache_unless_training_reads_it(renders):
    """With `data.source: s3` the TFJob reads S3 directly: no Dataset, runtime or DataLoad. Under IRSA such a
    cache would run Alluxio under Fluid's own ServiceAccount, which no role trusts, so it would have no
    credentials; `data.source: volume` with IRSA is refused by config."""
    r = renders.variant("prod-irsa")
    assert r.find("Dataset") == [] and r.find("AlluxioRuntime") == [] and r.find("DataLoad") == []
    assert all(
        "claimName" not in str(v)
        for v in r.one("TFJob")["spec"]["tfReplicaSpecs"]["Chief"]["template"]["spec"]["volumes"]
    )


def test_irsa_with_the_cache_is_refused():
    """Alluxio reads the bucket with keys from a Secret; IRSA gives none, so the pair is refused up front."""
    from infra.configcheck import ConfigError

    from .conftest import make_config

    arn = "arn:aws:iam::123456789012:oidc-provider/oidc.eks.us-east-1.amazonaws.com/id/EXAMPLE0123"
    with pytest.raises(ConfigError) as e:
        make_config(
            "prod",
            storage__mode="aws",
            storage__credentials="irsa",
            storage__oidcProviderArn=arn,
            fluid__enabled=True,
            data__source="volume",
            # prod takes only images with a registry host; give them so the IRSA rule is what refuses
            image__trainer="registry.example.com/kubeflow-e2e/trainer:0.1.0",
            image__sidecar="registry.example.com/kubeflow-e2e/sidecar:0.1.0",
            image__tensorboard="registry.example.com/kubeflow-e2e/tensorboard:0.1.0",
        )
    assert "data.source" in str(e.value) and "irsa" in str(e.value)


# ---- 8. no generated credential in plain text ---------------------------------------------------------------


def test_generated_credentials_are_secret_in_the_state(variant):
    """MinIO's credentials are generated by the program (`infra.minio`) and reach the engine only as secrets:
    the Secrets that keep them and every role Secret copied from them record "[secret]", which the mocks write
    only for a value marked secret (`render.mocks.clean`; the program marks each generated value, and
    pulumi_kubernetes a Secret's data). Where else they could leak, the next test looks."""
    if variant.outputs["endpoint"].startswith("http://minio."):
        held = [r for r in variant.by_type("kubernetes:core/v1:Secret") if {"stringData", "data"} & set(r["inputs"])]
        assert {"minio-root", "minio-users", "s3-credentials"} <= {r["inputs"]["metadata"]["name"] for r in held}
        for r in held:
            values = r["inputs"].get("stringData") or r["inputs"]["data"]
            assert set(values.values()) == {"[secret]"}, r["name"]
    # The mocks answer an access key's secret in plain text: "[secret]" here means the resource marks it.
    for r in variant.by_type("aws:iam/accessKey:AccessKey"):
        assert r["state"].get("secret") == "[secret]" and "secret" in r["options"]["additionalSecretOutputs"]


def test_generated_credentials_never_show_in_plain_text(declare, monkeypatch):
    """Every credential `infra.minio` generates, made recognisable here, is absent from all the program
    registers: a value the program forgot to mark secret would be recorded as it is, and found."""
    from infra import minio

    from .conftest import make_config, storage_component

    made: list[str] = []

    def recognisable() -> tuple[str, str]:
        pair = (f"madeuser{len(made):08d}", f"madepassword{len(made):028d}")
        made.extend(pair)
        return pair

    monkeypatch.setattr(minio, "generated_credential", recognisable)
    cfg = make_config()
    records = declare(lambda: storage_component(cfg).bucket)
    text = json.dumps(records)
    assert made and [v for v in made if v in text] == []


# ---- 6. the API token only in Argo's executor; restricted Pod Security in our namespace everywhere ---------

EXECUTOR = "workflow-executor"


def _pod_templates(rendered):
    """(where, pod spec) of every pod we start outside Argo's own settings: Deployments, Jobs, TFJobs (the
    stack's and the one inside the retraining template)."""
    for where, spec in pods.pod_specs(rendered):
        if not where.startswith(("Workflow/", "WorkflowTemplate/")) or "/train/" in where:
            yield where, spec


def test_only_argo_executor_holds_an_api_token(variant):
    """Argo v4.0.6 mounts the token of `executor.serviceAccountName` (from the Secret
    `<name>.service-account-token`) into its executor containers only: init, wait, and the main container of a
    `resource` step (`workflow/controller/workflowpod.go` newExecContainer, setupServiceAccount;
    `util/secrets/secret_name.go`), and with `automountServiceAccountToken: false` it requires that account.
    So the workflows' own containers, which run as `pipeline`, hold no token, and only the executor's account
    may create TFJobs."""
    ns = "kubeflow-e2e"
    for m in variant.find("ServiceAccount"):
        assert m["automountServiceAccountToken"] is False, m["metadata"]["name"]
    for where, spec in _pod_templates(variant):
        assert spec.get("automountServiceAccountToken") is False, where
    for wf in variant.find("Workflow"):  # runs a template, whose pod settings hold (a Workflow cannot set them)
        assert set(wf["spec"]) == {"workflowTemplateRef", "workflowMetadata"}, wf["metadata"]["name"]
    for kind in ("WorkflowTemplate",):
        for wf in variant.find(kind):
            spec = wf["spec"]
            assert spec["automountServiceAccountToken"] is False, wf["metadata"]["name"]
            assert spec["executor"] == {"serviceAccountName": EXECUTOR}
            assert spec["serviceAccountName"] == "pipeline"
    token = variant.one("Secret", f"{EXECUTOR}.service-account-token")
    assert token["type"] == "kubernetes.io/service-account-token"
    assert token["metadata"]["annotations"] == {"kubernetes.io/service-account.name": EXECUTOR}
    bound = {(s["kind"], s["name"]) for b in variant.find("RoleBinding") for s in b["subjects"]
             if b["metadata"]["namespace"] == ns}
    assert bound == {("ServiceAccount", EXECUTOR)}
    (role,) = [
        r for r in variant.find("Role") if r["metadata"]["namespace"] == ns and r["metadata"]["name"] == EXECUTOR
    ]
    assert {
        "apiGroups": ["kubeflow.org"],
        "resources": ["tfjobs"],
        "verbs": ["create", "get", "list", "watch", "patch", "delete"],
    } in role["rules"]


def test_restricted_pod_security_in_our_namespace(variant):
    """Our namespace enforces the restricted level in every stack, Fluid on or off: the cache runtime's
    privileged pods (host network, FUSE) run in their own namespace, and ours holds only the Dataset that
    references it (Fluid 1.0.8 `docs/en/samples/dataset_across_namespace_with_csi.md`)."""
    labels = variant.one("Namespace", "kubeflow-e2e")["metadata"]["labels"]
    for mode in ("enforce", "warn", "audit"):
        assert labels[f"pod-security.kubernetes.io/{mode}"] == "restricted"
    for kind in ("AlluxioRuntime", "DataLoad"):
        assert all(m["metadata"]["namespace"] == "kubeflow-e2e-cache" for m in variant.find(kind))
    for d in variant.find("Dataset"):
        if d["metadata"]["namespace"] == "kubeflow-e2e":
            assert d["spec"]["mounts"] == [{"name": "mnist", "mountPoint": "dataset://kubeflow-e2e-cache/mnist"}]


# ---- 7. one identity per role, rights by prefix --------------------------------------------------------------


def _role_policies(rendered) -> dict[str, dict]:
    """role -> its policy document, from the IAM policies (aws) or the MinIO policy files (minio)."""
    if rendered.outputs["endpoint"].startswith("http://minio."):
        data = rendered.one("ConfigMap", "minio-bucket-policy")["data"]
        return {name.removesuffix(".json"): json.loads(doc) for name, doc in data.items()}
    out = {}
    for p in rendered.by_type("aws:iam/policy:Policy"):
        role = "pipeline" if p["name"] == "bucket-access" else p["name"].removeprefix("bucket-access-")
        out[role] = json.loads(p["inputs"]["policy"])
    return out


# (role, action, key, allowed): what each role needs (the trainer's reads and writes, TensorBoard's and the
# sidecar's reads, Alluxio's, Argo's log archive) and what it must not do.
REQUESTS = [
    ("pipeline", "s3:PutObject", "data/mnist/manifest.json", True),
    ("pipeline", "s3:DeleteObject", "runs/baseline/checkpoints/88/_COMPLETE", True),
    ("pipeline", "s3:PutObject", "models/mnist/2/saved_model.pb", True),
    ("pipeline", "s3:PutObject", "argo/prepare-data/prepare-data/main.log", True),
    ("pipeline", "s3:PutObject", "elsewhere/x", False),
    ("serving", "s3:GetObject", "models/mnist/1/saved_model.pb", True),
    ("serving", "s3:PutObject", "models/mnist/1/saved_model.pb", False),
    ("serving", "s3:DeleteObject", "models/mnist/1/_COMPLETE", False),
    ("serving", "s3:GetObject", "runs/baseline/logs/chief-0/events", False),
    ("serving", "s3:GetObject", "data/mnist/manifest.json", False),
    ("tensorboard", "s3:GetObject", "runs/baseline/logs/chief-0/events", True),
    ("tensorboard", "s3:PutObject", "runs/baseline/logs/chief-0/events", False),
    ("tensorboard", "s3:GetObject", "models/mnist/1/saved_model.pb", False),
    ("cache", "s3:GetObject", "data/mnist/train-00000-of-00004.tfrecord", True),
    ("cache", "s3:PutObject", "data/mnist/manifest.json", False),
    ("cache", "s3:GetObject", "models/mnist/1/saved_model.pb", False),
    ("argo-server", "s3:GetObject", "argo/retrain-abc/retrain-abc-1/main.log", True),
    ("argo-server", "s3:GetObject", "models/mnist/1/saved_model.pb", False),
]
LISTS = [
    ("pipeline", "data/mnist/", True),
    ("serving", "models/mnist/", True),
    ("serving", "runs/", False),
    ("serving", "", False),
    ("tensorboard", "runs/", True),
    ("tensorboard", "models/mnist/", False),
    ("cache", "data/mnist", True),
]


@pytest.mark.parametrize("name", ["dev", "prod", "prod-irsa"])
def test_each_role_may_do_only_its_part(renders, name):
    """Training writes data, runs and models; serving, TensorBoard and the cache only read their prefix; no
    role but the pipeline writes or deletes. Evaluated by AWS's rules for Allow statements
    (`tests/infra/iam_eval.py`); MinIO applies the same policy language, `s3:prefix` on ListObjects
    included, as AWS does (minio/mc#2647)."""
    rendered = renders.variant(name)
    policies = _role_policies(rendered)
    bucket = rendered.outputs["bucket"]
    assert {"pipeline", "serving", "tensorboard"} <= set(policies)
    assert ("cache" in policies) == (name == "prod") and ("argo-server" in policies) == (name == "prod-irsa")
    for role, action, key, expected in REQUESTS:
        if role in policies:
            got = iam_eval.allowed(policies[role], action, f"arn:aws:s3:::{bucket}/{key}")
            assert got is expected, (role, action, key)
    for role, prefix, expected in LISTS:
        if role in policies:
            got = iam_eval.allowed(policies[role], "s3:ListBucket", f"arn:aws:s3:::{bucket}", {"s3:prefix": prefix})
            assert got is expected, (role, "list", prefix)


def test_each_pod_holds_only_its_roles_keys(stack):
    """The sync-model containers get the serving keys, TensorBoard its own, the cache its own in the cache
    namespace; TF Serving's container gets no S3 environment at all."""
    expected = {"sync-model": "s3-credentials-serving", "sync-model-once": "s3-credentials-serving"}
    expected["tensorboard"] = "s3-credentials-tensorboard"
    for where, c, _ in pods.containers(stack):
        refs = {
            e["valueFrom"]["secretKeyRef"]["name"] for e in c.get("env", []) if "secretKeyRef" in e.get("valueFrom", {})
        }
        if c["name"] == "tf-serving":
            assert "env" not in c, where
        elif c["name"] in expected:
            assert refs == {expected[c["name"]]}, where
        elif c["name"] not in ("minio", "mc"):
            assert refs <= {"s3-credentials"}, where
    for d in stack.find("Dataset"):
        for m in d["spec"]["mounts"]:
            for o in m.get("encryptOptions", []):
                assert o["valueFrom"]["secretKeyRef"]["name"] == "s3-credentials-cache"
                assert d["metadata"]["namespace"] == "kubeflow-e2e-cache"


def test_irsa_gives_each_account_its_own_role_and_none_to_tf_serving(renders):
    """Under IRSA the EKS pod identity webhook injects the role's token and variables into every container
    of a pod whose ServiceAccount carries `eks.amazonaws.com/role-arn`, except those named in the pod's
    `eks.amazonaws.com/skip-containers` annotation (amazon-eks-pod-identity-webhook README,
    `pkg/handler/handler.go`). Each account has its own role, and the Argo server one that reads `argo/`."""
    r = renders.variant("prod-irsa")
    arns = {
        sa: r.one("ServiceAccount", sa)["metadata"]["annotations"]["eks.amazonaws.com/role-arn"]
        for sa in ("pipeline", "serving", "tensorboard")
    }
    assert len(set(arns.values())) == 3
    meta = r.one("Deployment", "serving")["spec"]["template"]["metadata"]
    assert meta["annotations"]["eks.amazonaws.com/skip-containers"] == "tf-serving"
    # the rest are the scrape annotations (tests/infra/test_metrics.py)
    assert {k for k in meta["annotations"] if not k.startswith("prometheus.io/")} == {
        "eks.amazonaws.com/skip-containers"}
    server = argo_values(r)["server"]["serviceAccount"]
    assert server["name"] == "argo-workflows-server"
    role = server["annotations"]["eks.amazonaws.com/role-arn"].rsplit("/", 1)[1]
    (iam_role,) = [x for x in r.by_type("aws:iam/role:Role") if x["inputs"]["name"] == role]
    (statement,) = json.loads(iam_role["inputs"]["assumeRolePolicy"])["Statement"]
    assert (
        statement["Condition"]["StringEquals"]["oidc.eks.us-east-1.amazonaws.com/id/EXAMPLE0123:sub"]
        == "system:serviceaccount:argo:argo-workflows-server"
    )


# ---- 10. people who submit retrains ------------------------------------------------------------------------


def test_retrain_submitters_have_a_role(stack):
    """`argo submit --from workflowtemplate/...` without an Argo server reads the WorkflowTemplate and creates
    the Workflow with the user's own rights (argo-workflows v4.0.6 `pkg/apiclient/argo-kube-client.go`,
    `server/workflow/workflow_server.go` SubmitWorkflow); the stack declares a Role for that (and for
    following the run), grants nothing it does not need, and its outputs say how to bind it."""
    role = stack.one("Role", "retrain-submitter")
    rules = {(g, r): set(x["verbs"]) for x in role["rules"] for g in x["apiGroups"] for r in x["resources"]}
    assert {"get"} <= rules[("argoproj.io", "workflowtemplates")]
    assert {"create", "get", "watch"} <= rules[("argoproj.io", "workflows")]
    assert {"get", "list"} <= rules[("", "pods/log")]
    assert rules[("kubeflow.org", "tfjobs")] == {"get", "list", "watch"}
    assert ("", "secrets") not in rules and "create" not in rules[("", "pods")]
    assert all("*" not in verbs for verbs in rules.values())
    grant = stack.outputs["grantRetrain"]
    assert grant.startswith("kubectl -n kubeflow-e2e create rolebinding") and "--role retrain-submitter" in grant
