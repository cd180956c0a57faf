"""The capacity check: each pod of the stack against the nodes' allocatable, as the API server lists them
(node records written by the test, in `infra.kubeapi.node_allocatable`'s shape)."""

from __future__ import annotations

from pathlib import Path

from infra import capacity, kubeapi
from tests.helpers.apiserver import NOT_FOUND, StandInAPIServer

from .conftest import make_config


def node(name: str, cpu: str, memory: str, gpus: str = "0", **labels: str) -> dict:
    return {"name": name, "cpu": cpu, "memory": memory, "gpus": gpus, "labels": labels, "taints": []}


def test_dev_fits_on_a_small_node():
    pods = capacity.pod_requests(make_config())
    assert capacity.problem(pods, [node("kind", "2", "8026508Ki")]) is None


def test_workers_that_ask_for_more_cpu_than_any_node_fail_in_one_line():
    pods = capacity.pod_requests(make_config(training__cpu="2", training__cpuLimit="2"))
    found = capacity.problem(pods, [node("small", "1500m", "16Gi"), node("tiny", "1", "32Gi")])
    assert found == ("capacity: the TFJob's chief and workers ask for 2 CPU each; the largest node (small) has "
                     "1.5 CPU allocatable: lower kubeflow-e2e:training.cpu or add a larger node")
    assert "\n" not in found


def test_memory_is_checked_per_pod_with_serving_and_its_sidecar_together():
    cfg = make_config(serving__memory="3Gi", serving__memoryLimit="3Gi", sync__memory="1Gi", sync__memoryLimit="1Gi")
    [serving] = [p for p in capacity.pod_requests(cfg) if p.workload == "serving"]
    assert serving.memory == 4 * 2**30
    found = capacity.problem(capacity.pod_requests(cfg), [node("n1", "8", "3900Mi")])
    assert found.startswith("capacity: a serving pod (TF Serving and sync-model) ask for 4.00 GiB each; "
                            "the largest node (n1) has 3.81 GiB allocatable: lower kubeflow-e2e:serving.memory")


def test_a_pod_needs_one_node_with_both_enough_cpu_and_enough_memory():
    cfg = make_config(training__cpu="2", training__cpuLimit="2", training__memory="6Gi", training__memoryLimit="6Gi")
    found = capacity.problem(capacity.pod_requests(cfg), [node("cpus", "4", "2Gi"), node("mem", "1", "64Gi")])
    assert found.startswith("capacity: the TFJob's chief and workers ask for 2 CPU and 6.00 GiB each, which no "
                            "single node has allocatable at once")


def test_gpus_and_the_node_selector_narrow_the_nodes_training_may_use():
    cfg = make_config(training__gpus=1, training__nodeSelector={"pool": "gpu"},
                      image__trainerGpu="registry.example.com/kubeflow-e2e/trainer-gpu:0.1.0")
    pods = capacity.pod_requests(cfg)
    big_cpu_node = node("cpu", "64", "256Gi", pool="cpu")
    assert capacity.problem(pods, [big_cpu_node]).startswith(
        "capacity: no schedulable node has the labels the TFJob's chief and workers select (pool=gpu)")
    no_gpu = node("gpu-0", "8", "32Gi", "0", pool="gpu")
    assert "ask for 1 GPUs each; the largest node (gpu-0) has 0 GPUs" in capacity.problem(pods, [big_cpu_node, no_gpu])
    assert capacity.problem(pods, [big_cpu_node, node("gpu-1", "8", "32Gi", "1", pool="gpu")]) is None


def test_minio_counts_only_when_the_stack_runs_it():
    minio = make_config(minio__cpu="4", minio__cpuLimit="4")
    assert "MinIO ask for 4 CPU" in capacity.problem(capacity.pod_requests(minio), [node("n", "2", "8Gi")])
    aws = make_config(storage__mode="aws", minio__cpu="4", minio__cpuLimit="4")
    assert capacity.problem(capacity.pod_requests(aws), [node("n", "2", "8Gi")]) is None


def test_no_nodes_or_an_unreadable_quantity_never_fail():
    pods = capacity.pod_requests(make_config())
    assert capacity.problem(pods, []) is None
    assert capacity.problem(pods, [node("odd", "2", "1e3")]) is None


def test_an_unreadable_cluster_is_unknown_and_the_program_skips_the_check(monkeypatch, tmp_path):
    monkeypatch.delenv(kubeapi.OFFLINE_ENV, raising=False)
    assert kubeapi.node_allocatable(str(tmp_path / "missing"), "nowhere") is None
    monkeypatch.setenv(kubeapi.OFFLINE_ENV, "1")
    assert kubeapi.node_allocatable(None, None) is None


def stand_in(tmp_path, nodes: list[dict], crds: set[str]) -> tuple[StandInAPIServer, Path]:
    """The two reads the program makes at preview, answered the way the API server does (a NodeList; a CRD or
    a 404 Status), and a kubeconfig whose context `kubeflow-e2e-dev` reaches them."""
    prefix = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/"

    def answer(path: str) -> tuple[int, dict]:
        if path.startswith("/api/v1/nodes"):
            return 200, {"kind": "NodeList", "apiVersion": "v1", "metadata": {}, "items": nodes}
        if path.startswith(prefix) and path[len(prefix):] in crds:
            return 200, {"kind": "CustomResourceDefinition", "apiVersion": "apiextensions.k8s.io/v1",
                         "metadata": {"name": path[len(prefix):]},
                         "spec": {"group": "g", "names": {"plural": "p", "kind": "K"}, "scope": "Namespaced",
                                  "versions": []}}
        return 404, NOT_FOUND

    server = StandInAPIServer(answer)
    return server, server.kubeconfig(tmp_path / "kubeconfig", context="kubeflow-e2e-dev")


def api_node(name: str, cpu: str, memory: str, unschedulable: bool = False) -> dict:
    return {"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
            "spec": {"unschedulable": unschedulable, "taints": [{"key": "k", "value": "v", "effect": "NoSchedule"}]},
            "status": {"allocatable": {"cpu": cpu, "memory": memory, "pods": "110"}}}


def test_the_reads_go_to_the_stacks_context_over_http(monkeypatch, tmp_path):
    monkeypatch.delenv(kubeapi.OFFLINE_ENV, raising=False)
    server, kubeconfig = stand_in(tmp_path, [api_node("a", "1500m", "2Gi"), api_node("cordoned", "64", "256Gi", True)],
                                  {"servicemonitors.monitoring.coreos.com"})
    with server:
        config = str(kubeconfig)
        nodes = kubeapi.node_allocatable(config, "kubeflow-e2e-dev")
        assert [(n["name"], n["cpu"], n["memory"], n["gpus"]) for n in nodes] == [("a", "1500m", "2Gi", "0")]
        assert nodes[0]["taints"] == [{"key": "k", "value": "v", "effect": "NoSchedule"}]
        assert kubeapi.crd_exists("servicemonitors.monitoring.coreos.com", config, "kubeflow-e2e-dev") is True
        assert kubeapi.crd_exists("podmonitors.monitoring.coreos.com", config, "kubeflow-e2e-dev") is False
        # The cordoned node does not count: the workers' 2 CPU fit nowhere.
        cfg = make_config(training__cpu="2", training__cpuLimit="2")
        assert "the largest node (a) has 1.5 CPU" in capacity.problem(capacity.pod_requests(cfg), nodes)


def test_the_program_fails_before_declaring_anything_when_a_pod_fits_nowhere(monkeypatch, tmp_path):
    import pulumi

    from infra.preview import check_capacity

    monkeypatch.delenv(kubeapi.OFFLINE_ENV, raising=False)
    server, kubeconfig = stand_in(tmp_path, [api_node("a", "1500m", "2Gi")], set())
    with server:
        where = {"cluster__kubeconfig": str(kubeconfig), "cluster__context": "kubeflow-e2e-dev"}
        check_capacity(make_config(**where))  # dev's requests fit
        try:
            check_capacity(make_config(training__cpu="2", training__cpuLimit="2", **where))
        except pulumi.RunError as e:
            assert str(e).startswith("capacity: the TFJob's chief and workers ask for 2 CPU each")
        else:
            raise AssertionError("no RunError")
