"""Fault drill: a worker dies mid-training (a pod killed, a node lost).

The TFJob operator's answer, with `restartPolicy: OnFailure` / `ExitCode`, is to restart the replicas; that
only helps if the surviving chief does not hang forever on its collectives and the new attempt resumes from the
last checkpoint on S3. This drill kills the worker with SIGKILL once a checkpoint is published, requires the
chief to exit non-zero within a bounded time, relaunches chief + worker as the operator would, and checks that
training continues from that checkpoint (the step counter goes on) and ends with the usual quality.
"""

import signal
import time

import pytest

from trainer.train import DEFAULTS

# How long the chief may take to notice a dead peer (TF's coordination service heartbeat timeout plus
# the collective's own error path); an operator restart is pointless if it never does.
NOTICE_S = 120


@pytest.mark.slow
def test_worker_killed_mid_training_resumes_from_s3_checkpoint(job):
    chief, worker = job.start()
    step = job.wait_for_checkpoint([chief, worker], min_step=2 * 22)  # two epochs in
    worker.popen.send_signal(signal.SIGKILL)
    killed_at = time.monotonic()
    worker.wait(timeout=30)

    try:
        rc = chief.wait(timeout=NOTICE_S)
    except Exception:
        chief.kill()
        raise AssertionError(f"the chief hung for {NOTICE_S} s after its worker died (last lines:\n"
                             + "\n".join(list(chief.tail)[-20:]) + ")") from None
    noticed_s = time.monotonic() - killed_at
    assert rc != 0, "the chief exited 0 although its worker died mid-training"
    print(f"chief noticed the dead worker after {noticed_s:.1f} s (exit {rc})")

    last = job.checkpoint_steps()[-1]
    assert last >= step
    assert not any(k.startswith("models/") for k in _keys(job)), "a model was published by a failed run"

    # The operator restarts the replicas: same TF_CONFIG shape, new addresses.
    chief2, worker2 = job.start()
    job.sup.wait_all("train", [chief2, worker2], timeout=400)
    result = chief2.result()
    assert result is not None, "\n".join(chief2.tail)
    assert result["resumed_from_step"] == last
    assert any(f"resumed from checkpoint step {last}" in line for line in chief2.tail)
    assert result["steps"] == DEFAULTS["epochs"] * 22  # the default epochs: it continued, it did not start over
    assert result["accuracy"] >= 0.97, result
    assert result["model_version"] == 1


def _keys(job) -> list[str]:
    return [o["Key"] for p in job.s3.get_paginator("list_objects_v2").paginate(Bucket=job.bucket)
            for o in p.get("Contents", [])]
