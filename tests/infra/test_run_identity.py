"""A run is identified by what shapes it: RUN_URL carries a digest of the run's settings,
so the same spec resumes and a changed spec trains from scratch. Checked with real short trainings of the
real trainer against the test S3 server, at the RUN_URL the stack would give the TFJob."""

from __future__ import annotations

from infra.training import train_flags
from tests.helpers.process import stdout_json

from .conftest import make_config, training_args


def test_digest_follows_every_setting_that_shapes_the_run():
    base = make_config()
    assert make_config(training__learningRate="3e-3").run_prefix == base.run_prefix  # same number
    assert make_config(serving__replicas=3, training__timeoutSeconds=99).run_prefix == base.run_prefix
    changed = [
        make_config(training__learningRate="0.01"),
        make_config(training__epochs=21),
        make_config(training__batchSize=128),
        make_config(workers=2),
        make_config(image__trainer="kubeflow-e2e/trainer:0.1.1"),
        make_config(data__prepareSource="https://example.com/other.npz"),
    ]
    prefixes = {c.run_prefix for c in changed}
    assert len(prefixes) == len(changed) and base.run_prefix not in prefixes
    assert all(p.startswith("runs/baseline-") for p in prefixes)


def _train(run_trainer, cfg, bucket: str) -> dict:
    epochs, batch, lr = train_flags(training_args(cfg))
    proc = run_trainer(
        "train",
        "--epochs",
        epochs,
        "--batch-size",
        batch,
        "--learning-rate",
        lr,
        env={
            "DATA_URL": f"s3://{bucket}/data/mnist",
            "RUN_URL": f"s3://{bucket}/{cfg.run_prefix}",
            "MODEL_URL": f"s3://{bucket}/models/mnist",
        },
        check=True,
    )
    return stdout_json(proc)


def test_same_spec_resumes_changed_spec_trains_fresh(run_trainer, bucket):
    run_trainer("prepare-data", "--source", "digits", env={"DATA_URL": f"s3://{bucket}/data/mnist"}, check=True)
    first = _train(run_trainer, make_config(training__epochs=1), bucket)
    assert first["resumed_from_step"] is None and first["model_version"] == 1

    # The same spec (the learning rate written another way): the same run, nothing left to train.
    again = _train(run_trainer, make_config(training__epochs=1, training__learningRate="3e-3"), bucket)
    assert again["resumed_from_step"] == first["steps"] and again["model_version"] == 1

    # A changed learning rate: a new RUN_URL, a fresh run, a new model version.
    changed = _train(run_trainer, make_config(training__epochs=1, training__learningRate="0.01"), bucket)
    assert changed["resumed_from_step"] is None and changed["model_version"] == 2
