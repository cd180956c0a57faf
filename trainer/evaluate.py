"""`evaluate`: score a published model version on the test split of `DATA_URL`.

Takes the newest complete version under `MODEL_URL` (or `--version`), downloads it (verified against its
`_COMPLETE`), loads the SavedModel's `serving_default` signature exactly as TF Serving would call it, and
reports accuracy and mean cross-entropy over the whole test split.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from common.errors import UserError
from trainer import cli


def add_arguments(parser) -> None:
    cli.env_arg(parser, "--model-url", "MODEL_URL", "the model versions: s3://bucket/prefix")
    cli.env_arg(parser, "--data-url", "DATA_URL", "the prepared dataset whose test split is scored")
    parser.add_argument("--version", type=int, default=None,
                        help="the version to score (default: the newest complete one)")


def run(args) -> dict:
    from trainer import data, publish
    from trainer.store import open_store

    model_store = open_store(args.model_url, "MODEL_URL")
    data_store = open_store(args.data_url, "DATA_URL")
    model_store.check()
    complete = publish.complete_versions(model_store)
    if args.version is None:
        if not complete:
            raise UserError("no complete model version", model_store.url,
                            "run `python -m trainer train` first (a version counts once its _COMPLETE is up)")
        version = complete[-1]
    elif args.version not in complete:
        have = ", ".join(map(str, complete)) or "none"
        raise UserError("no complete model version", f"{model_store.url_of(str(args.version))}",
                        f"pass one of the complete versions ({have}) or leave out --version")
    else:
        version = args.version
    data.read_manifest(data_store)  # a missing dataset fails before the download
    tmp = Path(tempfile.mkdtemp(prefix="trainer-evaluate-"))
    try:
        local = publish.fetch_dir(model_store.child(str(version)), tmp / str(version))
        scores = score(local, data_store)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {**scores, "model_version": version, "model_url": model_store.url_of(str(version)),
            "recorded": check_recorded(model_store.child(str(version)), data_store, scores)}


# How far a fresh score may lie from the recorded one: the same weights on the same test split agree to float
# rounding; a different CPU can flip a near-tie, one image in a few hundred.
RECORD_TOLERANCE = 0.005


def check_recorded(version_store, data_store, scores: dict) -> dict | None:
    """The version's `_EVAL.json` (what the serving gate decides on), checked against this fresh score when
    both are of the same dataset: a record that disagrees is an error. None for a version without one."""
    import hashlib

    from trainer import data, versions

    try:
        record = versions.read_eval(version_store)
    except versions.Untrusted as e:
        if "no evaluation" in e.what:
            return None
        raise
    same_data = record.get("dataset_sha256") == hashlib.sha256(data_store.get_bytes(data.MANIFEST)).hexdigest()
    if same_data and (record.get("count") != scores["count"]
                      or abs(float(record["accuracy"]) - scores["accuracy"]) > RECORD_TOLERANCE):
        raise UserError("the version's recorded evaluation does not match a fresh score",
                        f"{version_store.url_of(versions.EVAL)}: accuracy {float(record['accuracy']):.4f} on "
                        f"{record.get('count')} images, now {scores['accuracy']:.4f} on {scores['count']}",
                        "do not serve it: reject it (python -m trainer reject N) and publish it again")
    return {"accuracy": record["accuracy"], "count": record.get("count"), "same_dataset": same_data}


def score(saved_model_dir, data_store, batch_size: int = 256) -> dict:
    """Accuracy and mean cross-entropy of the SavedModel's `serving_default` on the whole test split."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import numpy as np
    import tensorflow as tf

    from trainer import data, model

    try:
        loaded = tf.saved_model.load(str(saved_model_dir))
    except (OSError, ValueError, tf.errors.OpError) as e:
        raise UserError("cannot load the SavedModel", saved_model_dir,
                        f"publish a valid version ({e})") from e
    serve = loaded.signatures.get("serving_default")
    if serve is None:
        raise UserError("the SavedModel has no serving_default signature", saved_model_dir,
                        "export it with `python -m trainer train`")
    ds, count = data.dataset(data_store, "test")
    correct, loss_sum, seen = 0, 0.0, 0
    with data.input_errors():  # a shard that fails its check is named
        for images, labels in ds.batch(batch_size):
            probs = serve(**{model.INPUT_NAME: tf.squeeze(images, -1)})[model.OUTPUT_NAME].numpy()
            labels = labels.numpy()
            correct += int((probs.argmax(-1) == labels).sum())
            loss_sum += float(-np.log(np.clip(probs[np.arange(len(labels)), labels], 1e-7, 1.0)).sum())
            seen += len(labels)
    if seen == 0:
        raise UserError("empty dataset: the test split has no examples", data_store.url,
                        "run `python -m trainer prepare-data` with a non-empty source")
    return {"accuracy": correct / seen, "loss": loss_sum / seen, "count": seen}
