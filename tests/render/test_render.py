"""`python -m render`: both stacks render offline, deterministically, without credentials; config
errors stop the render with the CLI's one-line message."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from infra.configcheck import NS, ConfigError
from render import render, stack_config

ROOT = Path(__file__).resolve().parents[2]


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "render", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_cli_writes_both_stacks(tmp_path):
    for stack in ("dev", "prod"):
        proc = run_cli("--stack", stack, "--out", str(tmp_path / stack))
        assert proc.returncode == 0, proc.stderr
        assert "Kubernetes objects" in proc.stdout
        manifests = sorted((tmp_path / stack / "manifests").rglob("*.yaml"))
        assert len(manifests) >= 20
        kinds = {yaml.safe_load(p.read_text())["kind"] for p in manifests}
        assert {"TFJob", "Workflow", "WorkflowTemplate", "Deployment", "NetworkPolicy"} <= kinds
        summary = yaml.safe_load((tmp_path / stack / "resources.yaml").read_text())
        types = {r["type"] for r in summary}
        assert {"kubernetes:helm.sh/v4:Chart", "kubernetes:kustomize/v2:Directory"} <= types
        outputs = yaml.safe_load((tmp_path / stack / "outputs.yaml").read_text())
        assert outputs["tfjobName"] == "mnist-baseline"


def test_render_is_deterministic(tmp_path, dev):
    again = render("dev")
    assert again.resources == dev.resources
    a = {p.relative_to(tmp_path / "a"): p.read_bytes() for p in dev.write(tmp_path / "a")}
    b = {p.relative_to(tmp_path / "b"): p.read_bytes() for p in again.write(tmp_path / "b")}
    assert a == b


def test_write_replaces_a_previous_render(tmp_path, dev, renders):
    dev.write(tmp_path)
    (tmp_path / "manifests" / "stale.yaml").write_text("kind: Stale\n")
    renders.variant("prod").write(tmp_path)
    names = {p.name for p in (tmp_path / "manifests").rglob("*.yaml")}
    assert "stale.yaml" not in names and "persistentvolumeclaim-minio-data.yaml" not in names


def test_cli_config_error_is_one_line_and_exit_2(tmp_path):
    proc = run_cli("--stack", "dev", "--out", str(tmp_path), "--set", "workers=0")
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        f"error: config {NS}:workers must be between 1 and 64 (0): pulumi config set {NS}:workers 1"
    )
    assert not (tmp_path / "manifests").exists()


def test_cli_unknown_stack(tmp_path):
    proc = run_cli("--stack", "staging", "--out", str(tmp_path))
    assert proc.returncode == 2
    assert "error: no stack file Pulumi.staging.yaml (staging): pick one of: dev, prod" in proc.stderr


def test_render_raises_the_config_error():
    with pytest.raises(ConfigError) as info:
        render("dev", {"image.trainer": "kubeflow-e2e/trainer:latest"})
    assert info.value.key == "image.trainer"
    assert "(kubeflow-e2e/trainer:latest)" in str(info.value)


def test_overrides_and_secure_values():
    values, secrets = stack_config(
        "dev",
        {
            "workers": 4,
            "fluid.enabled": True,
            "storage.bucket": None,
            "storage.accessKeyId": {"secure": "v1:abc"},
        },
    )
    # Structured, as `pulumi config set --path` writes it and the language host hands it over (JSON).
    assert values[f"{NS}:workers"] == "4" and json.loads(values[f"{NS}:fluid"])["enabled"] is True
    storage = json.loads(values[f"{NS}:storage"])
    assert "bucket" not in storage
    assert storage["accessKeyId"] == "[secret]" and secrets == [f"{NS}:storage"]


def test_no_credential_reaches_a_render(variant):
    for r in variant.resources:
        if r["type"] == "kubernetes:core/v1:Secret":
            if r["inputs"].get("type") == "kubernetes.io/service-account-token":  # filled in by Kubernetes
                assert "stringData" not in r["inputs"] and "data" not in r["inputs"]
                continue
            assert set((r["inputs"].get("stringData") or r["inputs"]["data"]).values()) == {"[secret]"}
        if r["type"] == "aws:iam/accessKey:AccessKey":
            assert "secret" not in r["inputs"]


def test_workers_scale_the_tfjob(renders):
    job = renders.variant("dev-64").one("TFJob")
    assert job["spec"]["tfReplicaSpecs"]["Worker"]["replicas"] == 64
    assert job["spec"]["tfReplicaSpecs"]["Chief"]["replicas"] == 1


def test_outputs(stack):
    out = stack.outputs
    bucket = out["bucket"]
    assert out["dataUrl"] == f"s3://{bucket}/data/mnist"
    digest = out["runSpec"]["digest"]
    assert out["runUrl"] == f"s3://{bucket}/runs/baseline-{digest}" and len(digest) == 8
    assert out["modelUrl"] == f"s3://{bucket}/models/mnist"
    assert out["namespace"] == "kubeflow-e2e" and out["tfjobName"] == "mnist-baseline"
    assert out["servingUrl"] == "http://serving.kubeflow-e2e.svc:8501"
    assert out["tensorboardUrl"] == "http://tensorboard.kubeflow-e2e.svc:6006"
    assert out["portForward"]["serving"] == "kubectl -n kubeflow-e2e port-forward svc/serving 8501:8501"
    assert out["portForward"]["tensorboard"].endswith("svc/tensorboard 6006:6006")
    assert out["retrainCommand"].startswith("argo submit -n kubeflow-e2e --from workflowtemplate/retrain-mnist")
    assert out["predictCommand"] == "python -m trainer predict --server http://localhost:8501 --model mnist"
    assert out["rollbackCommand"] == f"python -m trainer rollback --model-url s3://{bucket}/models/mnist --to N"


@pytest.mark.parametrize("name, gate", [("dev", ["0.5", "0.02"]), ("prod", ["0.98", "0.005"])])
def test_serving_applies_the_promotion_gate(renders, name, gate):
    """Both sync-model containers (the one that fills the folder before TF Serving starts, and the watching
    sidecar) get the stack's serving.minAccuracy and serving.maxRegression."""
    spec = renders.variant(name).one("Deployment", "serving")["spec"]["template"]["spec"]
    syncs = [*spec["initContainers"], *(c for c in spec["containers"] if c["name"] == "sync-model")]
    assert len(syncs) == 2
    for c in syncs:
        args = c["args"]
        assert [args[args.index("--min-accuracy") + 1], args[args.index("--max-regression") + 1]] == gate


def test_trainings_hold_the_run_lease_under_their_job_name(stack):
    """The chief's lease identity: the stack's TFJob by its name, a retrain by its workflow's name."""
    def tfjob_env(job: dict) -> set:
        return {(e["name"], e.get("value")) for r in job["spec"]["tfReplicaSpecs"].values()
                for c in r["template"]["spec"]["containers"] for e in c["env"]}

    assert ("TFJOB_NAME", "mnist-baseline") in tfjob_env(stack.one("TFJob"))
    (train,) = [t for t in stack.one("WorkflowTemplate", "retrain-mnist")["spec"]["templates"] if t["name"] == "train"]
    retrain_job = yaml.safe_load(train["resource"]["manifest"])
    assert retrain_job["metadata"]["name"] == "{{workflow.name}}"
    assert ("TFJOB_NAME", "{{workflow.name}}") in tfjob_env(retrain_job)


def test_endpoint_output_per_mode(dev, prod, renders):
    assert dev.outputs["endpoint"] == "http://minio.kubeflow-e2e.svc:9000"
    assert prod.outputs["endpoint"] == "https://s3.us-east-1.amazonaws.com"
    assert renders.variant("dev-external").outputs["endpoint"] == "https://s3.example.com:9443"
    assert prod.outputs["trainingDataUrl"] == "file:///data/mnist"


PUBLIC_KEY = "Ht3bH6OtO4UbCxQ6vXlFd5Yq3Yq5a1Jx2c3lQ5VjZ0s="  # 32 bytes, base64


def test_signed_versions_key_pair(renders):
    """training.signingKey goes into a Secret that only the TFJobs' pods mount (the stack's and a retrain's);
    serving.publicKey reaches both sync-model containers; the private key never reaches a render."""
    r = renders("dev", {"training.signingKey": {"secure": "-----BEGIN PRIVATE KEY-----"},
                        "serving.publicKey": PUBLIC_KEY})
    secret = r.one("Secret", "model-signing-key")
    assert set(secret["data"]) == {"key.pem"} and "BEGIN" not in json.dumps(r.manifests)
    (train,) = [t for t in r.one("WorkflowTemplate", "retrain-mnist")["spec"]["templates"] if t["name"] == "train"]
    for job in (r.one("TFJob"), yaml.safe_load(train["resource"]["manifest"])):
        for replica in job["spec"]["tfReplicaSpecs"].values():
            spec = replica["template"]["spec"]
            assert {"name": "signing-key", "secret": {"secretName": "model-signing-key", "defaultMode": 0o440}} \
                in spec["volumes"]
            (c,) = spec["containers"]
            assert {"name": "MODEL_SIGNING_KEY_FILE", "value": "/var/run/kubeflow-e2e/signing/key.pem"} in c["env"]
    mounting = {m["metadata"]["name"] for m in r.find("Deployment") + r.find("Job")
                if any(v.get("secret", {}).get("secretName") == "model-signing-key"
                       for v in m["spec"]["template"]["spec"].get("volumes", []))}
    assert mounting == set()
    spec = r.one("Deployment", "serving")["spec"]["template"]["spec"]
    for c in [*spec["initContainers"], *(c for c in spec["containers"] if c["name"] == "sync-model")]:
        assert c["args"][c["args"].index("--public-key") + 1] == PUBLIC_KEY



def test_a_secret_key_given_in_plain_text_is_hidden_in_config_yaml():
    """`python -m render --set training.signingKey="$(cat key.pem)"` must not write the private key into the
    render's config.yaml (which the CI manifest diff publishes): the schema says the key is secret."""
    from render.stack import flat_config

    flat = flat_config({"kubeflow-e2e:training.signingKey": "-----BEGIN PRIVATE KEY-----",
                        "kubeflow-e2e:serving.replicas": "2"})
    assert flat == {"serving.replicas": "2", "training.signingKey": "[secret]"}
