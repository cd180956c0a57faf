"""Each image runs its own commands: every command the rendered dev and prod manifests run in the trainer,
sidecar and TensorBoard images, run for real in a venv holding only that image's requirements
(tests/images/commands.py says what is mapped to run it on one machine, and how)."""

from __future__ import annotations

import re

import pytest

from tests.images import commands, venvs
from tests.infra.pods import containers

ROOT = venvs.ROOT
STACKS = ("dev", "prod")


@pytest.fixture(scope="module")
def stacks(renders):
    return {s: renders(s) for s in STACKS}


def test_every_container_of_our_images_is_collected(stacks):
    for stack, rendered in stacks.items():
        collected = commands.collect(rendered)
        ours = [where for where, c, _ in containers(rendered) if commands._ours(c["image"])]
        assert sorted(c.where for c in collected if c.ours) == sorted(ours)
        by_image = {(c.image, c.verb()) for c in collected if c.ours}
        # What the pipeline needs each image to run; a render that stops running one fails here.
        assert by_image >= {
            ("trainer", "check-parameters"),
            ("trainer", "prepare-data"),
            ("trainer", "train"),
            ("trainer", "evaluate"),
            ("sidecar", "sync-model"),
            ("tensorboard", "tensorboard"),
        }, (stack, by_image)
        # The retraining template's embedded TFJob and its parameters are in, filled with their defaults.
        retrain = [c for c in collected if c.where.startswith("WorkflowTemplate/") and c.verb() == "train"]
        assert retrain and all("{{" not in c.shell for c in retrain)
        assert all(c.image in venvs.IMAGES for c in collected if c.ours)


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_each_command_runs_in_its_own_image(stacks, s3_server, tmp_path):
    cluster = commands.LocalCluster(list(stacks.values()), s3_server, tmp_path)
    everything = [c for stack in STACKS for c in commands.collect(stacks[stack]) if c.ours]
    ran, failures, covered = {}, [], {}
    for c in commands.run_order(everything):
        key = f"{c.stack} {c.where}"
        sig = cluster.signature(c)
        if sig in ran:
            covered[key] = ran[sig]
            continue
        ran[sig] = key
        covered[key] = key
        try:
            result = cluster.run(c)
        except commands.ImageCommandError as e:
            failures.append(str(e))
            continue
        print(f"{c.stack:4} {c.image:11} {result.seconds:5.1f} s  {c.where}: {c.shell}")
    assert not failures, "\n\n".join(failures)
    assert set(covered) == {f"{c.stack} {c.where}" for c in everything}
    # dev's and prod's data prep differ in --shards (a multiple of each TFJob's processes: 4 and 5), so each
    # is its own run; prod's TFJob (reading the Fluid volume) is its own run.
    prep = "prod WorkflowTemplate/prepare-data/prepare-data/main"  # the template the data-prep Workflow runs
    assert covered[prep] == prep
    assert covered["prod TFJob/mnist-baseline/Chief/tensorflow"] == "prod TFJob/mnist-baseline/Chief/tensorflow"


def test_the_trainer_does_not_hide_a_missing_module():
    """The check reads Python's own `No module named '...'`: wrapping an ImportError in a friendlier error would
    hide which package an image lacks (as `--source digits needs scikit-learn` once did)."""
    hiding = [
        f"{p.relative_to(ROOT)}:{n}"
        for p in sorted((ROOT / "trainer").glob("*.py"))
        for n, line in enumerate(p.read_text().splitlines(), 1)
        if re.search(r"except\s*\(?[^:]*\b(ImportError|ModuleNotFoundError)\b", line)
    ]
    assert not hiding, hiding


def test_a_missing_module_names_the_image_the_command_and_the_module(stacks, s3_server, tmp_path):
    """What removing boto3 from requirements/sidecar.txt does, without rebuilding the venv: an import hook
    in the image venv's process makes `import boto3` fail as an absent package does."""
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(
        "import sys\n"
        "class _Absent:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'boto3':\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
        "sys.meta_path.insert(0, _Absent())\n"
    )
    cluster = commands.LocalCluster([stacks["dev"]], s3_server, tmp_path / "run", extra_env={"PYTHONPATH": str(hook)})
    once = next(c for c in commands.collect(stacks["dev"]) if c.where.endswith("/sync-model-once"))
    with pytest.raises(commands.ImageCommandError) as e:
        cluster.run(once)
    message = str(e.value).splitlines()[0]
    assert message.startswith("image sidecar: `python -m trainer sync-model --dest /models/mnist --keep 2 "
                              "--min-accuracy 0.5 --max-regression 0.02 --max-bytes ")
    assert "missing module boto3 (add it to requirements/sidecar.txt)" in message
