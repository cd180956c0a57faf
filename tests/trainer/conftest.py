"""Fixtures of the trainer tests: the digits arrays, the digits prepared on the real S3 server, and empty
model stores (MODEL_URL) on S3 and on a local folder."""

from __future__ import annotations

import numpy as np
import pytest

from trainer import sources
from trainer.prepare import prepare
from trainer.store import open_store


@pytest.fixture(scope="module")
def digits():
    return sources.digits_arrays()


@pytest.fixture
def prepared(bucket, digits, tmp_path):
    """The digits dataset under s3://<bucket>/data/mnist, written in-process (the CLI has its own test)."""
    np.savez(tmp_path / "digits.npz", **digits)
    store = open_store(f"s3://{bucket}/data/mnist", "DATA_URL")
    manifest = prepare(str(tmp_path / "digits.npz"), store, shards=4)
    return store, manifest


@pytest.fixture(params=["s3", "file"])
def models(request, tmp_path):
    """An empty model store (MODEL_URL), once on the S3 server and once on a local folder."""
    if request.param == "s3":
        return open_store(f"s3://{request.getfixturevalue('bucket')}/models/mnist", "MODEL_URL")
    return open_store(f"file://{tmp_path}/models", "MODEL_URL")


@pytest.fixture
def file_models(tmp_path):
    """An empty model store on a local folder."""
    return open_store(f"file://{tmp_path}/models", "MODEL_URL")


@pytest.fixture
def s3_models(bucket):
    """An empty model store on the S3 server."""
    return open_store(f"s3://{bucket}/models/mnist", "MODEL_URL")
