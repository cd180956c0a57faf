"""Shared fixtures: a real S3 server on 127.0.0.1 for the whole session, a fresh bucket per test, and a
helper that runs `python -m trainer` as a real process against it, and the stacks' renders (once per session)."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from demo import supervisor
from demo.s3server import S3Server
from tests.render.renders import RENDERS, VARIANTS, Renders

if TYPE_CHECKING:
    from render import Rendered

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def s3_server():
    with S3Server() as server:
        yield server


@pytest.fixture
def s3_env(s3_server, monkeypatch):
    """Points this process's boto3 at the test server."""
    for key, value in s3_server.env().items():
        monkeypatch.setenv(key, value)
    return s3_server.env()


@pytest.fixture
def bucket(s3_server, s3_env):
    """A new, empty bucket on the test server."""
    import boto3

    name = f"test-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_server.endpoint, region_name="us-east-1").create_bucket(Bucket=name)
    return name


def trainer_env(s3_server: S3Server, **extra: str) -> dict[str, str]:
    """The environment of a `python -m trainer` process against the test server (as the demo builds it)."""
    return supervisor.trainer_env(s3_server.env(), **extra)


@pytest.fixture
def run_trainer(s3_server):
    """Runs `python -m trainer ARGS` as a real process against the test server; returns CompletedProcess."""

    def run(*args: str, env: dict[str, str] | None = None, timeout: float = 300, check: bool = False):
        proc = subprocess.run(
            [sys.executable, "-m", "trainer", *args],
            cwd=ROOT,
            env=trainer_env(s3_server, **(env or {})),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"trainer {args} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
        return proc

    return run


# ---- renders of the stacks (tests/render/renders.py): each rendered once per session ----------------------


@pytest.fixture(scope="session")
def renders() -> Renders:
    return RENDERS


@pytest.fixture(scope="session")
def dev(renders) -> Rendered:
    return renders.variant("dev")


@pytest.fixture(scope="session")
def prod(renders) -> Rendered:
    return renders.variant("prod")


@pytest.fixture(scope="session", params=["dev", "prod"])
def stack(request, renders) -> Rendered:
    return renders.variant(request.param)


@pytest.fixture(scope="session", params=list(VARIANTS))
def variant(request, renders) -> Rendered:
    return renders.variant(request.param)
