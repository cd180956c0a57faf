"""Where the CI tools live: the second environment that `make install` builds from requirements/scan.txt
(checkov, actionlint, shellcheck, pulumi-policy), named by $SCAN_VENV (default .venv-scan)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def scan_venv() -> Path:
    path = Path(os.environ.get("SCAN_VENV") or ROOT / ".venv-scan")
    return path if path.is_absolute() else ROOT / path


def tool(name: str) -> Path:
    """A program from the scan environment; a missing one fails the test (it is part of `make install`)."""
    path = scan_venv() / "bin" / name
    if not path.exists():
        pytest.fail(f"{path} is missing: `make install` builds {scan_venv()} from requirements/scan.txt")
    return path


def rendered(stack: str):
    """`render` of a stack as committed, once per test session (the session's cache, tests/render/renders.py)."""
    from tests.render.renders import RENDERS

    return RENDERS(stack)
