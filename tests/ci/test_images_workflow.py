"""The deploy workflow builds and pushes the three images before `pulumi up`, tags them with
the commit and hands the stacks their references by digest.

Read against the pinned actions (2026-11-29): docker/build-push-action v7.3.0 (`action.yml`: inputs `context`,
`file`, `push`, `tags`; output `digest`), docker/login-action v4.1.0 (`registry`, `username`, `password`),
docker/setup-buildx-action v4.3.0 (BuildKit, which reads `docker/<name>.Dockerfile.dockerignore`)."""

from __future__ import annotations

import pytest
import yaml

from infra.config import KEY_NAMES
from render import render
from tests.ci.tools import ROOT
from tests.ci.workflow import index_of, load, run_step, step_using, step_with_id, steps_using

# The GPU trainer is not pushed on every commit: no stack of ours runs it (training.gpus is 0 in both), and its
# CUDA wheels make it gigabytes; a GPU stack builds it with `make images` and sets image.trainerGpu.
IMAGES = sorted(p.name.removesuffix(".Dockerfile") for p in (ROOT / "docker").glob("*.Dockerfile")
                if p.name != "trainer-gpu.Dockerfile")
DIGESTS = {name: "sha256:" + f"{i:x}" * 64 for i, name in enumerate(IMAGES, start=10)}


@pytest.fixture(scope="module")
def deploy():
    return load("deploy.yml")


def test_every_dockerfile_is_built_and_pushed_with_the_commit_tag(deploy):
    assert IMAGES == ["sidecar", "tensorboard", "trainer"]
    job = deploy["jobs"]["images"]
    builds = {s["id"]: s["with"] for s in steps_using(job, "docker/build-push-action")}
    assert sorted(builds) == IMAGES
    for name, inputs in builds.items():
        assert inputs["file"] == f"docker/{name}.Dockerfile" and inputs["context"] == "."
        assert inputs["push"] is True
        assert inputs["tags"] == "${{ steps.registry.outputs.prefix }}/" + name + ":${{ github.sha }}"
    login = step_using(job, "docker/login-action")
    assert index_of(job, login) < min(index_of(job, s) for s in steps_using(job, "docker/build-push-action"))
    assert login["with"]["registry"] == "${{ steps.registry.outputs.host }}"
    assert job["permissions"]["packages"] == "write"  # the job's token may push to ghcr.io


def test_unchanged_sources_aim_at_the_same_digest(deploy):
    """A new trainer digest replaces the data-prep Workflow and the TFJob (replace_on_changes), so a push that
    leaves an image's sources alone should not change its digest: layers from the cache, timestamps fixed by
    SOURCE_DATE_EPOCH (docs.docker.com/build/ci/github-actions/reproducible-builds), no provenance
    attestation (it records the build). Whether the digests really repeat needs a Docker engine: not here."""
    for step in steps_using(deploy["jobs"]["images"], "docker/build-push-action"):
        name = step["id"]
        assert step["with"]["provenance"] is False
        assert step["with"]["cache-from"] == f"type=gha,scope={name}"
        assert step["with"]["cache-to"] == f"type=gha,mode=max,scope={name}"
        assert step["env"]["SOURCE_DATE_EPOCH"] == 0


def test_images_are_pushed_before_any_stack_is_updated(deploy):
    jobs = deploy["jobs"]
    assert jobs["images"]["needs"] == "test"
    for stack in ("dev", "prod"):
        needs = jobs[stack]["needs"]
        assert "images" in ([needs] if isinstance(needs, str) else needs)


def test_the_digests_reach_each_stacks_config(deploy):
    outputs = deploy["jobs"]["images"]["outputs"]
    assert outputs == {name: f"${{{{ steps.refs.outputs.{name} }}}}" for name in IMAGES}
    for stack in ("dev", "prod"):
        inputs = step_using(deploy["jobs"][stack], "pulumi/actions")["with"]
        config = yaml.safe_load(inputs["config-map"])
        assert config == {f"kubeflow-e2e:image.{name}": {"value": f"${{{{ needs.images.outputs.{name} }}}}",
                                                          "secret": False} for name in IMAGES}
        assert all(key.split(":", 1)[1] in KEY_NAMES for key in config)


def test_the_refs_step_names_each_image_by_digest(tmp_path, deploy):
    step = step_with_id(deploy["jobs"]["images"], "refs")
    values = {"steps.registry.outputs.prefix": "ghcr.io/acme/kubeflow-e2e",
              **{f"steps.{name}.outputs.digest": DIGESTS[name] for name in IMAGES}}
    run = run_step(step, values, tmp_path)
    assert run.returncode == 0, run.stderr
    assert run.outputs == {name: f"ghcr.io/acme/kubeflow-e2e/{name}@{DIGESTS[name]}" for name in IMAGES}


def test_a_build_without_a_digest_stops_the_deploy(tmp_path, deploy):
    step = step_with_id(deploy["jobs"]["images"], "refs")
    values = {"steps.registry.outputs.prefix": "ghcr.io/acme/kubeflow-e2e",
              **{f"steps.{name}.outputs.digest": DIGESTS[name] for name in IMAGES}}
    values["steps.sidecar.outputs.digest"] = ""
    run = run_step(step, values, tmp_path)
    assert run.returncode == 1 and "::error::a build returned no digest" in run.stdout
    assert run.outputs == {}


@pytest.mark.parametrize("registry,owner,host,prefix", [
    ("", "Acme-Org", "ghcr.io", "ghcr.io/acme-org/kubeflow-e2e"),  # GHCR wants lower case
    ("registry.example.com:5000/ml/", "acme", "registry.example.com:5000", "registry.example.com:5000/ml/kubeflow-e2e"),
])
def test_the_registry_step_says_where_to_push(tmp_path, deploy, registry, owner, host, prefix):
    step = step_with_id(deploy["jobs"]["images"], "registry")
    run = run_step(step, {"vars.IMAGE_REGISTRY": registry}, tmp_path, runner_env={"GITHUB_REPOSITORY_OWNER": owner})
    assert run.returncode == 0, run.stderr
    assert run.outputs == {"host": host, "prefix": prefix}


def test_a_registry_without_a_host_is_refused(tmp_path, deploy):
    step = step_with_id(deploy["jobs"]["images"], "registry")
    run = run_step(step, {"vars.IMAGE_REGISTRY": "acme"}, tmp_path, runner_env={"GITHUB_REPOSITORY_OWNER": "x"})
    assert run.returncode == 2 and "variable IMAGE_REGISTRY is 'acme'" in run.stderr


def test_the_stack_runs_the_pushed_digests():
    """What the deploy hands over is accepted by the stack's config and lands in the pods."""
    refs = {name: f"ghcr.io/acme/kubeflow-e2e/{name}@{DIGESTS[name]}" for name in IMAGES}
    out = render("prod", {f"image.{name}": ref for name, ref in refs.items()})
    images = {c["image"] for m in out.manifests for c in containers(m)}
    assert set(refs.values()) <= images, sorted(images)


def containers(manifest: dict):
    """Every container spec in a manifest, however deep (Deployments, Workflows, TFJobs, templates)."""
    stack = [manifest]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("containers", "initContainers") and isinstance(value, list):
                    yield from (c for c in value if isinstance(c, dict) and "image" in c)
                stack.append(value)
        elif isinstance(node, list):
            stack.extend(node)
