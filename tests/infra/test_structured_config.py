"""Pulumi's own config idioms: structured config set with `pulumi config set --path`, read
with `pulumi.Config.get_object`, every validation message and typo hint kept, and one explicit Kubernetes
provider configured from the stack (kubeconfig and context)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from infra.config import GROUPS, KEY_NAMES
from infra.configcheck import NS, ConfigError
from infra.configload import stack_values
from render import stack_config

ROOT = Path(__file__).resolve().parents[2]


def test_pulumi_config_set_path_form_is_read():
    """`pulumi config set --path kubeflow-e2e:storage.mode aws` writes `kubeflow-e2e:storage: {mode: aws}`;
    the language host hands it over as JSON."""
    raw = stack_values({f"{NS}:storage": json.dumps({"mode": "aws", "protect": True}), f"{NS}:workers": "2"})
    assert raw == {"storage.mode": "aws", "storage.protect": True, "workers": "2"}


def test_a_flat_dotted_key_still_reads_unless_the_object_sets_it_too():
    """Tools that write flat keys (the deploy workflow's `config-map`, `pulumi config set` without --path)."""
    assert stack_values({f"{NS}:image.trainer": "r.example/t:1"}) == {"image.trainer": "r.example/t:1"}
    both = {f"{NS}:storage.mode": "minio", f"{NS}:storage": json.dumps({"mode": "aws"})}
    with pytest.raises(ConfigError) as e:
        stack_values(both)
    assert str(e.value) == (
        f"config {NS}:storage.mode is set twice: as a flat key and as field mode of {NS}:storage (minio): "
        f"pulumi config rm {NS}:storage.mode (removes the flat one; fields are set with --path)"
    )


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({f"{NS}:storage": json.dumps({"mdoe": "aws"})}, f"did you mean {NS}:storage.mode?"),
        ({f"{NS}:wokers": "2"}, f"did you mean {NS}:workers?"),
        ({f"{NS}:trainig": json.dumps({"epochs": 3})}, "is not a known key"),
        ({f"{NS}:storage": "minio"}, f"config {NS}:storage must be an object of settings (storage.mode, "),
    ],
)
def test_typos_and_wrong_shapes_are_named(config, message):
    with pytest.raises(ConfigError, match=None) as e:
        stack_values(config)
    assert message in str(e.value)


def test_stack_files_are_structured():
    for stack in ("dev", "prod"):
        config = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())["config"]
        names = [k.split(":", 1)[1] for k in config]
        assert not [n for n in names if "." in n], names
        assert all(isinstance(config[f"{NS}:{g}"], dict) for g in GROUPS if f"{NS}:{g}" in config)
        assert set(stack_values(stack_config(stack)[0])) <= set(KEY_NAMES)


def test_a_secret_field_makes_its_object_secret():
    values, secret_keys = stack_config("dev", {"storage.accessKeyId": {"secure": "v1:abc"}})
    assert secret_keys == [f"{NS}:storage"]
    assert json.loads(values[f"{NS}:storage"])["accessKeyId"] == "[secret]"


def test_every_kubernetes_resource_uses_the_stacks_provider(stack):
    (provider,) = stack.by_type("pulumi:providers:kubernetes")
    assert provider["inputs"]["context"] == f"kubeflow-e2e-{stack.stack}"
    k8s = [r for r in stack.resources if r["type"].startswith("kubernetes:") and r["custom"]]
    assert k8s and all((r["provider"] or "").startswith(provider["urn"] + "::") for r in k8s), [
        r["name"] for r in k8s if not (r["provider"] or "").startswith(provider["urn"])
    ]


def test_kubeconfig_file_is_passed_to_the_provider_and_the_gates(renders):
    r = renders("dev", {"cluster.kubeconfig": "/etc/kube/dev.yaml"})
    (provider,) = r.by_type("pulumi:providers:kubernetes")
    assert provider["inputs"]["kubeconfig"] == "/etc/kube/dev.yaml"
    gates = r.by_type("pulumi-python:dynamic:Resource")
    assert gates and all(
        (g["inputs"]["kubeconfig"], g["inputs"]["context"]) == ("/etc/kube/dev.yaml", "kubeflow-e2e-dev") for g in gates
    )


def test_the_context_is_required(renders):
    with pytest.raises(ConfigError) as e:
        renders("dev", {"cluster.context": None})
    assert e.value.key == "cluster.context"
    assert f"pulumi config set --path {NS}:cluster.context <context>" in str(e.value)
