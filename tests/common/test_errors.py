"""common/errors.py: the one error type a user can fix, for the whole repository."""

from __future__ import annotations

import ast
from pathlib import Path

from common.errors import UserError

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("common", "trainer", "infra", "render", "ci", "policy", "demo", "bench", "e2e", "tests")


def test_user_error_names_the_thing_the_value_and_the_fix():
    e = UserError("DATA_URL is not an s3:// or file:/// URL", "gs://b/d", "set DATA_URL to s3://<bucket>/<prefix>")
    assert str(e) == "DATA_URL is not an s3:// or file:/// URL (gs://b/d): set DATA_URL to s3://<bucket>/<prefix>"
    assert (e.what, e.value, e.fix) == ("DATA_URL is not an s3:// or file:/// URL", "gs://b/d",
                                        "set DATA_URL to s3://<bucket>/<prefix>")
    assert e.transient is False


def test_every_part_takes_user_error_from_common():
    """No second UserError class, and no import of one from anywhere but common.errors."""
    defined, imported = [], []
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            tree = ast.parse(path.read_text())
            for node in ast.walk(tree):
                if isinstance(node, ast.ClassDef) and node.name == "UserError":
                    defined.append(str(path.relative_to(ROOT)))
                if isinstance(node, ast.ImportFrom) and any(a.name == "UserError" for a in node.names):
                    imported.append((str(path.relative_to(ROOT)), node.module))
    assert defined == ["common/errors.py"]
    assert imported and {module for _, module in imported} == {"common.errors"}, imported
