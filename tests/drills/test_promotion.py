"""Fault drills: only a model that passed its evaluation, signed by the pipeline's key, is served.

Real processes on the drill's bucket: the dev stack's TFJob chief (`train`), the serving pod's watching
sidecar (`sync-model --watch` with the stack's promotion gate, serving.minAccuracy 0.5 and
serving.maxRegression 0.02), and `python -m trainer rollback`. The sidecar syncs every 0.3 s here.
"""

from __future__ import annotations

import json
import time

import pytest

from trainer import signing

GOOD = ("--epochs", "10")
# One epoch at a learning rate 300 times too small: a "diverged" retrain that still exports a version.
WORSE = ("--epochs", "1", "--learning-rate", "0.00001")


def train(job, *args: str, **env: str) -> dict:
    """The stack's chief alone, to the end; returns its result line."""
    (chief,) = job.start(*args, workers=0, **env)
    assert chief.wait(timeout=600) == 0, "\n".join(chief.tail)
    return chief.result()


def sidecar(job, *args: str):
    p = job.stack.sync_model(watch=True).with_args("--interval", "0.3", *args).with_env(**job.urls)
    return job.sup.start(f"sidecar-{job.attempt}-{time.monotonic_ns()}", p.cmd, p.env)


def served(job) -> list[str]:
    dest = job.stack.model_dir()
    return sorted(p.name for p in dest.iterdir()) if dest.is_dir() else []


def wait_for(what: str, check, proc, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert proc.returncode is None, f"{proc.name} exited {proc.returncode}:\n" + "\n".join(proc.tail)
        assert time.monotonic() < deadline, f"{what} within {timeout:.0f} s:\n" + "\n".join(proc.tail)
        time.sleep(0.1)


def lines(proc, prefix: str) -> list[str]:
    return [ln.split(" sync-model ", 1)[1] for ln in proc.tail
            if " sync-model " in ln and ln.split(" sync-model ", 1)[1].startswith(prefix)]


def copy_version(job, src: int, dst: int, edit=None) -> None:
    """Copies version `src`'s objects to `dst` on the server itself (`_COMPLETE` last), `edit(key, data)`
    changing any of them on the way: what a second writer with the bucket's key could publish."""
    s3, base = job.s3, job.urls["MODEL_URL"].removeprefix(f"s3://{job.bucket}/")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=job.bucket, Prefix=f"{base}/{src}/")["Contents"]]
    keys.sort(key=lambda k: k.endswith("/_COMPLETE"))
    for key in keys:
        rel = key[len(f"{base}/{src}/"):]
        if rel == "_REJECTED":
            continue
        data = s3.get_object(Bucket=job.bucket, Key=key)["Body"].read()
        data = edit(rel, data) if edit else data
        s3.put_object(Bucket=job.bucket, Key=f"{base}/{dst}/{rel}", Body=data)


@pytest.mark.slow
def test_a_worse_model_is_not_served_and_rollback_moves_serving_back(job, job_factory):
    good = train(job, *GOOD)
    assert good["model_version"] == 1 and good["accuracy"] >= 0.9
    watching = sidecar(job)
    wait_for("version 1 served", lambda: served(job) == ["1"], watching)

    # A retrain that went wrong publishes version 2: the sidecar refuses it in one line and keeps version 1.
    retrain = job_factory()  # its own RUN_URL, the same MODEL_URL
    worse = train(retrain, *WORSE)
    assert worse["model_version"] == 2 and worse["accuracy"] < 0.5
    wait_for("version 2 rejected", lambda: lines(watching, "rejected"), watching)
    time.sleep(1.0)  # a few more passes: decided once, logged once
    assert lines(watching, "rejected") == [f"rejected version 2: accuracy {worse['accuracy']:.4f} < "
                                           f"min-accuracy 0.5000"]
    assert served(job) == ["1"]

    # A good version 3 is promoted; then `rollback --to 1` brings serving back to version 1.
    copy_version(job, 1, 3)
    wait_for("version 3 served", lambda: served(job) == ["1", "3"], watching)
    # The line follows the folder's rename into place.
    wait_for("version 3's promotion logged", lambda: any(
        ln.startswith("added version 3 (promoted: accuracy") for ln in lines(watching, "added")), watching)
    rolled = job.trainer("rollback", "rollback", "--to", "1")
    assert rolled.result() == {"model_url": job.urls["MODEL_URL"], "serving": 1, "rejected": [3]}
    wait_for("serving back on version 1", lambda: served(job) == ["1"], watching)


@pytest.mark.slow
def test_only_versions_signed_by_the_pipeline_key_are_served(job, tmp_path):
    ours = job.trainer("key", "signing-key", "--out", str(tmp_path / "pipeline.pem")).result()
    theirs = job.trainer("other-key", "signing-key", "--out", str(tmp_path / "other.pem")).result()
    good = train(job, *GOOD, MODEL_SIGNING_KEY_FILE=ours["private_key_file"])
    assert good["model_version"] == 1
    watching = sidecar(job, "--public-key", ours["public_key"])
    wait_for("version 1 served", lambda: served(job) == ["1"], watching)

    def flip(rel: str, data: bytes) -> bytes:  # one byte of the weights; _COMPLETE and _SIGNATURE intact
        return bytes([data[0] ^ 0xFF]) + data[1:] if rel.startswith("variables/variables.data") else data

    copy_version(job, 1, 2, flip)
    wait_for("version 2 refused", lambda: lines(watching, "rejected version 2"), watching)
    assert lines(watching, "rejected version 2")[0].startswith(
        "rejected version 2: file does not match its checksum in _COMPLETE")

    other = signing.signer_from_env({signing.KEY_FILE_VAR: theirs["private_key_file"]})

    def resign(rel: str, data: bytes) -> bytes:  # a whole version signed with another key
        return other(complete)[signing.SIGNATURE] if rel == signing.SIGNATURE else data

    s3, base = job.s3, job.urls["MODEL_URL"].removeprefix(f"s3://{job.bucket}/")
    complete = s3.get_object(Bucket=job.bucket, Key=f"{base}/1/_COMPLETE")["Body"].read()
    copy_version(job, 1, 3, resign)
    wait_for("version 3 refused", lambda: lines(watching, "rejected version 3"), watching)
    assert lines(watching, "rejected version 3") == [
        "rejected version 3: the signature does not verify with serving's public key (another key, or a "
        "changed _COMPLETE)"]
    assert served(job) == ["1"]
    marks = json.loads(s3.get_object(Bucket=job.bucket, Key=f"{base}/3/_REJECTED")["Body"].read())
    assert marks["by"] == "sync-model"
