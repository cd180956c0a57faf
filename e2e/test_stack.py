"""`pulumi preview`, `up` and `destroy` of the dev stack, for real: the Pulumi CLI and the kubernetes provider
built from Go modules, against a real one-node Kubernetes (e2e/node.py) on which the platform team installed
the real training operator and Argo (e2e/platform.py). `pulumi up` prepares the data in an Argo Workflow
pod, trains in the operator's TFJob pods, and serves the model; the tests read all of it back through the API
and the Services (docs/e2e.md, "End-to-end"). They run in file order on one stack: each step starts from the
state the one before left (run with -x).

The stack's own installs of the platform pieces are off (`*.install: false`: their charts and manifests come
from the network at deploy time); the platform team's installs stand in their place, as on a shared cluster.
"""

from __future__ import annotations

import base64
import concurrent.futures
import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

import pytest
from pulumi import automation as auto

from e2e import images
from e2e.conftest import NAMESPACE, get
from e2e.node import NODE_NAME
from infra.retraining import CRON_NAME as CRON_WORKFLOW

pytestmark = pytest.mark.timeout(1200)

ROOT = Path(__file__).resolve().parents[1]
STACK = "dev"
EPOCHS = 3
LONG_EPOCHS = 8  # the killed-worker test's training: a window of some 10 s to act in
OFF = {
    "operator.install": False,
    "argo.install": False,
    "fluid.install": False,
    "cluster.context": "kubeflow-e2e",
    # The stand-ins the e2e runs (docs/e2e.md): TF Serving's REST API, and MinIO from its newest served source.
    "image.serving": images.SERVING,
    "image.minio": images.PLATFORM["minio"][0],
    "image.mc": images.PLATFORM["mc"][0],
    # A short training on a 2-core node; serving polls often so the model shows up soon.
    "training.epochs": EPOCHS,
    "training.cpu": "250m",
    "serving.pollSeconds": 5,
}
TIMES: dict[str, float] = {}
TFJOB = "kubernetes:kubeflow.org/v1:TFJob"
WORKFLOW_TEMPLATE = "kubernetes:argoproj.io/v1alpha1:WorkflowTemplate"
WORKFLOW = "kubernetes:argoproj.io/v1alpha1:Workflow"
QUOTA = "kubernetes:core/v1:ResourceQuota"
GATE = "pulumi-python:dynamic:Resource"
DEPLOYMENT = "kubernetes:apps/v1:Deployment"
PART_OF = "app.kubernetes.io/part-of=kubeflow-e2e"
# Every kind the stack creates, as the API paths a `kubectl get -A -l part-of=...` would list.
OUR_KINDS = {
    "Namespace": "/api/v1/namespaces",
    "ServiceAccount": "/api/v1/serviceaccounts",
    "Secret": "/api/v1/secrets",
    "ConfigMap": "/api/v1/configmaps",
    "PersistentVolumeClaim": "/api/v1/persistentvolumeclaims",
    "Service": "/api/v1/services",
    "Pod": "/api/v1/pods",
    "Deployment": "/apis/apps/v1/deployments",
    "ReplicaSet": "/apis/apps/v1/replicasets",
    "Job": "/apis/batch/v1/jobs",
    "Role": "/apis/rbac.authorization.k8s.io/v1/roles",
    "RoleBinding": "/apis/rbac.authorization.k8s.io/v1/rolebindings",
    "NetworkPolicy": "/apis/networking.k8s.io/v1/networkpolicies",
    "Workflow": "/apis/argoproj.io/v1alpha1/workflows",
    "WorkflowTemplate": "/apis/argoproj.io/v1alpha1/workflowtemplates",
    "CronWorkflow": "/apis/argoproj.io/v1alpha1/cronworkflows",
    "TFJob": "/apis/kubeflow.org/v1/tfjobs",
    "ResourceQuota": "/api/v1/resourcequotas",
    "LimitRange": "/api/v1/limitranges",
    "PodDisruptionBudget": "/apis/policy/v1/poddisruptionbudgets",
}


def run(fn, **kwargs) -> tuple[object, str]:
    """Runs an Automation API call, streaming the CLI's own output; returns (result, output)."""
    lines: list[str] = []

    def out(line: str) -> None:
        lines.append(line)
        print(line, flush=True)

    result = fn(on_output=out, color="never", **kwargs)
    return result, "\n".join(lines)


def kind_of(urn: str) -> str:
    """`urn:pulumi:dev::proj::parent$kubernetes:apps/v1:Deployment::name` -> `kubernetes:apps/v1:Deployment`."""
    return urn.split("::")[2].split("$")[-1]


def k8s_state(engine) -> list[dict]:
    """The state's Kubernetes objects (custom resources the stack manages, not reads or providers)."""
    return [
        r
        for r in engine.state_resources(STACK)
        if r["type"].startswith("kubernetes:")
        and r.get("custom")
        and not r["type"].startswith("pulumi:providers:")
        and not r.get("external")
    ]


def uids(cluster, engine) -> dict[str, str]:
    """urn -> uid of the live object, for every Kubernetes object in the state."""
    out = {}
    for r in k8s_state(engine):
        obj = read_back(cluster, r)
        out[r["urn"]] = obj["metadata"]["uid"] if obj else "missing"
    return out


def read_back(cluster, res: dict) -> dict | None:
    o = res["outputs"]
    api_version, kind, meta = o["apiVersion"], o["kind"], o["metadata"]
    base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    plural = {"NetworkPolicy": "networkpolicies"}.get(kind, kind.lower() + "s")
    ns = f"/namespaces/{meta['namespace']}" if meta.get("namespace") else ""
    return get(cluster, f"{base}{ns}/{plural}/{meta['name']}")


def ours(cluster) -> dict[str, list[str]]:
    """Every object in the cluster labelled part-of=kubeflow-e2e, by kind."""
    found = {}
    for kind, path in OUR_KINDS.items():
        items = (get(cluster, f"{path}?labelSelector={PART_OF}") or {}).get("items", [])
        if items:
            found[kind] = [f"{i['metadata'].get('namespace', '')}/{i['metadata']['name']}" for i in items]
    return found


@pytest.fixture(scope="module")
def stack(engine, cluster, installed_platform, run_dir):
    # A platform team's static volume for MinIO's claim (no dynamic provisioner runs here); MinIO runs as a
    # non-root user and the kubelet does not chown a hostPath.
    pv = run_dir / "pv-0"
    pv.mkdir(mode=0o777)
    pv.chmod(0o777)
    cluster.api(
        "/api/v1/persistentvolumes",
        "POST",
        {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {"name": "e2e-pv-0"},
            "spec": {
                "capacity": {"storage": "20Gi"},
                "accessModes": ["ReadWriteOnce"],
                "persistentVolumeReclaimPolicy": "Retain",
                "hostPath": {"path": str(pv)},
            },
        },
    )
    return engine.stack(STACK, OFF)


def test_preview_lists_the_planned_creates(stack, cluster):
    result = stack.preview(json=True, color="never")
    plan = json.loads(result.stdout)
    ops = Counter(step["op"] for step in plan["steps"])
    creates = Counter(kind_of(step["urn"]) for step in plan["steps"] if step["op"] == "create")
    print(f"preview: {dict(ops)}; creates {dict(creates)}")
    assert plan["changeSummary"]["create"] == ops["create"]
    for kind in (
        "kubernetes:core/v1:Namespace",
        "kubernetes:rbac.authorization.k8s.io/v1:Role",
        "kubernetes:rbac.authorization.k8s.io/v1:RoleBinding",
        "kubernetes:core/v1:ServiceAccount",
        "kubernetes:networking.k8s.io/v1:NetworkPolicy",
        "kubernetes:core/v1:Secret",
        "kubernetes:apps/v1:Deployment",
        "kubernetes:core/v1:Service",
        "kubernetes:batch/v1:Job",
        "kubernetes:argoproj.io/v1alpha1:Workflow",
        "kubernetes:argoproj.io/v1alpha1:WorkflowTemplate",
        TFJOB,
    ):
        assert creates[kind] >= 1, f"preview plans no {kind}"
    assert creates["kubernetes:apps/v1:Deployment"] == 3  # MinIO, TensorBoard, serving
    # The CRDs the platform pieces would bring are read, not created.
    reads = {step["urn"].rsplit("::", 1)[1] for step in plan["steps"] if step["op"] == "read"}
    assert {
        "crd-tfjobs.kubeflow.org-needed-as-operator.install-is-false",
        "crd-workflows.argoproj.io-needed-as-argo.install-is-false",
    } <= reads
    assert get(cluster, f"/api/v1/namespaces/{NAMESPACE}") is None, "a preview created something"


def test_up_creates_everything(stack, cluster, engine):
    t0 = time.monotonic()
    TIMES["up_started"] = t0
    result, out = run(stack.up)
    print(f"pulumi up: {time.monotonic() - t0:.1f} s")
    assert result.summary.result == "succeeded"
    created = result.summary.resource_changes["create"]
    assert re.search(rf"\+ {created} created", out), "the CLI's own summary line is missing"
    # Every Kubernetes object the engine recorded exists in the API server, with the uid it recorded.
    state = k8s_state(engine)
    assert len(state) >= 25
    for res in state:
        live = read_back(cluster, res)
        assert live is not None, f"{res['urn']} is in the state but not in the cluster"
        assert live["metadata"]["uid"] == res["outputs"]["metadata"]["uid"]
    found = ours(cluster)
    for kind in (
        "Namespace",
        "ServiceAccount",
        "Secret",
        "ConfigMap",
        "PersistentVolumeClaim",
        "Service",
        "Deployment",
        "Job",
        "Role",
        "RoleBinding",
        "NetworkPolicy",
        "Workflow",
        "WorkflowTemplate",
        "TFJob",
    ):
        assert kind in found, f"no {kind} of ours in the cluster"
    assert sorted(found["Deployment"]) == [f"{NAMESPACE}/{n}" for n in ("minio", "serving", "tensorboard")]
    ns = get(cluster, f"/api/v1/namespaces/{NAMESPACE}")
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    # Pods were admitted under Pod Security "restricted" and their containers run on the node.
    for name in ("minio", "serving", "tensorboard"):
        d = get(cluster, f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/{name}")
        assert d["status"].get("availableReplicas", 0) >= 1, f"deployment {name} not available"
    job = get(cluster, f"/apis/batch/v1/namespaces/{NAMESPACE}/jobs/minio-bucket")
    assert job["status"].get("succeeded") == 1
    # Stack outputs, as the engine recorded them.
    outputs = {k: v.value for k, v in result.outputs.items()}
    assert outputs["namespace"] == NAMESPACE and outputs["bucket"] == "kubeflow-e2e-dev"
    assert outputs["endpoint"] == f"http://minio.{NAMESPACE}.svc:9000"
    assert outputs["tfjobName"] == "mnist-baseline"
    assert outputs["dataUrl"] == "s3://kubeflow-e2e-dev/data/mnist"
    assert outputs["servingUrl"] == f"http://serving.{NAMESPACE}.svc:8501"


def test_secrets_are_encrypted_in_the_state(stack, cluster, engine):
    secret = get(cluster, f"/api/v1/namespaces/{NAMESPACE}/secrets/minio-root")
    password = base64.b64decode(secret["data"]["MINIO_ROOT_PASSWORD"]).decode()
    pipeline = get(cluster, f"/api/v1/namespaces/{NAMESPACE}/secrets/s3-credentials")
    key = base64.b64decode(pipeline["data"]["AWS_SECRET_ACCESS_KEY"]).decode()
    assert len(password) == 40 and len(key) == 40
    # The role's Secret holds the very key the bucket Job gives MinIO (both from minio-users).
    users = get(cluster, f"/api/v1/namespaces/{NAMESPACE}/secrets/minio-users")
    assert base64.b64decode(users["data"]["pipeline.key"]).decode() == key
    text = engine.state_file(STACK).read_text()
    for value in (password, key, secret["data"]["MINIO_ROOT_PASSWORD"]):
        assert value not in text, "a credential is in the state file in clear"
    recorded = next(r for r in k8s_state(engine) if r["outputs"]["metadata"]["name"] == "minio-root")
    assert "ciphertext" in recorded["outputs"]["data"], "the Secret's data is not a Pulumi secret in the state"


def pods(cluster, selector: str) -> list[dict]:
    return get(cluster, f"/api/v1/namespaces/{NAMESPACE}/pods?labelSelector={selector}")["items"]


def log(cluster, pod: str, container: str) -> str:
    return cluster.api(f"/api/v1/namespaces/{NAMESPACE}/pods/{pod}/log?container={container}", text=True)["raw"]


def test_awaits_order_data_prep_training_serving(stack, cluster):
    """What the real controllers recorded: data prep finished before the TFJob was created, and the TFJob
    succeeded before serving was created (timestamps have one-second resolution)."""
    wf = get(cluster, f"/apis/argoproj.io/v1alpha1/namespaces/{NAMESPACE}/workflows/prepare-data")
    tfjob = get(cluster, f"/apis/kubeflow.org/v1/namespaces/{NAMESPACE}/tfjobs/mnist-baseline")
    serving = get(cluster, f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/serving")
    assert wf["status"]["phase"] == "Succeeded"
    succeeded = next(c for c in tfjob["status"]["conditions"] if c["type"] == "Succeeded")
    assert succeeded["status"] == "True"
    assert wf["status"]["finishedAt"] <= tfjob["metadata"]["creationTimestamp"], "TFJob before data prep ended"
    assert succeeded["lastTransitionTime"] <= serving["metadata"]["creationTimestamp"], "serving before training"
    job = get(cluster, f"/apis/batch/v1/namespaces/{NAMESPACE}/jobs/minio-bucket")
    assert job["status"]["completionTime"] <= wf["metadata"]["creationTimestamp"]


def events_of(cluster, name_prefix: str) -> list[dict]:
    """The namespace's events about pods whose name starts with `name_prefix`, oldest first."""
    items = get(cluster, f"/api/v1/namespaces/{NAMESPACE}/events")["items"]
    found = [e for e in items if e["involvedObject"]["kind"] == "Pod"
             and e["involvedObject"]["name"].startswith(name_prefix)]
    return sorted(found, key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or "")


def test_data_prep_ran_in_a_pod_with_argos_executor(stack, cluster):
    """The Workflow's pod is gone (podGC OnWorkflowSuccess); Argo's node status and the kubelet's events for
    that pod remain: the executor reported the step's exit code, and the kubelet ran argoexec's init and wait
    containers beside our trainer image's main container."""
    wf = get(cluster, f"/apis/argoproj.io/v1alpha1/namespaces/{NAMESPACE}/workflows/prepare-data")
    steps = [n for n in wf["status"]["nodes"].values() if n["type"] == "Pod"]
    assert steps and all(n["phase"] == "Succeeded" for n in steps), steps
    assert all((n.get("outputs") or {}).get("exitCode") == "0" for n in steps), "the executor reported no exit code"
    assert {n.get("hostNodeName") for n in steps} == {NODE_NAME}
    events = events_of(cluster, "prepare-data")
    # The kubelet names the container in the event's fieldPath: spec.initContainers{init}, spec.containers{main}.
    lines = [f"{e['involvedObject'].get('fieldPath', 'pod')} {e['reason']}: {e['message']}" for e in events]
    print("data prep pod, the kubelet's events:\n  " + "\n  ".join(lines))
    text = "\n".join(lines)
    assert images.PLATFORM["argoexec"][0] in text and "kubeflow-e2e/trainer:0.1.0" in text, text
    for container in ("init", "wait", "main"):
        assert re.search(rf"\{{{container}\}} Started:", text), f"no {container} container started"


def test_training_ran_in_the_operators_pods_with_tf_config(stack, cluster):
    """The operator's TF_CONFIG reached each process. A worker still running when the chief succeeded is deleted
    by the operator (`cleanPodPolicy: Running`); then the kubelet's events show that its container ran."""
    found = {p["metadata"]["labels"]["training.kubeflow.org/replica-type"]: p
             for p in pods(cluster, "training.kubeflow.org/job-name=mnist-baseline")}
    assert "chief" in found and set(found) <= {"chief", "worker"}, sorted(found)
    for kind, pod in found.items():
        env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0].get("env", [])}
        tf_config = json.loads(env["TF_CONFIG"])
        assert tf_config["task"]["type"] == kind and set(tf_config["cluster"]) == {"chief", "worker"}
        assert pod["status"]["phase"] == "Succeeded"
    if "worker" not in found:
        worker = "mnist-baseline-worker-0"
        text = "\n".join(f"{e['involvedObject'].get('fieldPath', 'pod')} {e['reason']}: {e['message']}"
                         for e in events_of(cluster, worker))
        print(f"{worker} was deleted when the chief succeeded; the kubelet's events:\n  {text}")
        assert re.search(r"\{tensorflow\} Started:", text), text
    chief = found["chief"]["metadata"]["name"]
    lines = [ln for ln in log(cluster, chief, "tensorflow").splitlines() if re.search(r"\bepoch\b", ln, re.I)]
    print("chief's epoch lines (pod log through the API):\n  " + "\n  ".join(lines))
    assert len([ln for ln in lines if re.search(r"epoch\s+\d+", ln, re.I)]) >= EPOCHS


def service_ip(cluster, name: str) -> str:
    return get(cluster, f"/api/v1/namespaces/{NAMESPACE}/services/{name}")["spec"]["clusterIP"]


def s3_env(cluster) -> dict[str, str]:
    """The pipeline's S3 identity, reaching MinIO through its Service (the tests run in the node's namespace)."""
    data = get(cluster, f"/api/v1/namespaces/{NAMESPACE}/secrets/s3-credentials")["data"]
    env = {k: base64.b64decode(v).decode() for k, v in data.items()}
    return {**env, "S3_ENDPOINT": f"http://{service_ip(cluster, 'minio')}:9000", "AWS_REGION": "us-east-1"}


def test_the_model_is_in_the_bucket_and_served(stack, cluster):
    import boto3

    env = s3_env(cluster)
    s3 = boto3.client(
        "s3",
        endpoint_url=env["S3_ENDPOINT"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name="us-east-1",
    )
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="kubeflow-e2e-dev", Prefix="models/").get("Contents", [])]
    versions = sorted({k.split("/")[2] for k in keys if k.endswith("/_COMPLETE")})
    print(f"model versions in the bucket: {versions}")
    assert versions
    # Each version carries the chief's evaluation, and the serving pod's sync-model promoted one through the
    # gate (its first run, the init container, prints its decisions as JSON).
    assert all(any(k.endswith(f"/{v}/_EVAL.json") for k in keys) for v in versions), keys
    [pod] = pods(cluster, "app.kubernetes.io/component=serving")
    lines = [ln for ln in log(cluster, pod["metadata"]["name"], "sync-model-once").splitlines() if ln.startswith("{")]
    gate = json.loads(lines[-1])["gate"]
    print(f"serving's promotion gate: min accuracy {gate['min_accuracy']}, promoted {gate['promoted']}")
    assert gate["promoted"] and all(acc is not None and acc >= float(gate["min_accuracy"])
                                    for acc in gate["promoted"].values()), gate
    # TF Serving's stand-in answers through the Service.
    server = f"http://{service_ip(cluster, 'serving')}:8501"
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(f"{server}/v1/models/mnist", timeout=5) as resp:
                status = json.loads(resp.read())
            if status["model_version_status"][0]["state"] == "AVAILABLE":
                break
        except (OSError, KeyError, IndexError, ValueError):
            pass
        assert time.monotonic() < deadline, "serving never loaded a version"
        time.sleep(2)
    proc = subprocess.run(
        [sys.executable, "-m", "trainer", "predict", "--server", server, "--model", "mnist",
         "--data-url", "s3://kubeflow-e2e-dev/data/mnist"],
        env={**os.environ, **env},
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=300,
    )
    print(f"predict through the serving Service ({server}): {proc.stdout.strip()}")
    assert proc.returncode == 0, proc.stdout
    assert re.search(r"error rate", proc.stdout, re.I)
    if "up_started" in TIMES:
        print(f"time to a served model: {time.monotonic() - TIMES['up_started']:.1f} s from the start of pulumi up "
              "to the first prediction answered through the serving Service")


def test_tensorboard_shows_the_runs_scalars(stack, cluster):
    base = f"http://{service_ip(cluster, 'tensorboard')}:6006"
    deadline = time.monotonic() + 180
    tags: dict = {}
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{base}/data/plugin/scalars/tags", timeout=10) as resp:
                tags = json.loads(resp.read())
            if any(tags.values()):
                break
        except OSError:
            pass
        time.sleep(3)
    names = sorted({t for run in tags.values() for t in run})
    print(f"TensorBoard ({base}) scalar tags: {dict((r, sorted(t)) for r, t in tags.items())}")
    assert names, "TensorBoard lists no scalars"


def secret_data(cluster) -> dict[str, dict]:
    names = ("minio-root", "minio-users", "s3-credentials")
    return {n: get(cluster, f"/api/v1/namespaces/{NAMESPACE}/secrets/{n}")["data"] for n in names}


def test_second_preview_expects_no_changes(stack, cluster, engine):
    before, credentials = uids(cluster, engine), secret_data(cluster)
    _, out = run(stack.preview, expect_no_changes=True)
    assert re.search(r"\b\d+ unchanged", out)
    result, out = run(stack.up)
    # Only the platform CRDs are read again; nothing else is touched.
    assert set(result.summary.resource_changes) <= {"same", "read"}, result.summary.resource_changes
    assert uids(cluster, engine) == before
    # The program drew new credentials on both runs; the engine kept the first ones.
    assert secret_data(cluster) == credentials


def test_more_workers_replace_the_tfjob_and_nothing_else(stack, cluster, engine):
    """The TFJob is replaced; the retraining WorkflowTemplate, which embeds a TFJob with the same worker
    count, is updated in place (same uid). Data prep writes `rules.shards_for(processes)` shards, so when that
    count changes the data-prep Workflow and its gate are replaced too (the data is re-sharded); TensorBoard,
    which reads the current run's logs, follows the new run; nothing else changes."""
    from common import rules

    reshard = rules.shards_for(2) != rules.shards_for(3)
    before = uids(cluster, engine)
    stack.set_config("kubeflow-e2e:workers", auto.ConfigValue(value="2"))
    plan = json.loads(stack.preview(json=True, color="never").stdout)
    changed = {(kind_of(s["urn"]), s["op"]) for s in plan["steps"] if s["op"] not in ("same", "read")}
    print(f"planned changes: {sorted(changed)}")
    assert {op for kind, op in changed if kind == TFJOB} <= {"replace", "create-replacement", "delete-replaced"}
    # TensorBoard reads the current run's logs, and the run's digest covers the process count: its Deployment
    # is updated in place to the new run's folder.
    # The namespace's quota is sized from the processes, so it is updated too. The TFJob's gate is replaced
    # with it, and TensorBoard's gate with its Deployment's new generation (a new rollout to check).
    expected = {(WORKFLOW_TEMPLATE, "update"), (DEPLOYMENT, "update"), (QUOTA, "update"), (GATE, "replace")}
    assert [s["urn"].rsplit("::", 1)[1] for s in plan["steps"] if kind_of(s["urn"]) == DEPLOYMENT
            and s["op"] == "update"] == ["deployment-tensorboard"]
    if reshard:
        expected |= {(WORKFLOW, "replace")}
    assert {(kind, op) for kind, op in changed if kind != TFJOB} == expected
    result, out = run(stack.up)
    changes = {k: v for k, v in result.summary.resource_changes.items() if k not in ("same", "read")}
    # The gates (dynamic resources) after a replaced object are replaced with it.
    planned = sum(1 for s in plan["steps"] if s["op"] == "replace")
    # the retrain template, TensorBoard and the quota; resharded: the data-prep template as well
    assert changes == {"replace": planned, "update": 3 + reshard}, result.summary.resource_changes
    assert re.search(rf"\+-{planned} replaced", out)
    after = uids(cluster, engine)
    tfjob = next(u for u in after if kind_of(u) == TFJOB)
    assert after[tfjob] != before[tfjob]
    redone = {u for u in after if kind_of(u) == TFJOB or (reshard and kind_of(u) == WORKFLOW)}
    assert all(after[u] != before[u] for u in redone)
    assert {u: v for u, v in after.items() if u not in redone} == {u: v for u, v in before.items() if u not in redone}
    live = get(cluster, f"/apis/kubeflow.org/v1/namespaces/{NAMESPACE}/tfjobs/mnist-baseline")
    assert live["spec"]["tfReplicaSpecs"]["Worker"]["replicas"] == 2


TFJOB_PATH = f"/apis/kubeflow.org/v1/namespaces/{NAMESPACE}/tfjobs/mnist-baseline"
REPLICA_TYPE, REPLICA_INDEX = "training.kubeflow.org/replica-type", "training.kubeflow.org/replica-index"


def up_in_background(stack) -> tuple[concurrent.futures.Future, concurrent.futures.Executor]:
    """`pulumi up` in a thread (its output streams as usual), so the test can act on the cluster meanwhile."""
    pool = concurrent.futures.ThreadPoolExecutor(1)
    return pool.submit(run, stack.up), pool


def new_training_pods(cluster, old_uid: str, deadline: float, up: concurrent.futures.Future) -> dict[str, dict]:
    """The replaced TFJob's pods by replica (`chief-0`, `worker-0`, ...), once the operator made them all;
    raises what `up` raised if it ended first."""
    while True:
        if up.done():
            up.result()
        job = get(cluster, TFJOB_PATH)
        if job and job["metadata"]["uid"] != old_uid:
            processes = sum(r["replicas"] for r in job["spec"]["tfReplicaSpecs"].values())
            found = {f"{p['metadata']['labels'][REPLICA_TYPE]}-{p['metadata']['labels'][REPLICA_INDEX]}": p
                     for p in pods(cluster, "training.kubeflow.org/job-name=mnist-baseline")
                     if any(o["uid"] == job["metadata"]["uid"] for o in p["metadata"].get("ownerReferences", []))}
            if len(found) == processes:
                return found
        assert time.monotonic() < deadline, "the replaced TFJob's pods never appeared"
        time.sleep(1)


def restarts(pod: dict) -> int:
    return sum(c.get("restartCount", 0) for c in pod["status"].get("containerStatuses") or [])


def test_a_worker_is_not_evicted_and_a_killed_one_does_not_fail_the_training(stack, cluster):
    """Mid-training (the chief's second epoch; more epochs give the test a window): evicting a worker, as
    `kubectl drain` does, is refused by the stack's PodDisruptionBudget (the operator would fail the TFJob for a
    running pod deleted); then the worker's container is killed (SIGKILL, as the OOM killer does). It restarts
    in place, its peers lose it, exit 2 and restart too, and all resume from the last checkpoint; the restarts
    summed over the pods stay under `runPolicy.backoffLimit` (`training.backoffLimit` times the processes), so
    the TFJob and `pulumi up` succeed."""
    old = get(cluster, TFJOB_PATH)["metadata"]["uid"]
    stack.set_config("kubeflow-e2e:training.epochs", auto.ConfigValue(value=str(LONG_EPOCHS)), path=True)
    future, pool = up_in_background(stack)
    try:
        deadline = time.monotonic() + 300
        found = new_training_pods(cluster, old, deadline, future)
        chief = found["chief-0"]["metadata"]["name"]
        while not re.search(r"epoch 2/", log_so_far(cluster, chief, "tensorflow")):
            assert not future.done() and time.monotonic() < deadline, "training never reached its second epoch"
            time.sleep(1)
        worker = found["worker-0"]["metadata"]
        code, said = evict(cluster, worker["name"])
        print(f"evicting {worker['name']} during the chief's second epoch: {code} {said}")
        assert code == 429 and "disruption budget" in said, (code, said)
        cluster.ctr("tasks", "kill", "-s", "SIGKILL", running_container(cluster, worker["name"]))
        print(f"killed the container of {worker['name']} (SIGKILL)")
        # Seen while training goes on: the operator deletes a worker still running when the chief succeeds.
        while restarts(pod := get(cluster, f"/api/v1/namespaces/{NAMESPACE}/pods/{worker['name']}")) < 1:
            assert not future.done() and time.monotonic() < deadline + 120, "the killed worker never restarted"
            time.sleep(1)
        assert pod["metadata"]["uid"] == worker["uid"], "the worker's pod was replaced, not restarted"
        result, _ = future.result(timeout=600)
    finally:
        pool.shutdown(wait=True)
    assert result.summary.result == "succeeded"
    job = get(cluster, TFJOB_PATH)
    assert condition(job, "Succeeded")
    now = {p["metadata"]["name"]: p for p in pods(cluster, "training.kubeflow.org/job-name=mnist-baseline")}
    counts = {worker["name"]: restarts(pod)} | {name: restarts(p) for name, p in now.items()}
    limit = job["spec"]["runPolicy"]["backoffLimit"]
    print(f"restarts by pod: {counts}, {sum(counts.values())} in all (backoffLimit {limit})")
    assert counts[worker["name"]] >= 1 and sum(counts.values()) < limit
    resumed = re.findall(r"resumed from checkpoint step \d+", log(cluster, chief, "tensorflow"))
    print(f"the chief's restarted process: {resumed}")
    assert resumed


def evict(cluster, pod: str) -> tuple[int, str]:
    """An Eviction of `pod` (what `kubectl drain` sends); returns (HTTP status, the API server's message)."""
    body = {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": pod, "namespace": NAMESPACE}}
    try:
        cluster.api(f"/api/v1/namespaces/{NAMESPACE}/pods/{pod}/eviction", "POST", body)
        return 201, "evicted"
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}").get("message", "")


def test_a_failed_training_runs_again_with_the_command_up_prints(stack, cluster, engine):
    """With `training.backoffLimit: 0` one restart fails the TFJob: `pulumi up` then fails naming it and the
    command that runs it again. A plain `pulumi up` finds it Failed at once (it had failed before); the printed
    `pulumi up --replace '<urn>'` deletes and recreates it, and that training succeeds."""
    old = get(cluster, TFJOB_PATH)["metadata"]["uid"]
    # Back to the short training too: the job is replaced by this change anyway, and its rerun is then quick.
    stack.set_all_config({"kubeflow-e2e:training.backoffLimit": auto.ConfigValue(value="0"),
                          "kubeflow-e2e:training.epochs": auto.ConfigValue(value=str(EPOCHS))}, path=True)
    future, pool = up_in_background(stack)
    try:
        deadline = time.monotonic() + 300
        found = new_training_pods(cluster, old, deadline, future)
        worker = found["worker-0"]["metadata"]["name"]
        while not (cid := running_container(cluster, worker)):
            assert not future.done() and time.monotonic() < deadline, "the worker never ran"
            time.sleep(1)
        cluster.ctr("tasks", "kill", "-s", "SIGKILL", cid)
        print(f"killed the container of {worker} (SIGKILL, as the OOM killer would)")
        with pytest.raises(auto.CommandError) as err:
            future.result(timeout=600)
    finally:
        pool.shutdown(wait=True)
    text = str(err.value)
    urns = re.findall(r"pulumi up --replace '([^']+)'", text)
    print(f"pulumi up with backoffLimit 0 and a killed worker: {first_line(text, '--replace')}")
    assert urns and kind_of(urns[0]) == TFJOB, text
    assert condition(get(cluster, TFJOB_PATH), "Failed")
    t0 = time.monotonic()
    with pytest.raises(auto.CommandError) as again:
        run(stack.up)
    print(f"a plain pulumi up after it, {time.monotonic() - t0:.0f} s: {first_line(str(again.value), '--replace')}")
    assert "it had already failed before this `pulumi up`" in str(again.value)
    failed = get(cluster, TFJOB_PATH)["metadata"]["uid"]
    result, _ = run(stack.up, replace=urns[:1])
    assert result.summary.result == "succeeded"
    job = get(cluster, TFJOB_PATH)
    assert job["metadata"]["uid"] != failed
    assert condition(job, "Succeeded")


def log_so_far(cluster, pod: str, container: str) -> str:
    """The container's log; '' while the kubelet has none (the container has not started)."""
    try:
        return log(cluster, pod, container)
    except urllib.error.HTTPError:
        return ""


def running_container(cluster, pod: str) -> str | None:
    """The containerd ID of the pod's running container, or None while it is not running."""
    obj = get(cluster, f"/api/v1/namespaces/{NAMESPACE}/pods/{pod}") or {"status": {}}
    for c in obj["status"].get("containerStatuses") or []:
        if "running" in (c.get("state") or {}) and c.get("containerID"):
            return c["containerID"].split("://", 1)[1]
    return None


def condition(job: dict, kind: str) -> bool:
    return any(c["type"] == kind and c["status"] == "True" for c in job["status"].get("conditions") or [])


def first_line(text: str, needle: str) -> str:
    return next((ln.strip() for ln in text.splitlines() if needle in ln), text[:300])


def test_argo_runs_no_injected_parameter_and_no_inline_workflow(stack, cluster):
    """What a `retrain-submitter` can create through the API, judged on the real node. A Workflow of the retrain
    template with a newline in `epochs` (which, pasted into the TFJob manifest, would add an `image:`): the
    controller does not check the enum, so the template's first step does, and the Workflow fails there,
    before any TFJob exists. The same Workflow with `entrypoint: train` (allowed) skips that step: the value
    reaches the manifest only through `asInt`, which fails on it and leaves its own text there, which the API
    server refuses as a label value, so no TFJob is made; with the template's own values it makes its TFJob,
    each flag a number. A Workflow with templates of its own: the controller refuses it (templateReferencing
    Secure) and runs no pod."""
    base = f"/apis/argoproj.io/v1alpha1/namespaces/{NAMESPACE}/workflows"
    injected = {"workflowTemplateRef": {"name": "retrain-mnist"},
                "arguments": {"parameters": [{"name": "epochs", "value": "1\n      image: evil/trainer:latest"}]}}
    inline = {"entrypoint": "main", "templates": [{"name": "main", "container": {
        "image": "kubeflow-e2e/trainer:0.1.0", "command": ["true"]}}]}
    skipping = {**injected, "entrypoint": "train"}  # starts at the TFJob step, past check-parameters
    names = {}
    for case, spec in (("injected", injected), ("inline", inline), ("entrypoint", skipping)):
        body = {"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow",
                "metadata": {"generateName": f"e2e-{case}-", "namespace": NAMESPACE}, "spec": spec}
        names[case] = cluster.api(base, "POST", body)["metadata"]["name"]
    ended = {}
    for case, name in names.items():
        deadline = time.monotonic() + 180
        while (wf := get(cluster, f"{base}/{name}")) and wf.get("status", {}).get("phase") not in ("Failed", "Error"):
            assert time.monotonic() < deadline, (case, wf.get("status"))
            time.sleep(2)
        ended[case] = wf
        nodes = [f"{n.get('templateName')} {n['phase']}: {n.get('message', '')}"
                 for n in (wf["status"].get("nodes") or {}).values() if n.get("type") != "Steps"]
        print(f"the {case} Workflow: {wf['status']['phase']}: {wf['status'].get('message', '')}; nodes: {nodes}")
    ran = {n["templateName"]: n for n in ended["injected"]["status"]["nodes"].values() if n["type"] == "Pod"}
    assert set(ran) == {"check-parameters"} and ran["check-parameters"]["phase"] == "Failed", ran
    [pod] = pods(cluster, f"workflows.argoproj.io/workflow={names['injected']}")
    said = log(cluster, pod["metadata"]["name"], "main")
    print(f"its check-parameters step said: {said.strip()}")
    assert "error: parameter epochs is '1\\n      image: evil/trainer:latest'" in said, said
    assert not [n for n in (ended["inline"]["status"].get("nodes") or {}).values() if n["type"] == "Pod"]
    assert "workflowTemplateRef" in ended["inline"]["status"].get("message", ""), ended["inline"]["status"]
    # Started at the train step, the value reaches the manifest only through `asInt`, which fails on it and
    # leaves its own text, which the API server refuses as the TFJob's label value.
    said = ended["entrypoint"]["status"].get("message", "")
    assert "metadata.labels: Invalid value" in said and "evil" not in said, ended["entrypoint"]["status"]
    tfjobs = get(cluster, f"/apis/kubeflow.org/v1/namespaces/{NAMESPACE}/tfjobs")["items"]
    assert [j["metadata"]["name"] for j in tfjobs] == ["mnist-baseline"]
    assert not [j for j in tfjobs if "evil" in json.dumps(j)], "an injected image reached a TFJob"
    for name in names.values():
        cluster.api(f"{base}/{name}", "DELETE")
    # The same route with the template's own values: the expressions make numbers of them and the TFJob is made.
    body = {"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow",
            "metadata": {"generateName": "e2e-valid-", "namespace": NAMESPACE},
            "spec": {"workflowTemplateRef": {"name": "retrain-mnist"}, "entrypoint": "train"}}
    name = cluster.api(base, "POST", body)["metadata"]["name"]
    jobs = f"/apis/kubeflow.org/v1/namespaces/{NAMESPACE}/tfjobs"
    deadline = time.monotonic() + 120
    try:
        while not (made := [j for j in get(cluster, jobs)["items"] if j["metadata"]["name"] == name]):
            wf = get(cluster, f"{base}/{name}")
            assert wf.get("status", {}).get("phase") not in ("Failed", "Error"), wf["status"]
            assert time.monotonic() < deadline, f"no TFJob from {name} within 120 s: {wf.get('status')}"
            time.sleep(2)
    finally:
        cluster.api(f"{base}/{name}", "DELETE")
    template = get(cluster, f"/apis/argoproj.io/v1alpha1/namespaces/{NAMESPACE}/workflowtemplates/retrain-mnist")
    defaults = {p["name"]: p["value"] for p in template["spec"]["arguments"]["parameters"]}
    command = made[0]["spec"]["tfReplicaSpecs"]["Chief"]["template"]["spec"]["containers"][0]["command"]
    print(f"the valid Workflow {name} made its TFJob; the chief's command: {command}")
    flags = {f"--{p}": v for p, v in defaults.items()}
    assert all(command[command.index(flag) + 1] in (v, str(float(v))) for flag, v in flags.items()), command
    try:  # the Workflow's owner reference deletes it too; this does not wait for the garbage collector
        cluster.api(f"{jobs}/{name}", "DELETE")
    except urllib.error.HTTPError as e:
        assert e.code == 404, e
    deadline = time.monotonic() + 120  # the next tests compare the namespace's objects before and after
    while left := [n for names in ours(cluster).values() for n in names if name in n]:
        assert time.monotonic() < deadline, f"still there 120 s after deleting {name}: {left}"
        time.sleep(2)


def test_a_pod_bigger_than_the_node_fails_the_preview_in_one_line(stack, cluster):
    """The capacity check reads the node's allocatable at preview: TensorBoard asking for 64 CPUs fits no
    node, and the preview says so in one line, before anything changes."""
    before = ours(cluster)
    stack.set_all_config({"kubeflow-e2e:tensorboard.cpu": auto.ConfigValue("64"),
                          "kubeflow-e2e:tensorboard.cpuLimit": auto.ConfigValue("64")})
    try:
        with pytest.raises(auto.CommandError) as err:
            stack.preview(color="never")
    finally:
        stack.remove_all_config(["kubeflow-e2e:tensorboard.cpu", "kubeflow-e2e:tensorboard.cpuLimit"])
    text = str(err.value)
    lines = [ln.strip() for ln in text.splitlines() if "capacity:" in ln and "skipped" not in ln]
    assert lines, text
    line = lines[0]
    print(f"preview with tensorboard.cpu 64: {line}")
    assert "64 CPU" in line and NODE_NAME in line and "allocatable" in line, line
    assert ours(cluster) == before


def test_the_argo_server_runs_on_the_stacks_rules_with_the_callers_token(stack, cluster, run_dir):
    """A real `argo server` as the stack's chart values run it (`client` auth, TLS, no `--namespaced`), its
    account bound to exactly what infra/argo.py grants it: a user bound to `retrain-submitter` lists and
    submits `retrain-mnist` through its REST API with their own token (the server's account may create
    nothing), a request without a token is refused, the user's rights end at their namespace, and the server's
    log has no `forbidden` for its own account."""
    from e2e.argoserver import ARGO_NAMESPACE, ArgoServer, account_token
    from infra.argo import SERVER_CLUSTER_RULES, SERVER_RULES
    from infra.namespace import SUBMITTER_ROLE
    from infra.retraining import NAME as TEMPLATE

    granted = SERVER_RULES + SERVER_CLUSTER_RULES
    assert not [r for r in granted if "workflows" in r["resources"] and "create" in r["verbs"]]
    alice = account_token(cluster, NAMESPACE, "e2e-alice", role=SUBMITTER_ROLE)
    ns = f"/api/v1/workflows/{NAMESPACE}"
    with ArgoServer(cluster, run_dir / "argo-server", rules=SERVER_RULES, cluster_rules=SERVER_CLUSTER_RULES) as srv:
        seen = {
            "no token": srv.request(ns, None),
            "templates": srv.request(f"/api/v1/workflow-templates/{NAMESPACE}", alice),
            "submit": srv.request(f"{ns}/submit", alice, "POST",
                                  {"resourceKind": "WorkflowTemplate", "resourceName": TEMPLATE}),
            "argo namespace": srv.request(f"/api/v1/workflows/{ARGO_NAMESPACE}", alice),
        }
        name = seen["submit"][1].get("metadata", {}).get("name", "")
        deadline = time.monotonic() + 30  # the server lists from its own cache, which a watch fills
        while True:
            seen["list"] = srv.request(ns, alice)
            listed = [w["metadata"]["name"] for w in seen["list"][1].get("items") or []]
            if name in listed or time.monotonic() > deadline:
                break
            time.sleep(1)
        if name:  # not left to run a second retrain beside the tests' own
            seen["delete"] = srv.request(f"{ns}/{name}", alice, "DELETE")
        forbidden = srv.forbidden()
    print(f"argo server at {srv.url}: " + ", ".join(f"{k} {code}" for k, (code, _) in seen.items())
          + f"; submitted {name}, listed {listed}; forbidden for its own account: {forbidden[:3] or 'none'}")
    assert srv.url.startswith("https://")
    assert seen["no token"][0] == 401, seen["no token"]
    assert seen["templates"][0] == 200 and TEMPLATE in [t["metadata"]["name"] for t in seen["templates"][1]["items"]]
    assert seen["submit"][0] == 200, seen["submit"]
    creator = seen["submit"][1]["metadata"]["labels"]["workflows.argoproj.io/creator"]
    assert creator == f"system-serviceaccount-{NAMESPACE}-e2e-alice", creator
    assert seen["list"][0] == 200 and name in listed, seen["list"]
    assert seen["argo namespace"][0] == 403, seen["argo namespace"]
    assert seen["delete"][0] == 200, seen["delete"]
    assert not forbidden, forbidden


def test_a_schedule_starts_the_retrain_workflow(stack, cluster):
    """`retrain.schedule` declares a CronWorkflow; the real Argo controller starts a Workflow from it at the
    next minute. The schedule stays until destroy (which must remove the CronWorkflow and what it started)."""
    stack.set_config("kubeflow-e2e:retrain.schedule", auto.ConfigValue(value="*/1 * * * *"))
    run(stack.up)
    cron = get(cluster, f"/apis/argoproj.io/v1alpha1/namespaces/{NAMESPACE}/cronworkflows/{CRON_WORKFLOW}")
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    deadline = time.monotonic() + 150
    while True:
        started = get(cluster, f"/apis/argoproj.io/v1alpha1/namespaces/{NAMESPACE}/workflows"
                      f"?labelSelector=workflows.argoproj.io/cron-workflow={CRON_WORKFLOW}")["items"]
        if started:
            break
        assert time.monotonic() < deadline, "the CronWorkflow started no Workflow within 150 s"
        time.sleep(3)
    print(f"the CronWorkflow {CRON_WORKFLOW} started {started[0]['metadata']['name']}")
    assert started[0]["spec"]["workflowTemplateRef"]["name"] == "retrain-mnist"


def test_a_wrong_image_fails_up_within_a_minute_or_two(stack, cluster):
    """An image no registry has: the TensorBoard Deployment's gate sees the new pod in ErrImagePull or
    ImagePullBackOff and fails `pulumi up` naming the Deployment, the pod, the container and the reason,
    instead of the provider waiting out its 10 minutes. The stack is destroyed next, from that state."""
    stack.set_config("kubeflow-e2e:image.tensorboard", auto.ConfigValue(value="kubeflow-e2e/tensorboard:nope"))
    started = time.monotonic()
    try:
        with pytest.raises(auto.CommandError) as err:
            run(stack.up)
    finally:
        stack.remove_config("kubeflow-e2e:image.tensorboard")
    took = time.monotonic() - started
    text = str(err.value)
    lines = [ln.strip() for ln in text.splitlines() if "cannot come up" in ln]
    print(f"pulumi up with a wrong image failed after {took:.0f} s: {lines[:1]}")
    assert lines and "tensorboard" in lines[0] and re.search(r"ErrImagePull|ImagePullBackOff", lines[0]), text
    assert took < 180, took


def test_bad_config_fails_up_with_one_line_and_creates_nothing(engine, cluster):
    before = ours(cluster)
    bad = engine.stack("bad", {**OFF, "workers": "0"})
    with pytest.raises(auto.CommandError) as err:
        run(bad.up)
    text = str(err.value)
    lines = [ln.strip() for ln in text.splitlines() if "kubeflow-e2e:workers" in ln]
    assert any(ln.startswith("error: config kubeflow-e2e:workers must be between 1 and 64 (0)") for ln in lines), text
    assert "Traceback" not in text
    assert [r for r in engine.state_resources("bad") if r["type"].startswith("kubernetes:")] == []
    assert ours(cluster) == before
    bad.workspace.remove_stack("bad")


def test_destroy_leaves_nothing_of_ours(stack, cluster, engine):
    t0 = time.monotonic()
    result, out = run(stack.destroy)
    print(f"pulumi destroy: {time.monotonic() - t0:.1f} s")
    deleted = result.summary.resource_changes["delete"]
    assert re.search(rf"- {deleted} deleted", out)
    assert engine.state_resources(STACK) == []
    assert ours(cluster) == {}, "objects of ours are left in the cluster"
    assert get(cluster, f"/api/v1/namespaces/{NAMESPACE}") is None
    # The platform's CRDs stay: they are not the stack's.
    assert get(cluster, "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/tfjobs.kubeflow.org")
    # And containerd holds no sandbox or container of the namespace's pods any more (the kubelet removes them
    # after the pods are gone).
    deadline = time.monotonic() + 120
    while (left := cluster.ours_in_containerd(NAMESPACE)) and time.monotonic() < deadline:
        time.sleep(3)
    print(f"containerd after destroy: {cluster.sandboxes_and_containers()} in all (the platform's), none of ours")
    assert left == [], f"containerd still holds {left}"
