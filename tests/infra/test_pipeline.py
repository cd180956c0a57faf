"""What the stack promises across components: the order data -> train -> serve, the trainer's environment
contract, and the pod hardening every pod gets."""

from __future__ import annotations

import re

import pytest
import yaml

from infra.config import KEY_NAMES
from infra.configcheck import NS

from .pods import containers, env, pod_specs

PINNED = re.compile(r"^[^@\s]+(:[A-Za-z0-9_][A-Za-z0-9_.-]*|@sha256:[0-9a-f]{64})$")


def graph(rendered) -> dict[str, set[str]]:
    deps = {r["urn"]: set(r["dependencies"]) for r in rendered.resources}
    closed: dict[str, set[str]] = {}

    def visit(urn: str) -> set[str]:
        if urn not in closed:
            closed[urn] = set()
            for d in deps.get(urn, ()):
                closed[urn] |= {d} | visit(d)
        return closed[urn]

    for urn in deps:
        visit(urn)
    return closed


def urn(rendered, type_suffix: str, name: str | None = None) -> str:
    found = [
        r["urn"] for r in rendered.resources if r["type"].endswith(type_suffix) and (name is None or r["name"] == name)
    ]
    assert len(found) == 1, (type_suffix, name, found)
    return found[0]


def annotations(rendered, kind: str, name: str | None = None) -> dict:
    return rendered.one(kind, name)["metadata"].get("annotations", {})


def test_data_then_train_then_serve(stack):
    after = graph(stack)
    prep = urn(stack, ":Workflow")
    tfjob = urn(stack, ":TFJob")
    serving = urn(stack, "apps/v1:Deployment", "deployment-serving")
    assert prep in after[tfjob], "the TFJob must wait for data prep"
    assert tfjob in after[serving], "serving must wait for training"
    assert prep in after[serving]
    assert serving not in after[tfjob] and tfjob not in after[prep]
    # ... and `pulumi up` actually waits at each step, through the step's gate (infra/gate.py).
    assert urn(stack, "dynamic:Resource", "gate-prepare-data") in after[tfjob]
    assert urn(stack, "dynamic:Resource", "gate-tfjob") in after[serving]
    assert prep in after[urn(stack, "dynamic:Resource", "gate-prepare-data")]
    # Serving is awaited too: by its rollout gate, which fails fast on a stuck pod (tests/infra/test_failfast.py).
    assert serving in after[urn(stack, "dynamic:Resource", "gate-deployment-serving")]


def test_prod_preloads_the_dataset_between_data_and_train(prod):
    after = graph(prod)
    prep, load, tfjob = urn(prod, ":Workflow"), urn(prod, ":DataLoad"), urn(prod, ":TFJob")
    assert prep in after[load] and load in after[tfjob]
    assert urn(prod, ":Dataset", "dataset") in after[load] and urn(prod, ":AlluxioRuntime") in after[load]
    assert urn(prod, ":Dataset", "dataset-reference") in after[tfjob]


def test_each_step_waits_for_what_it_runs_on(stack):
    after = graph(stack)
    prep, tfjob = urn(stack, ":Workflow"), urn(stack, ":TFJob")
    assert urn(stack, "helm.sh/v4:Chart", "argo-workflows") in after[prep]
    assert urn(stack, "kustomize/v2:Directory") in after[tfjob]
    store = urn(stack, "batch/v1:Job") if stack.stack == "dev" else urn(stack, "s3/bucket:Bucket")
    assert store in after[prep] and store in after[urn(stack, "apps/v1:Deployment", "deployment-tensorboard")]
    assert urn(stack, "core/v1:Secret", "secret-s3-credentials") in after[prep]


def test_tensorboard_does_not_wait_for_training(stack):
    after = graph(stack)
    assert urn(stack, ":TFJob") not in after[urn(stack, "apps/v1:Deployment", "deployment-tensorboard")]


def test_serving_without_waiting_for_training(renders):
    r = renders.variant("dev-nowait")
    after = graph(r)
    assert urn(r, ":TFJob") not in after[urn(r, "apps/v1:Deployment", "deployment-serving")]
    assert annotations(r, "Deployment", "serving")["pulumi.com/skipAwait"] == "true"
    assert "pulumi.com/waitFor" not in annotations(r, "TFJob")


TRAINER_VARS = {
    "train": {"DATA_URL", "RUN_URL", "MODEL_URL"},
    "prepare-data": {"DATA_URL"},
    "evaluate": {"DATA_URL", "MODEL_URL"},
    "sync-model": {"MODEL_URL"},
    "check-parameters": None,  # reads only its arguments: no environment, no S3 identity
}


def test_trainer_environment_contract(variant):
    bucket = variant.outputs["bucket"]
    mode_aws = variant.outputs["endpoint"].endswith(".amazonaws.com")
    seen = set()
    for where, c, _ in containers(variant):
        cmd = c.get("command", [])
        if cmd[:3] != ["python", "-m", "trainer"]:
            continue
        command = cmd[3]
        seen.add(command)
        if TRAINER_VARS[command] is None:
            assert "env" not in c and "envFrom" not in c, where
            continue
        e = env(c)
        assert TRAINER_VARS[command] <= set(e), (where, set(e))
        for var in TRAINER_VARS[command]:
            value = e[var]["value"]
            assert value.startswith(f"s3://{bucket}/") or value == "file:///data/mnist", (where, var, value)
        assert e["AWS_REGION"]["value"] == "us-east-1"
        if mode_aws:
            assert "S3_ENDPOINT" not in e, where
        else:
            assert re.match(r"^https?://[^/]+$", e["S3_ENDPOINT"]["value"]), where
        keys = {k: e.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
        if _irsa(variant):
            assert keys == {"AWS_ACCESS_KEY_ID": None, "AWS_SECRET_ACCESS_KEY": None}, where
        else:
            # each role its own keys; an external endpoint comes with one key for all
            serving = command == "sync-model" and not _external(variant)
            secret = "s3-credentials-serving" if serving else "s3-credentials"
            for k, v in keys.items():
                assert v == {
                    "name": k,
                    "valueFrom": {"secretKeyRef": {"name": secret, "key": k}},
                }, where
    assert seen == set(TRAINER_VARS)


def _external(rendered) -> bool:
    return rendered.outputs["endpoint"] == "https://s3.example.com:9443"


def _irsa(rendered) -> bool:
    return any(r["type"] == "aws:iam/role:Role" for r in rendered.resources)


def test_urls_in_the_tfjob(stack):
    e = env(stack.one("TFJob")["spec"]["tfReplicaSpecs"]["Worker"]["template"]["spec"]["containers"][0])
    assert e["DATA_URL"]["value"] == stack.outputs["trainingDataUrl"]
    assert e["RUN_URL"]["value"] == stack.outputs["runUrl"]
    assert e["MODEL_URL"]["value"] == stack.outputs["modelUrl"]


def test_no_literal_credentials_anywhere(variant):
    for where, c, _ in containers(variant):
        for name, e in env(c).items():
            if re.search(r"KEY|SECRET|PASSWORD|TOKEN", name) and name != "AWS_REGION":
                assert "value" not in e and "secretKeyRef" in e.get("valueFrom", {}), (where, name)


def test_tensorboard_reads_the_current_run_on_s3(variant):
    """Its own run's logs, not every run's: TensorBoard's first load grows with the runs under its logdir."""
    (board,) = variant.one("Deployment", "tensorboard")["spec"]["template"]["spec"]["containers"]
    assert board["command"] == [
        "tensorboard",
        "--logdir",
        f"{variant.outputs['runUrl']}/logs/",
        "--bind_all",
        "--port",
        "6006",
    ]
    assert board["readinessProbe"]["httpGet"]["port"] == 6006
    assert board["image"].rpartition(":")[0].endswith("kubeflow-e2e/tensorboard")  # prod: behind a registry host


def test_pods_are_hardened(variant):
    specs = list(pod_specs(variant))
    assert len(specs) >= 6
    for where, spec in specs:
        sc = spec["securityContext"]
        assert sc["runAsNonRoot"] is True and sc["seccompProfile"] == {"type": "RuntimeDefault"}, where
        for c in [*spec.get("initContainers", []), *spec["containers"]]:
            csc = c["securityContext"]
            assert csc["allowPrivilegeEscalation"] is False, (where, c["name"])
            assert csc["readOnlyRootFilesystem"] is True, (where, c["name"])
            assert csc["capabilities"] == {"drop": ["ALL"]}, (where, c["name"])
            for part in ("requests", "limits"):
                # The GPU variants add nvidia.com/gpu (a limit) to the training containers, nothing else.
                kinds = set(c["resources"][part])
                assert {"cpu", "memory"} <= kinds <= {"cpu", "memory", "nvidia.com/gpu"}, (where, c["name"], part)


def test_argo_executor_is_hardened_too(variant):
    (chart,) = [r for r in variant.by_type("kubernetes:helm.sh/v4:Chart") if r["name"] == "argo-workflows"]
    executor = chart["inputs"]["values"]["executor"]
    assert executor["securityContext"]["capabilities"] == {"drop": ["ALL"]}  # see test_security for the rest
    assert set(executor["resources"]) == {"requests", "limits"}


def test_images_are_pinned(variant):
    images = {c["image"] for _, c, _ in containers(variant)}
    assert KEY_NAMES["image.serving"].default in images
    for image in images:
        assert PINNED.match(image) and not image.endswith(":latest"), image


def test_no_pod_of_ours_mounts_an_api_token(variant):
    """Every pod, the workflows' included, runs without a token (test_security: only Argo's executor has one)."""
    for where, spec in pod_specs(variant):
        assert spec.get("automountServiceAccountToken") is False, where


def own_policy(rendered, name: str) -> dict:
    (policy,) = [m for m in rendered.find("NetworkPolicy", name) if m["metadata"]["namespace"] == "kubeflow-e2e"]
    return policy


def test_network_policies(stack):
    names = {m["metadata"]["name"] for m in stack.find("NetworkPolicy")}
    assert {
        "default-deny",
        "allow-dns",
        "allow-s3",
        "allow-training-peers",
        "allow-apiserver",
    } <= names
    # With the cache on, its namespace has its own policies (tests/infra/test_pod_security.py)
    cache = {m["metadata"]["name"] for m in stack.find("NetworkPolicy") if m["metadata"]["namespace"] != "kubeflow-e2e"}
    assert cache == ({"default-deny", "allow-cache", "allow-s3"} if stack.stack == "prod" else set())
    assert not {"allow-serving", "allow-tensorboard"} & names  # port-forward only, unless access.fromNamespace
    deny = own_policy(stack, "default-deny")["spec"]
    assert deny == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    s3_pods = {"kubeflow-e2e.io/s3": "true"}
    for m in stack.find("Deployment") + stack.find("Job"):
        labels = m["spec"]["template"]["metadata"]["labels"]
        if m["metadata"]["name"] != "minio":
            assert s3_pods.items() <= labels.items(), m["metadata"]["name"]


@pytest.mark.parametrize("name, port", [("dev", 9000), ("prod", 443), ("dev-external", 9443)])
def test_s3_egress_matches_the_endpoint(renders, name, port):
    egress = own_policy(renders.variant(name), "allow-s3")["spec"]["egress"]
    assert egress[0]["ports"] == [{"protocol": "TCP", "port": port}]
    if name != "dev":  # off the node: never the cloud's metadata addresses
        assert {"ipBlock": {"cidr": "0.0.0.0/0", "except": ["169.254.0.0/16"]}} in egress[0]["to"]


def test_serving_pod(stack):
    spec = stack.one("Deployment", "serving")["spec"]["template"]["spec"]
    (init,) = spec["initContainers"]
    server, sidecar = spec["containers"]
    assert init["command"] == sidecar["command"] == ["python", "-m", "trainer", "sync-model"]
    assert init["args"][:2] == ["--dest", "/models/mnist"] and "--watch" not in init["args"]
    assert sidecar["args"][:2] == ["--dest", "/models/mnist"] and "--watch" in sidecar["args"]
    assert {p["containerPort"] for p in server["ports"]} == {8500, 8501}
    assert server["readinessProbe"]["httpGet"] == {"path": "/v1/models/mnist", "port": 8501}
    assert "--model_base_path=/models/mnist" in server["args"]
    shared = {v["name"] for v in spec["volumes"] if "emptyDir" in v}
    assert "models" in shared
    service = stack.one("Service", "serving")["spec"]
    # 9102: the sidecar's metrics, for a ServiceMonitor (tests/infra/test_metrics.py)
    assert service["type"] == "ClusterIP" and {p["port"] for p in service["ports"]} == {8500, 8501, 9102}


def test_tfjob_shape(stack):
    job = stack.one("TFJob")
    assert job["apiVersion"] == "kubeflow.org/v1"
    replicas = job["spec"]["tfReplicaSpecs"]
    assert set(replicas) == {"Chief", "Worker"}
    assert all(r["restartPolicy"] == "OnFailure" for r in replicas.values())
    workers = 1 if stack.stack == "dev" else 4
    # The operator sums restarts over all pods and one lost peer restarts each: 3 such incidents per job.
    assert job["spec"]["runPolicy"]["backoffLimit"] == 3 * (workers + 1)
    assert replicas["Worker"]["replicas"] == workers
    c = replicas["Chief"]["template"]["spec"]["containers"][0]
    assert c["name"] == "tensorflow" and c["ports"] == [{"name": "tfjob-port", "containerPort": 2222}]


def test_prod_mounts_the_dataset_read_only(prod):
    spec = prod.one("TFJob")["spec"]["tfReplicaSpecs"]["Worker"]["template"]["spec"]
    assert {"name": "data", "persistentVolumeClaim": {"claimName": "mnist", "readOnly": True}} in spec["volumes"]
    assert {"name": "data", "mountPath": "/data/mnist", "readOnly": True} in spec["containers"][0]["volumeMounts"]


def test_retraining_runs_check_prepare_train_evaluate(stack):
    spec = stack.one("WorkflowTemplate", "retrain-mnist")["spec"]
    entry = {t["name"]: t for t in spec["templates"]}[spec["entrypoint"]]
    assert [[s["name"] for s in step] for step in entry["steps"]] == [["check"], ["prepare"], ["train"], ["evaluate"]]
    train = {t["name"]: t for t in spec["templates"]}["train"]["resource"]
    assert train["action"] == "create" and "Failed" in train["failureCondition"]
    assert {p["name"] for p in spec["arguments"]["parameters"]} == {"epochs", "batch-size", "learning-rate"}


def test_namespace_pod_security(dev, prod):
    for r in (dev, prod):
        labels = r.one("Namespace", "kubeflow-e2e")["metadata"]["labels"]
        assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    # Fluid's cache runtime needs privileges: it runs in its own namespace, which says so.
    labels = prod.one("Namespace", "kubeflow-e2e-cache")["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "privileged"


def test_resources_come_from_the_known_packages(stack):
    assert all(
        r["type"].startswith(
            (f"{NS}:", "kubernetes:", "aws:", "pulumi:providers:", "pulumi-python:dynamic:")
        )
        for r in stack.resources
    )


def test_pods_start_after_their_account_rights_and_network_allows(stack):
    after = graph(stack)
    setup = [
        urn(stack, "RoleBinding", "rolebinding-executor"),
        urn(stack, "NetworkPolicy", "netpol-allow-s3"),
        urn(stack, "NetworkPolicy", "netpol-default-deny"),
        urn(stack, "ServiceAccount", "sa-pipeline"),
    ]
    for workload in (
        urn(stack, ":Workflow"),
        urn(stack, ":TFJob"),
        urn(stack, ":WorkflowTemplate", "workflowtemplate-retrain"),
        urn(stack, ":WorkflowTemplate", "workflowtemplate-prepare-data"),
        urn(stack, "apps/v1:Deployment", "deployment-serving"),
        urn(stack, "apps/v1:Deployment", "deployment-tensorboard"),
    ):
        assert set(setup) <= after[workload], workload


def test_services_wait_for_their_pods(stack):
    # pulumi awaits a Service until it has endpoints: serving's pods come only after training.
    after = graph(stack)
    for name in ("serving", "tensorboard"):
        assert urn(stack, "apps/v1:Deployment", f"deployment-{name}") in after[urn(stack, "Service", f"service-{name}")]


def test_no_voluntary_eviction_of_a_running_training_pod(stack):
    """The PodDisruptionBudget covers the pods of the stack's TFJob and of every retrain's TFJob, no other pod,
    and lets none of them be evicted while it runs (the operator fails a TFJob whose running pod is deleted);
    a pod that is not Ready may still go, so a broken job never holds a node's drain."""
    (pdb,) = stack.find("PodDisruptionBudget")
    spec = pdb["spec"]
    assert spec["maxUnavailable"] == 0 and spec["unhealthyPodEvictionPolicy"] == "AlwaysAllow"
    wanted = spec["selector"]["matchLabels"].items()

    def selected(pod_labels: dict) -> bool:
        return wanted <= pod_labels.items()

    retrain = yaml.safe_load(next(t for t in stack.one("WorkflowTemplate", "retrain-mnist")["spec"]["templates"]
                                  if t["name"] == "train")["resource"]["manifest"])
    for job in (stack.one("TFJob"), retrain):
        for replica in job["spec"]["tfReplicaSpecs"].values():
            assert selected(replica["template"]["metadata"]["labels"])
    others = [d["spec"]["template"]["metadata"]["labels"] for d in stack.find("Deployment") + stack.find("Job")]
    for wt in stack.find("WorkflowTemplate"):
        pod_level = wt["spec"].get("podMetadata", {}).get("labels", {})
        others += [{**pod_level, **t.get("metadata", {}).get("labels", {})} for t in wt["spec"]["templates"]
                   if "container" in t]
    assert others and not [o for o in others if selected(o)]
