"""Atomic publish (files first, `_COMPLETE` last) and verified fetch, on the real S3 server and a folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from common.errors import UserError
from tests.conftest import ROOT
from tests.helpers.killers import KILL_MID_PUBLISH
from tests.helpers.versions import make_dir, same_tree
from trainer.publish import COMPLETE, complete_versions, fetch_dir, next_version, publish_dir, read_complete
from trainer.store import open_store
from trainer.storeerrors import NotFound, StoreError


def test_publish_then_fetch(models, tmp_path):
    src = make_dir(tmp_path / "export")
    assert next_version(models) == 1 and complete_versions(models) == []
    manifest = publish_dir(src, models.child("1"))
    assert [f["path"] for f in manifest["files"]] == [
        "saved_model.pb", "variables/variables.data-00000", "variables/variables.data-00001"
    ]
    assert read_complete(models.child("1")) == manifest
    assert models.list()["1/" + COMPLETE] > 0
    assert complete_versions(models) == [1] and next_version(models) == 2

    dest = fetch_dir(models.child("1"), tmp_path / "serving" / "1")
    assert same_tree(src, dest)
    assert sorted(p.name for p in (tmp_path / "serving").iterdir()) == ["1"]  # no temp sibling left


def test_incomplete_version_is_invisible(models, tmp_path):
    publish_dir(make_dir(tmp_path / "v1"), models.child("1"))
    # Version 2: every file uploaded, but _COMPLETE never written (the uploader died).
    src = make_dir(tmp_path / "v2", seed=2)
    for p in src.rglob("*"):
        if p.is_file():
            models.child("2").put_file(p.relative_to(src).as_posix(), p)
    assert complete_versions(models) == [1]
    assert next_version(models) == 3  # an interrupted number is not reused
    with pytest.raises(NotFound, match="_COMPLETE"):
        fetch_dir(models.child("2"), tmp_path / "out" / "2")
    assert not (tmp_path / "out" / "2").exists()


def test_corrupt_file_fails_and_leaves_nothing(models, tmp_path):
    publish_dir(make_dir(tmp_path / "v1"), models.child("1"))
    models.child("1").put_bytes("variables/variables.data-00001", b"tampered")
    with pytest.raises(StoreError) as e:
        fetch_dir(models.child("1"), tmp_path / "out" / "1")
    assert "checksum" in str(e.value) and "variables.data-00001" in str(e.value)
    assert list((tmp_path / "out").iterdir()) == []


def test_fetch_replaces_an_existing_destination(models, tmp_path):
    publish_dir(make_dir(tmp_path / "v1"), models.child("1"))
    dest = tmp_path / "out" / "1"
    dest.mkdir(parents=True)
    (dest / "stale.txt").write_text("old")
    fetch_dir(models.child("1"), dest)
    assert same_tree(tmp_path / "v1", dest)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["1"]


def test_republish_replaces_manifest(models, tmp_path):
    publish_dir(make_dir(tmp_path / "a", files=3), models.child("5"))
    second = publish_dir(make_dir(tmp_path / "b", seed=9, files=2), models.child("5"))
    assert read_complete(models.child("5")) == second
    dest = fetch_dir(models.child("5"), tmp_path / "out")
    assert same_tree(tmp_path / "b", dest)


def test_publish_refuses_empty_or_missing_folder(models, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="empty"):
        publish_dir(tmp_path / "empty", models.child("1"))
    with pytest.raises(UserError, match="not a folder"):
        publish_dir(tmp_path / "nope", models.child("1"))
    assert models.list() == {}


def test_non_integer_children_are_not_versions(models, tmp_path):
    publish_dir(make_dir(tmp_path / "v"), models.child("007"))
    publish_dir(make_dir(tmp_path / "w"), models.child("tmp"))
    publish_dir(make_dir(tmp_path / "x"), models.child("12"))
    assert complete_versions(models) == [12]


def test_process_killed_mid_publish_leaves_no_complete_version(bucket, s3_server, tmp_path):
    models = open_store(f"s3://{bucket}/models")
    publish_dir(make_dir(tmp_path / "v1"), models.child("1"))
    src = make_dir(tmp_path / "v2", seed=2, files=6)
    env = {**os.environ, **s3_server.env(), "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-c", KILL_MID_PUBLISH, str(src), models.child("2").url],
        env=env, capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == -9, proc.stderr
    uploaded = models.child("2").list()
    assert len(uploaded) >= 2 and COMPLETE not in uploaded
    assert complete_versions(models) == [1]
    assert json.loads(models.get_bytes("1/" + COMPLETE))["format"] == 1
