"""`python -m trainer`: every command has `--help`; the sidecar's and the client's commands run without
TensorFlow (their images have none)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT, trainer_env
from tests.helpers.process import stdout_json
from trainer import publish
from trainer.store import open_store

FLAGS = {
    "prepare-data": ["--source", "--shards", "--data-url"],
    "train": ["--epochs", "--batch-size", "--learning-rate", "--data-url", "--run-url", "--model-url"],
    "evaluate": ["--version", "--model-url", "--data-url"],
    "sync-model": ["--dest", "--watch", "--interval", "--keep", "--model-url"],
    "predict": ["--server", "--model", "--num-tests", "--data-url"],
}

# Runs the CLI in a process where `import tensorflow` / `import keras` fail, and reports what got imported.
NO_TF = (
    "import sys\n"
    "sys.modules['tensorflow'] = None; sys.modules['keras'] = None\n"
    "from trainer.cli import main\n"
    "try:\n"
    "    rc = main(sys.argv[1:])\n"
    "except SystemExit as e:\n"
    "    rc = e.code\n"
    "heavy = sorted(m for m, v in sys.modules.items() if v is not None and m.split('.')[0] in "
    "('tensorflow', 'keras'))\n"
    "print('imported:', heavy, file=sys.stderr)\n"
    "sys.exit(rc)\n"
)


def run_without_tf(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", NO_TF, *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)


@pytest.mark.parametrize("command", sorted(FLAGS))
def test_help(run_trainer, command):
    proc = run_trainer(command, "--help", timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"usage: python -m trainer {command}")
    for flag in FLAGS[command]:
        assert flag in proc.stdout, flag


def test_top_level_help_lists_every_command(run_trainer):
    proc = run_trainer("--help", timeout=60)
    assert proc.returncode == 0
    for command in FLAGS:
        assert command in proc.stdout
    proc = run_trainer(timeout=60)
    assert proc.returncode == 2 and "required: command" in proc.stderr


@pytest.mark.parametrize("command", ["train", "evaluate", "predict", "sync-model"])
def test_help_needs_no_tensorflow(s3_server, command):
    proc = run_without_tf([command, "--help"], trainer_env(s3_server))
    assert proc.returncode == 0, proc.stderr
    assert "imported: []" in proc.stderr


def test_sync_model_runs_without_tensorflow(s3_server, bucket, tmp_path):
    models = open_store(f"s3://{bucket}/models/mnist")
    version = tmp_path / "v"
    (version / "variables").mkdir(parents=True)
    (version / "saved_model.pb").write_bytes(os.urandom(256))
    (version / "variables" / "variables.index").write_bytes(b"index")
    publish.publish_dir(version, models.child("4"))
    env = trainer_env(s3_server, MODEL_URL=models.url)
    proc = run_without_tf(["sync-model", "--dest", str(tmp_path / "dest")], env)
    assert proc.returncode == 0, proc.stderr
    assert "imported: []" in proc.stderr
    assert stdout_json(proc)["versions"] == [4]
    assert (tmp_path / "dest" / "4" / "saved_model.pb").read_bytes() == (version / "saved_model.pb").read_bytes()


def test_train_env_vars_are_required(run_trainer, bucket):
    proc = run_trainer("train", env={"DATA_URL": f"s3://{bucket}/d", "MODEL_URL": f"s3://{bucket}/m"},
                       timeout=60)
    assert proc.returncode == 2
    assert "error: RUN_URL is not set" in proc.stderr and "--run-url" in proc.stderr
