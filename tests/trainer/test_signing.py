"""Signed versions: the pipeline signs `_COMPLETE` (which lists `_EVAL.json` and every file's sha256) with an
Ed25519 key; the serving sidecar refuses an unsigned version, one signed by another key, and one whose files
do not match, each in one line, and keeps serving the last good version."""

from __future__ import annotations

import json
import logging

import pytest

from common.errors import UserError
from tests.helpers.process import stdout_json
from tests.helpers.versions import make_dir
from trainer import signing, sync, versions
from trainer.publish import publish_dir


def new_key(run_trainer, tmp_path, name: str) -> tuple:
    out = run_trainer("signing-key", "--out", str(tmp_path / name), check=True)
    made = stdout_json(out)
    assert (tmp_path / name).stat().st_mode & 0o777 == 0o600
    return str(tmp_path / name), made["public_key"]


def publish_signed(store, version: int, tmp_path, key_file: str | None) -> None:
    src = make_dir(tmp_path / f"src-{version}-{key_file and key_file[-1]}", seed=version)
    (src / versions.EVAL).write_text(json.dumps({"accuracy": 0.99, "loss": 0.1, "count": 360}))
    sign = signing.signer_from_env({signing.KEY_FILE_VAR: key_file}) if key_file else None
    publish_dir(src, store.child(str(version)), sign=sign)


def test_sidecar_serves_only_versions_signed_by_its_key(file_models, run_trainer, tmp_path, caplog):
    ours, public = new_key(run_trainer, tmp_path, "pipeline.pem")
    theirs, _ = new_key(run_trainer, tmp_path, "other.pem")
    publish_signed(file_models, 1, tmp_path, ours)
    publish_signed(file_models, 2, tmp_path, None)  # unsigned
    publish_signed(file_models, 3, tmp_path, theirs)  # another key
    publish_signed(file_models, 4, tmp_path, ours)
    data = file_models.local_path("4/variables/variables.data-00000")
    data.write_bytes(b"\x00" + data.read_bytes()[1:])  # a flipped byte after signing
    gate = sync.Gate(min_accuracy=0.9, public_key=signing.load_public(public))
    with caplog.at_level(logging.INFO, logger="sync-model"):
        result = sync.sync_once(file_models, tmp_path / "serving", 2, gate)
    assert result["versions"] == [1] and result["rejected"] == [2, 3, 4] and result["servable"] == [1]
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("rejected")]
    assert lines == [
        "rejected version 2: unsigned version (no _SIGNATURE)",
        "rejected version 3: the signature does not verify with serving's public key (another key, or a "
        "changed _COMPLETE)",
        f"rejected version 4: file does not match its checksum in _COMPLETE "
        f"({file_models.url_of('4/variables/variables.data-00000')})",
    ]
    assert sorted(versions.rejected(file_models)) == [2, 3, 4]


def test_an_edited_manifest_breaks_the_signature(file_models, run_trainer, tmp_path):
    ours, public = new_key(run_trainer, tmp_path, "pipeline.pem")
    publish_signed(file_models, 1, tmp_path, ours)
    signing.verify(file_models.child("1"), signing.load_public(public))
    # Whoever can write the bucket can rewrite _COMPLETE to match new files, but cannot sign it.
    complete = file_models.local_path("1/_COMPLETE")
    complete.write_text(complete.read_text().replace('"bytes"', '"bytes" ', 1))
    with pytest.raises(signing.BadSignature, match="does not verify"):
        signing.verify(file_models.child("1"), signing.load_public(public))


def test_bad_keys_are_named(tmp_path):
    (tmp_path / "k.pem").write_text("not a key")
    with pytest.raises(UserError, match="cannot read the model signing key"):
        signing.signer_from_env({signing.KEY_FILE_VAR: str(tmp_path / "k.pem")})
    with pytest.raises(UserError, match="not the base64 of 32 Ed25519 bytes"):
        signing.load_public("c2hvcnQ=")
    assert signing.signer_from_env({}) is None
