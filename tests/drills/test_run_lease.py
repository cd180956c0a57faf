"""Fault drills on one RUN_URL: a second training is refused while the first holds the run's lease, even
after the first was killed (its lease has not expired), and the first job's restart resumes under it; a
damaged newest checkpoint is skipped and the run resumes from the one before.

Real processes on the drill's bucket: the dev stack's TFJob chief (its TFJOB_NAME, `mnist-drill`, is the
lease's identity; the second training is another job's, `mnist-other`).
"""

from __future__ import annotations

import re

import pytest

ARGS = ("--epochs", "12")


def refused_line(proc) -> str:
    return proc.tail[-1] if proc.tail else ""


@pytest.mark.slow
def test_a_second_training_on_the_run_is_refused_and_the_first_resumes(job):
    (first,) = job.start(*ARGS, workers=0)
    job.wait_for_checkpoint([first], min_step=22)
    first.kill()  # evicted: it never releases its lease
    newest = job.checkpoint_steps()[-1]

    (second,) = job.start(*ARGS, workers=0, TFJOB_NAME="mnist-other")
    assert second.wait(timeout=120) == 2, "\n".join(second.tail)
    line = refused_line(second)
    assert re.match(r"^error: another training holds this run: tfjob_name:mnist-drill on \S+, its lease expires "
                    r"at \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ \(s3://\S+/_LEASE/1\): ", line), line
    # Refused before TensorFlow started: no step ran, nothing was resumed, no model came out.
    assert not [ln for ln in second.tail if ln.lstrip().startswith("epoch ") or "resumed from" in ln]

    (again,) = job.start(*ARGS, workers=0)  # the first job's restart: the same identity
    assert again.wait(timeout=600) == 0, "\n".join(again.tail)
    assert any(ln.startswith(f"resumed from checkpoint step {newest} ") for ln in again.tail), \
        "\n".join(again.tail)
    assert again.result()["model_version"] == 1


@pytest.mark.slow
def test_a_damaged_newest_checkpoint_is_skipped(job):
    (first,) = job.start(*ARGS, workers=0)
    job.wait_for_checkpoint([first], min_step=44)
    first.kill()
    steps = job.checkpoint_steps()
    newest, before = steps[-1], steps[-2]
    prefix = f"{job.run}/checkpoints/{newest}/"
    (data,) = [o["Key"] for o in job.s3.list_objects_v2(Bucket=job.bucket, Prefix=prefix)["Contents"]
               if ".data-" in o["Key"]]
    body = bytearray(job.s3.get_object(Bucket=job.bucket, Key=data)["Body"].read())
    body[len(body) // 2] ^= 0x01  # one flipped bit; its _COMPLETE is intact
    job.s3.put_object(Bucket=job.bucket, Key=data, Body=bytes(body))

    (again,) = job.start(*ARGS, workers=0)
    assert again.wait(timeout=600) == 0, "\n".join(again.tail)
    url = f"s3://{job.bucket}/{job.run}/checkpoints"
    skipped = [ln for ln in again.tail if ln.startswith("skipped checkpoint")]
    assert skipped == [f"skipped checkpoint step {newest} ({url}/{newest}): file does not match its checksum in "
                       f"_COMPLETE (s3://{job.bucket}/{data})"]
    assert f"resumed from checkpoint step {before} ({url}/{before})" in again.tail
    assert again.result()["model_version"] == 1
