"""train's checks before TensorFlow starts (trainer/preflight.py)."""

from __future__ import annotations

import pytest

from demo.supervisor import tf_config
from trainer import data, tfconfig
from trainer.preflight import check_shares
from trainer.store import open_store


@pytest.mark.parametrize("counts,workers,shares", [
    # Equal shares whatever the shard layout (data.share): uneven or empty shard files
    # no longer leave a process with nothing, as whole files `shards[i::n]` did ([5, 0, 0, 0] gave a worker 0).
    ([5, 0, 0, 0], 1, [2, 3]),
    ([3, 3, 0], 2, [2, 2, 2]),
    ([4, 4], 0, [8]),
    ([2, 2], 3, [1, 1, 1, 1]),
])
def test_shares_from_the_manifest_are_equal(counts, workers, shares):
    info = {"count": sum(counts), "shards": [{"name": f"s{i}", "count": c} for i, c in enumerate(counts)]}
    manifest = {"splits": {"train": info}}
    config = tfconfig.parse(tf_config(list(range(2000, 2001 + workers)), "chief", 0)) if workers else tfconfig.load({})
    assert data.share_counts(info, config.num_workers) == shares
    check_shares(manifest, config, open_store("s3://bucket-x/data"))  # nobody is left empty
