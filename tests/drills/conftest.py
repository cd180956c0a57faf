"""Shared pieces of the fault drills: a job's environment on the test S3 server, the prepared digits, and a
chief + workers started as real processes from the dev stack's TFJob (demo/podspecs.py: its command, its
environment, TF_CONFIG as the operator sets it), with the drill's own URLs on top."""

from __future__ import annotations

import time
import uuid

import boto3
import pytest

from demo.podspecs import LocalStack
from demo.s3server import CREDENTIALS
from demo.supervisor import Proc, Supervisor
from render import Rendered
from tests.render.renders import RENDERS


def dev_render() -> Rendered:
    return RENDERS("dev", {"training.run": "drill"})


class Job:
    """One training job's URLs on `bucket`, and the processes of its attempts."""

    def __init__(self, s3_server, bucket: str, tmp_path, endpoint: str | None = None):
        self.bucket = bucket
        self.run = f"runs/{uuid.uuid4().hex[:8]}"
        self.s3 = boto3.client("s3", endpoint_url=s3_server.endpoint, region_name="us-east-1")
        self.sup = Supervisor(tmp_path / "logs")
        self.attempt = 0
        # The trainer reaches S3 at `endpoint` (the outage proxy) if given.
        keys = {k: v for k, v in CREDENTIALS.items() if k != "AWS_REGION"}
        self.stack = LocalStack(dev_render(), endpoint or s3_server.endpoint, keys, tmp_path)
        self.urls = {
            "DATA_URL": f"s3://{bucket}/data/digits",
            "RUN_URL": f"s3://{bucket}/{self.run}",
            "MODEL_URL": f"s3://{bucket}/models/mnist",
            "DATA_CACHE_DIR": str(tmp_path / "cache"),
        }
        self.env = {**self.stack.prepare_data().env, **self.urls}

    def trainer(self, name: str, *args: str, timeout: float = 300, **env: str) -> Proc:
        """Runs one `python -m trainer` command to the end; asserts it exits 0."""
        proc = self.sup.trainer(name, list(args), dict(self.env, **env))
        rc = proc.wait(timeout=timeout)
        assert rc == 0, f"{name} exited {rc}:\n" + "\n".join(proc.tail)
        return proc

    def prepare(self, timeout: float = 300) -> Proc:
        """Runs the stack's own data-prep container (command and args from the rendered Workflow) to the end."""
        p = self.stack.prepare_data().with_env(**self.urls)
        proc = self.sup.start("prepare-data", p.cmd, p.env)
        rc = proc.wait(timeout=timeout)
        assert rc == 0, f"prepare-data exited {rc}:\n" + "\n".join(proc.tail)
        return proc

    def start(self, *args: str, workers: int = 1, **env: str) -> list[Proc]:
        """Chief + `workers` workers of one attempt, on fresh ports (a restarted pod gets a new address)."""
        self.attempt += 1
        procs = []
        for p in self.stack.train(workers=workers):
            p = p.with_args(*args).with_env(**self.urls, **env)
            procs.append(self.sup.start(f"attempt{self.attempt}-{p.name.removeprefix('train-')}", p.cmd, p.env))
        return procs

    def checkpoint_steps(self) -> list[int]:
        """Complete checkpoints on the server itself (not through any proxy)."""
        prefix = f"{self.run}/checkpoints/"
        steps = set()
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                head, _, rest = obj["Key"][len(prefix):].partition("/")
                if rest == "_COMPLETE" and head.isdigit():
                    steps.add(int(head))
        return sorted(steps)

    def wait_for_checkpoint(self, procs: list[Proc], min_step: int = 1, timeout: float = 180) -> int:
        """Blocks until a complete checkpoint at step >= min_step is on S3; fails if a process exits first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            steps = self.checkpoint_steps()
            if steps and steps[-1] >= min_step:
                return steps[-1]
            for p in procs:
                assert p.returncode is None, f"{p.name} exited {p.returncode} before a checkpoint:\n" + \
                    "\n".join(p.tail)
            time.sleep(0.2)
        raise AssertionError(f"no complete checkpoint at step >= {min_step} within {timeout:.0f} s")


@pytest.fixture
def job_factory(s3_server, bucket, tmp_path):
    jobs: list[Job] = []

    def make(endpoint: str | None = None) -> Job:
        job = Job(s3_server, bucket, tmp_path / f"job{len(jobs)}", endpoint)
        jobs.append(job)
        return job

    yield make
    for job in jobs:
        job.sup.stop_all()


@pytest.fixture
def job(job_factory) -> Job:
    """A job whose dataset (the offline digits) is already prepared."""
    j = job_factory()
    j.prepare()
    return j

