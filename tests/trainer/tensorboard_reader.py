"""Reads a run's scalars from S3 the way the TensorBoard pod does: TensorBoard's own S3 reader (boto3 inside
TensorBoard, no TensorFlow) and the data provider its scalars dashboard calls, with orphaned-data purging on
(TensorBoard's default).

    python -m tests.trainer.tensorboard_reader s3://bucket/runs/x/logs   ->  {"<run>": {"<tag>": [[step, value], ...]}}

TensorFlow is blocked before TensorBoard is imported: with TF present, TensorBoard refuses `s3://` logdirs, so
this must run in its own process. The S3 server comes from the environment (`S3_ENDPOINT`, `AWS_*`).
"""

from __future__ import annotations

import json
import sys


def read(logdir: str) -> dict[str, dict[str, list[list[float]]]]:
    sys.modules["tensorflow"] = None  # TensorBoard then uses its TF-free stub, whose gfile reads s3:// via boto3
    from tensorboard import context
    from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer
    from tensorboard.compat import tf

    assert tf.__version__ == "stub", tf.__version__  # TensorBoard's TF-free stub, whose S3 reader is boto3
    multiplexer = plugin_event_multiplexer.EventMultiplexer(purge_orphaned_data=True)
    multiplexer.AddRunsFromDirectory(logdir)
    multiplexer.Reload()
    provider = data_provider.MultiplexerDataProvider(multiplexer, logdir)
    scalars = provider.read_scalars(context.RequestContext(), experiment_id="", plugin_name="scalars",
                                    downsample=1_000_000)
    return {run: {tag: [[d.step, d.value] for d in data] for tag, data in tags.items()}
            for run, tags in scalars.items()}


if __name__ == "__main__":
    print(json.dumps(read(sys.argv[1]), sort_keys=True))
