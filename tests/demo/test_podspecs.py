"""demo/podspecs.py: the local pipeline runs the dev stack's own pod specs. TF_CONFIG matches what
training-operator v1.9.4 writes (its `pkg/controller.v1/tensorflow/pod_test.go` cases: compact JSON, sorted
types, `<job>-<type>-<i>.<ns>.svc:<port>`, none for a single replica), and a change in the render reaches the
process the demo starts."""

from __future__ import annotations

import copy
import json

import pytest

from demo.podspecs import LocalStack, PodSpecError, tf_config
from demo.s3server import CREDENTIALS
from demo.supervisor import Supervisor
from demo.supervisor import tf_config as local_tf_config
from tests.render.renders import RENDERS

KEYS = {k: v for k, v in CREDENTIALS.items() if k != "AWS_REGION"}


def tfjob(name="job", namespace="ns", **counts) -> dict:
    def replica(n, port=None):
        c = {"name": "tensorflow", "image": "x"}
        if port:
            c["ports"] = [{"name": "tfjob-port", "containerPort": port}]
        return {"replicas": n, "template": {"spec": {"containers": [c]}}}

    return {"metadata": {"name": name, "namespace": namespace},
            "spec": {"tfReplicaSpecs": {t: replica(n) for t, n in counts.items()}}}


def test_tf_config_as_the_operator_writes_it():
    job = tfjob("test-tfjob", "ns3", Worker=1, PS=1, Evaluator=1)
    assert tf_config(job, "Worker", 0) == (
        '{"cluster":{"evaluator":["test-tfjob-evaluator-0.ns3.svc:2222"],"ps":["test-tfjob-ps-0.ns3.svc:2222"],'
        '"worker":["test-tfjob-worker-0.ns3.svc:2222"]},"task":{"type":"worker","index":0},"environment":"cloud"}')


def test_one_replica_in_all_gets_no_tf_config():
    assert tf_config(tfjob(Worker=1, PS=0), "Worker", 0) is None
    assert tf_config(tfjob(Chief=1, Worker=0), "Chief", 0) is None


def test_the_named_port_wins_over_the_default():
    job = tfjob(Chief=1, Worker=2)
    job["spec"]["tfReplicaSpecs"]["Worker"]["template"]["spec"]["containers"][0]["ports"] = [
        {"name": "tfjob-port", "containerPort": 3333}]
    config = json.loads(tf_config(job, "Chief", 0))
    assert config["cluster"] == {"chief": ["job-chief-0.ns.svc:2222"],
                                 "worker": ["job-worker-0.ns.svc:3333", "job-worker-1.ns.svc:3333"]}
    assert config["task"] == {"type": "chief", "index": 0}


def test_the_trainer_tests_helper_uses_the_same_builder():
    assert json.loads(local_tf_config([1000, 1001, 1002], "worker", 1)) == {
        "cluster": {"chief": ["127.0.0.1:1000"], "worker": ["127.0.0.1:1001", "127.0.0.1:1002"]},
        "task": {"type": "worker", "index": 1}, "environment": "cloud"}


@pytest.fixture(scope="module")
def rendered(renders):
    return renders("dev", {"training.run": "podspecs"})


def local(rendered, tmp_path, endpoint="http://127.0.0.1:9") -> LocalStack:
    return LocalStack(rendered, endpoint, KEYS, tmp_path, tensorboard="/opt/tb/bin/tensorboard")


def test_every_process_comes_from_its_pod_spec(rendered, tmp_path):
    stack = local(rendered, tmp_path)
    chief, worker = stack.train()
    job = rendered.one("TFJob")
    container = job["spec"]["tfReplicaSpecs"]["Chief"]["template"]["spec"]["containers"][0]
    assert chief.cmd[1:] == container["command"][1:]  # `python` is this interpreter
    assert chief.env["S3_ENDPOINT"] == "http://127.0.0.1:9"  # minio.<ns>.svc:9000 -> the local server
    assert chief.env["AWS_ACCESS_KEY_ID"] == "testing"  # secretKeyRef -> the local keys
    for var in container["env"]:
        if "value" in var and var["name"] not in ("S3_ENDPOINT", "HOME"):
            assert chief.env[var["name"]] == var["value"], var
    assert chief.env["HOME"] == str(tmp_path / "pods" / "mnist-podspecs-chief-0" / "tmp")  # the /tmp volume
    chief_cfg, worker_cfg = (json.loads(p.env["TF_CONFIG"]) for p in (chief, worker))
    assert chief_cfg["cluster"] == worker_cfg["cluster"]
    assert chief_cfg["cluster"]["chief"] == [f"127.0.0.1:{chief.listens[2222]}"]
    assert chief_cfg["cluster"]["worker"] == [f"127.0.0.1:{worker.listens[2222]}"]
    assert worker_cfg["task"] == {"type": "worker", "index": 0}

    (alone,) = stack.train(workers=0)
    assert "TF_CONFIG" not in alone.env

    prep = stack.prepare_data()
    assert prep.cmd[1:] == ["-m", "trainer", "prepare-data", "--source", "digits", "--shards", "4"]
    serving = stack.serving()
    assert serving.cmd[1:3] == ["-m", "demo.serving"]
    assert f"--rest_api_port={serving.listens[8501]}" in serving.cmd
    models = tmp_path / "pods" / "serving" / "models" / "mnist"
    assert f"--model_base_path={models}" in serving.cmd
    once = stack.sync_model().cmd
    assert once[once.index("--dest"):][:8] == ["--dest", str(models), "--keep", "2", "--min-accuracy", "0.5",
                                               "--max-regression", "0.02"]
    assert "--max-bytes" in once  # the serving pod's models volume bounds what it syncs
    watcher = stack.sync_model(watch=True).cmd
    assert "--watch" in watcher and "--metrics-port" in watcher
    assert watcher[-2:] == ["--metrics-host", "127.0.0.1"]  # every interface in the pod, loopback here
    board = stack.tensorboard()
    assert board.cmd[0] == "/opt/tb/bin/tensorboard" and "--bind_all" not in board.cmd
    assert board.cmd[-4:] == ["--host", "127.0.0.1", "--port", str(board.listens[6006])]
    ev = stack.evaluate("run-1")
    assert ev.env["RUN_URL"] == "s3://kubeflow-e2e-dev/runs/run-1"  # Argo's {{workflow.name}}
    predict = stack.predict()
    assert f"http://127.0.0.1:{serving.listens[8501]}" in predict.cmd  # the port-forward's localhost:8501


def test_a_flag_changed_in_the_stack_changes_the_demo(tmp_path):
    stack = local(RENDERS("dev", {"training.batchSize": 32, "training.run": "podspecs"}), tmp_path)
    for p in stack.train():
        assert p.cmd[p.cmd.index("--batch-size") + 1] == "32"


def test_an_env_value_changed_in_the_rendered_tfjob_reaches_the_process(rendered, tmp_path):
    """Edit MODEL_URL in the rendered TFJob: the chief the demo starts reads it, and says so when it refuses
    it (a real process; it stops before training)."""
    changed = copy.deepcopy(rendered)
    job = changed.one("TFJob")
    for replica in job["spec"]["tfReplicaSpecs"].values():
        for var in replica["template"]["spec"]["containers"][0]["env"]:
            if var["name"] == "MODEL_URL":
                var["value"] = "gs://changed-in-the-render/models"
    chief, _ = local(changed, tmp_path).train()
    assert chief.env["MODEL_URL"] == "gs://changed-in-the-render/models"
    sup = Supervisor(tmp_path / "logs")
    proc = sup.start(chief.name, chief.cmd, chief.env)
    try:
        assert proc.wait(timeout=120) == 2
    finally:
        sup.stop_all()
    log = (tmp_path / "logs" / "train-chief-0.log").read_text()
    assert "gs://changed-in-the-render/models" in log and "MODEL_URL" in log, log[-2000:]


def test_unknown_services_and_secrets_are_refused(rendered, tmp_path):
    changed = copy.deepcopy(rendered)
    env = changed.one("TFJob")["spec"]["tfReplicaSpecs"]["Chief"]["template"]["spec"]["containers"][0]["env"]
    env.append({"name": "OTHER", "value": "http://elsewhere.other-ns.svc:80"})
    with pytest.raises(PodSpecError, match="elsewhere.other-ns.svc"):
        local(changed, tmp_path).train()
    env[-1] = {"name": "OTHER", "valueFrom": {"secretKeyRef": {"name": "someone-elses", "key": "k"}}}
    with pytest.raises(PodSpecError, match="OTHER"):
        local(changed, tmp_path).train()
