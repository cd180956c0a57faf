"""GPU training in the stack: `training.gpus`, `training.nodeSelector`, `training.tolerations` and
`image.trainerGpu`, from the config's refusals to the rendered TFJob of both stacks (and the retraining
template's), which the policy pack passes; a stack without GPUs renders as before."""

from __future__ import annotations

import copy
import json

import yaml

from infra.configcheck import NS, ConfigError
from policy import rules
from tests.policy.test_pack import probe
from tests.policy.test_stacks import CONFIG

from .conftest import make_config

GPU_TAINT = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}


def refused(stack: str = "dev", **values) -> ConfigError:
    try:
        make_config(stack, **values)
    except ConfigError as e:
        return e
    raise AssertionError(f"accepted {values}")


def test_gpus_default_to_none_and_change_nothing():
    cfg = make_config()
    assert cfg.training.gpus == 0 and cfg.trainer_image == cfg.image.trainer
    assert cfg.training.node_selector == () and cfg.training.tolerations == ()
    assert "gpus" not in cfg.run_spec  # so a CPU stack's RUN_URL is what it was


def test_gpus_pick_the_gpu_image_and_a_new_run():
    cpu, gpu = make_config(), make_config(training__gpus=2)
    assert gpu.trainer_image == "kubeflow-e2e/trainer-gpu:0.1.0" and gpu.training.gpus == 2
    assert gpu.run_spec["gpus"] == 2 and gpu.run_spec["image"] == gpu.trainer_image
    assert gpu.run_id != cpu.run_id  # a checkpoint of the CPU run is not resumed on GPUs


def test_a_fractional_gpu_count_is_refused_in_one_line():
    for value in ("0.5", 1.5):
        e = refused(training__gpus=value)
        text = str(e)
        assert e.key == "training.gpus" and "\n" not in text
        assert "must be a whole number: a GPU cannot be shared" in text and f"({value})" in text
        assert f"pulumi config set --path {NS}:training.gpus" in text
    assert "between 0 and 16" in str(refused(training__gpus=17))
    assert "whole number" in str(refused(training__gpus="many"))


def test_gpus_with_the_cpu_only_image_are_refused_in_one_line():
    e = refused(training__gpus=1, image__trainerGpu="kubeflow-e2e/trainer:0.2.0")
    text = str(e)
    assert e.key == "image.trainerGpu" and "\n" not in text
    assert "is the CPU-only trainer image" in text and "(kubeflow-e2e/trainer:0.2.0)" in text
    assert f"{NS}:training.gpus 0" in text
    # Without GPUs the key is not used, so not checked: prod's bare default does not stop a CPU stack.
    assert make_config("prod", image__trainer="r.example/t:1", image__sidecar="r.example/s:1",
                       image__tensorboard="r.example/b:1").training.gpus == 0
    assert "names no registry host" in str(refused(
        "prod", training__gpus=1, image__trainer="r.example/t:1", image__sidecar="r.example/s:1",
        image__tensorboard="r.example/b:1"))


def test_node_selector_and_tolerations_are_checked_and_kept():
    cfg = make_config(training__nodeSelector={"pool": "gpu", "nvidia.com/gpu.present": True},
                      training__tolerations='[{"key": "dedicated", "operator": "Equal", "value": "ml", '
                                            '"effect": "NoExecute"}]')
    assert dict(cfg.training.node_selector) == {"nvidia.com/gpu.present": "true", "pool": "gpu"}
    assert [json.loads(t) for t in cfg.training.tolerations] == [
        {"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoExecute"}]
    assert "must be an object of node labels" in str(refused(training__nodeSelector=["gpu"]))
    assert "must be a list of tolerations" in str(refused(training__tolerations={"key": "x"}))
    assert "unknown fields ['keys']" in str(refused(training__tolerations=[{"keys": "x"}]))
    assert "effect other than" in str(refused(training__tolerations=[{"key": "x", "effect": "NoSchedul"}]))
    assert "is not JSON" in str(refused(training__tolerations="[{key: x"))


def tfjob(rendered) -> dict:
    return rendered.one("TFJob")


def retrain_tfjob(rendered) -> dict:
    template = rendered.one("WorkflowTemplate", "retrain-mnist")
    (train,) = [t for t in template["spec"]["templates"] if "resource" in t]
    return yaml.safe_load(train["resource"]["manifest"])


def test_both_gpu_stacks_render_gpus_on_every_training_pod_and_pass_the_policy_pack(renders):
    for name in ("dev-gpu", "prod-gpu"):
        r = renders.variant(name)
        assert rules.evaluate(r.resources, CONFIG) == [], name
        out = probe(copy.deepcopy(r.resources), CONFIG)  # the CrossGuard pack itself, as `pulumi preview` runs it
        assert out["violations"] == [] and out["skipped"] == [], name
        for job in (tfjob(r), retrain_tfjob(r)):  # the retraining template carries the same pods
            for replica in job["spec"]["tfReplicaSpecs"].values():
                pod = replica["template"]["spec"]
                (c,) = pod["containers"]
                assert c["resources"]["limits"]["nvidia.com/gpu"] == "1", name
                assert "nvidia.com/gpu" not in c["resources"]["requests"]
                assert c["image"].rsplit("/", 1)[-1] == "trainer-gpu:0.1.0", (name, c["image"])
                assert pod["tolerations"][0] == GPU_TAINT
                assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
        # Data prep and evaluation stay on the CPU image.
        images = {c["image"] for m in r.find("WorkflowTemplate") for t in m["spec"]["templates"]
                  for c in [t.get("container") or {}] if c}
        assert images and not [i for i in images if "trainer-gpu" in i], images


def test_a_cpu_stack_renders_no_gpu_and_no_placement(stack):
    for replica in tfjob(stack)["spec"]["tfReplicaSpecs"].values():
        pod = replica["template"]["spec"]
        assert "nvidia.com/gpu" not in pod["containers"][0]["resources"]["limits"]
        assert "tolerations" not in pod and "nodeSelector" not in pod
