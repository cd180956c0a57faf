"""`evaluate` as a real process against the S3 server: newest complete version, `--version`, incomplete and
corrupt versions, no version at all. The expected scores are computed here from the Keras models directly."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import tensorflow as tf

from tests.helpers.process import stdout_json
from tests.helpers.s3 import module_bucket
from trainer import data, model, publish
from trainer.prepare import prepare
from trainer.store import open_store


@pytest.fixture(scope="module")
def setup(s3_server, tmp_path_factory):
    """A dataset and two complete versions (untrained models with different seeds) plus an incomplete third."""
    with module_bucket(s3_server, "eval") as bucket:
        data_store = open_store(f"s3://{bucket}/data", "DATA_URL")
        prepare("digits", data_store)
        x, y = data.test_arrays(data_store)
        models = open_store(f"s3://{bucket}/models/mnist", "MODEL_URL")
        expected = {}
        tmp = tmp_path_factory.mktemp("export")
        for version, seed in ((1, 1), (2, 2)):
            net = model.build(seed)
            model.export(net, tmp / str(version))
            publish.publish_dir(tmp / str(version), models.child(str(version)))
            probs = tf.nn.softmax(net(x[..., None].astype(np.float32) / 255.0, training=False)).numpy()
            expected[version] = {
                "accuracy": float((probs.argmax(-1) == y).mean()),
                "loss": float(-np.log(np.clip(probs[np.arange(len(y)), y], 1e-7, 1)).mean()),
            }
        assert expected[1]["accuracy"] != expected[2]["accuracy"]  # the versions are told apart
        # Version 3: files up, _COMPLETE never written (an upload cut short).
        for name in ("saved_model.pb", "variables/variables.index"):
            models.child("3").put_file(name, tmp / "2" / name)
        yield {"bucket": bucket, "data_url": data_store.url, "model_url": models.url, "expected": expected,
               "export": tmp}
        shutil.rmtree(tmp, ignore_errors=True)


def evaluate(run_trainer, setup, *args, **env):
    env = {"DATA_URL": setup["data_url"], "MODEL_URL": setup["model_url"], **env}
    return run_trainer("evaluate", *args, env=env, timeout=120)


def check_scores(proc, expected: dict, version: int) -> None:
    assert proc.returncode == 0, proc.stderr
    result = stdout_json(proc)
    assert result["model_version"] == version and result["count"] == 360
    assert result["accuracy"] == pytest.approx(expected[version]["accuracy"], abs=1e-9)
    assert result["loss"] == pytest.approx(expected[version]["loss"], rel=1e-4)
    assert result["model_url"].endswith(f"/models/mnist/{version}")


def test_newest_complete_version_is_scored(run_trainer, setup):
    check_scores(evaluate(run_trainer, setup), setup["expected"], 2)


def test_explicit_version(run_trainer, setup):
    check_scores(evaluate(run_trainer, setup, "--version", "1"), setup["expected"], 1)


def test_incomplete_version_is_refused(run_trainer, setup):
    proc = evaluate(run_trainer, setup, "--version", "3")
    assert proc.returncode == 2
    assert "error: no complete model version" in proc.stderr and "(1, 2)" in proc.stderr


def test_no_complete_version(run_trainer, setup):
    bucket = setup["bucket"]
    only_partial = open_store(f"s3://{bucket}/models/partial")
    only_partial.put_file("1/saved_model.pb", setup["export"] / "1" / "saved_model.pb")
    for url in (f"s3://{bucket}/models/empty", only_partial.url):
        proc = evaluate(run_trainer, setup, MODEL_URL=url)
        assert proc.returncode == 2
        assert f"error: no complete model version ({url})" in proc.stderr
        assert "Traceback" not in proc.stderr


def test_corrupt_version_is_refused(run_trainer, setup):
    models = open_store(f"s3://{setup['bucket']}/models/corrupt")
    publish.publish_dir(setup["export"] / "1", models.child("1"))
    models.child("1").put_bytes("variables/variables.index", b"not the published bytes")
    proc = evaluate(run_trainer, setup, MODEL_URL=models.url)
    assert proc.returncode == 2
    assert "does not match its checksum" in proc.stderr and "variables/variables.index" in proc.stderr


def test_missing_dataset(run_trainer, setup):
    url = f"s3://{setup['bucket']}/no-data"
    proc = evaluate(run_trainer, setup, DATA_URL=url)
    assert proc.returncode == 2
    assert "manifest.json is missing" in proc.stderr


def test_the_recorded_evaluation_is_checked(run_trainer, setup):
    """The retrain workflow's evaluate step checks the `_EVAL.json` the serving gate decides on."""
    import hashlib

    from trainer import versions

    data_sha = hashlib.sha256(open_store(setup["data_url"]).get_bytes(data.MANIFEST)).hexdigest()
    expected = setup["expected"][1]["accuracy"]
    models = open_store(f"s3://{setup['bucket']}/models/recorded")
    for version, accuracy in ((1, expected), (2, 0.99)):  # 2: a record that claims more than the weights do
        src = setup["export"] / f"recorded-{version}"
        shutil.copytree(setup["export"] / "1", src)
        (src / versions.EVAL).write_text(json.dumps({"accuracy": accuracy, "loss": 1.0, "count": 360,
                                                     "dataset_sha256": data_sha}))
        publish.publish_dir(src, models.child(str(version)))
    proc = evaluate(run_trainer, setup, "--version", "1", MODEL_URL=models.url)
    assert proc.returncode == 0, proc.stderr
    recorded = stdout_json(proc)["recorded"]
    assert recorded == {"accuracy": expected, "count": 360, "same_dataset": True}
    proc = evaluate(run_trainer, setup, "--version", "2", MODEL_URL=models.url)
    assert proc.returncode == 2
    assert "error: the version's recorded evaluation does not match a fresh score" in proc.stderr
    assert f"accuracy 0.9900 on 360 images, now {expected:.4f} on 360" in proc.stderr
