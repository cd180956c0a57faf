"""The two workflows, parsed once per module, for every test in tests/ci."""

import pytest

from tests.ci.workflow import load


@pytest.fixture(scope="module")
def preview():
    return load("preview.yml")


@pytest.fixture(scope="module")
def deploy():
    return load("deploy.yml")
