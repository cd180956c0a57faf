"""A version's evaluation (`_EVAL.json`, covered by `_COMPLETE`), the serving sidecar's promotion gate, and
`reject` / `rollback`. In-process on a local folder, and as real processes against the S3 server."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from tests.helpers.process import stdout_json
from tests.helpers.versions import make_dir
from trainer import export, sync, versions
from trainer.publish import publish_dir
from trainer.store import open_store
from trainer.storeerrors import AccessError


def publish_scored(store, version: int, tmp_path: Path, accuracy: float | None, **record) -> Path:
    """Publishes a version whose `_EVAL.json` says `accuracy` (none at all when None)."""
    src = make_dir(tmp_path / f"src-{version}-{accuracy}", seed=version)
    if accuracy is not None:
        ev = {"format": 1, "accuracy": accuracy, "loss": 0.1, "count": 360, **record}
        (src / versions.EVAL).write_text(json.dumps(ev))
    publish_dir(src, store.child(str(version)))
    return src


def test_eval_is_read_only_when_it_matches_its_checksum(file_models, tmp_path):
    publish_scored(file_models, 1, tmp_path, 0.98)
    assert versions.read_eval(file_models.child("1"))["accuracy"] == 0.98
    # A flipped byte in the record (a better-looking score) no longer matches the manifest.
    path = file_models.local_path(f"1/{versions.EVAL}")
    path.write_text(path.read_text().replace("0.98", "0.99"))
    with pytest.raises(versions.Untrusted, match="does not match its checksum"):
        versions.read_eval(file_models.child("1"))
    publish_scored(file_models, 2, tmp_path, None)
    with pytest.raises(versions.Untrusted, match="no evaluation"):
        versions.read_eval(file_models.child("2"))


def test_gate_rule():
    good, worse = {"accuracy": 0.99}, {"accuracy": 0.97}
    assert versions.gate(good, None, 0.9, 0.01) is None
    assert versions.gate(worse, None, 0.98, None) == "accuracy 0.9700 < min-accuracy 0.9800"
    assert "max-regression 0.0100" in versions.gate(worse, good, None, 0.01)
    assert versions.gate(worse, good, None, 0.05) is None


def test_sync_keeps_serving_the_last_good_version(file_models, tmp_path, caplog):
    dest = tmp_path / "serving"
    gate = sync.Gate(min_accuracy=0.9, max_regression=0.01)
    publish_scored(file_models, 1, tmp_path, 0.99)
    assert sync.sync_once(file_models, dest, 2, gate)["versions"] == [1]
    publish_scored(file_models, 2, tmp_path, 0.5)  # below the floor
    publish_scored(file_models, 3, tmp_path, 0.975)  # above the floor, but worse than the served 0.99
    publish_scored(file_models, 4, tmp_path, None)  # no evaluation at all
    with caplog.at_level(logging.INFO, logger="sync-model"):
        result = sync.sync_once(file_models, dest, 2, gate)
    assert result["versions"] == [1] and result["servable"] == [1] and result["rejected"] == [2, 3, 4]
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("rejected")]
    assert lines == ["rejected version 2: accuracy 0.5000 < min-accuracy 0.9000",
                     "rejected version 3: accuracy 0.9750 < 0.9800 (served version's 0.9900 - max-regression "
                     "0.0100)",
                     "rejected version 4: no trusted evaluation: the version has no evaluation (no _EVAL.json "
                     "in its _COMPLETE)"]
    marks = versions.rejected(file_models)
    assert sorted(marks) == [2, 3, 4] and marks[2]["by"] == "sync-model" and "0.5000" in marks[2]["reason"]
    # Decided once: a later pass, or another sidecar, does not reconsider or log them again.
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="sync-model"):
        assert sync.sync_once(file_models, dest, 2, sync.Gate(0.9, 0.01))["rejected"] == []
    assert not [r for r in caplog.records if r.getMessage().startswith("rejected")]
    publish_scored(file_models, 5, tmp_path, 0.995)
    assert sync.sync_once(file_models, dest, 2, gate)["versions"] == [1, 5]


def test_without_a_gate_only_marks_count(file_models, tmp_path):
    dest = tmp_path / "serving"
    publish_scored(file_models, 1, tmp_path, 0.99)
    publish_scored(file_models, 2, tmp_path, None)
    assert sync.sync_once(file_models, dest, 2)["versions"] == [1, 2]
    versions.reject(file_models, 2, "by hand", "test")
    result = sync.sync_once(file_models, dest, 2)
    assert result["versions"] == [1] and result["removed"] == [2]


def test_read_only_sidecar_keeps_its_decision_in_memory(file_models, tmp_path, monkeypatch, caplog):
    def denied(*_args):
        raise AccessError("access denied", "s3://b/models/mnist/2/_REJECTED", "grant s3:PutObject")

    monkeypatch.setattr(versions, "reject", denied)
    gate = sync.Gate(min_accuracy=0.9)
    publish_scored(file_models, 1, tmp_path, 0.99)
    publish_scored(file_models, 2, tmp_path, 0.5)
    with caplog.at_level(logging.INFO, logger="sync-model"):
        assert sync.sync_once(file_models, tmp_path / "serving", 2, gate)["versions"] == [1]
    assert any("cannot write its _REJECTED mark" in r.getMessage() for r in caplog.records)
    assert versions.rejected(file_models) == {}
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="sync-model"):
        assert sync.sync_once(file_models, tmp_path / "serving", 2, gate)["rejected"] == []
    assert not caplog.records


def test_rerun_finds_its_version_without_export_json(file_models, tmp_path):
    """The chief was stopped between the version's _COMPLETE and export.json: its rerun reports that version."""
    run = open_store(f"file://{tmp_path}/runs/r1", "RUN_URL")
    publish_scored(file_models, 1, tmp_path, 0.9, run="file:///elsewhere", step=880)
    publish_scored(file_models, 2, tmp_path, 0.97, run=run.url, step=880)
    assert export._previous_export(440, run, file_models) is None  # another step of this run: a new export
    done = export._previous_export(880, run, file_models)
    assert done["model_version"] == 2 and done["accuracy"] == 0.97 and done["export_url"] == file_models.url_of("2")
    assert json.loads(run.get_bytes(export.EXPORT_RECORD))["model_version"] == 2


def test_sync_model_logs_a_rejection_once(s3_models, run_trainer, tmp_path):
    publish_scored(s3_models, 1, tmp_path, 0.99)
    publish_scored(s3_models, 2, tmp_path, 0.6)
    args = ("sync-model", "--dest", str(tmp_path / "serving"), "--min-accuracy", "0.9")
    env = {"MODEL_URL": s3_models.url}
    first = run_trainer(*args, env=env, check=True)
    assert stdout_json(first)["versions"] == [1]
    assert [ln.split(" sync-model ", 1)[1] for ln in first.stderr.splitlines() if "rejected" in ln] == \
        ["rejected version 2: accuracy 0.6000 < min-accuracy 0.9000"]
    second = run_trainer(*args, env=env, check=True)
    assert "rejected" not in second.stderr


def test_rollback_and_reject_commands(s3_models, run_trainer, tmp_path):
    for v in (1, 2, 3):
        publish_scored(s3_models, v, tmp_path, 0.99)
    env = {"MODEL_URL": s3_models.url}
    dest = tmp_path / "serving"
    sync_args = ("sync-model", "--dest", str(dest), "--keep", "2")
    assert stdout_json(run_trainer(*sync_args, env=env, check=True))["versions"] == [2, 3]

    versions.reject(s3_models, 3, "scored on the wrong split", "test")
    out = run_trainer("rollback", "--model-url", s3_models.url, "--to", "1", check=True)
    assert stdout_json(out) == {"model_url": s3_models.url, "serving": 1, "rejected": [2]}
    marks = versions.rejected(s3_models)
    assert marks[2]["reason"] == "rolled back to version 1" and marks[3]["reason"] == "scored on the wrong split"
    result = stdout_json(run_trainer(*sync_args, env=env, check=True))
    assert result["versions"] == [1] and result["removed"] == [2, 3]

    out = run_trainer("reject", "1", "--reason", "leaks test data", env=env, check=True)
    assert stdout_json(out)["rejected"] == [1]
    proc = run_trainer(*sync_args, env=env)
    assert proc.returncode == 2 and "error: no servable model version" in proc.stderr.splitlines()[-1]
    proc = run_trainer("rollback", "--to", "1", env=env)
    assert proc.returncode == 2 and "error: version 1 is rejected" in proc.stderr.splitlines()[-1]
    proc = run_trainer("rollback", "--to", "7", env=env)
    assert proc.returncode == 2 and "pass one of the complete versions (1, 2, 3)" in proc.stderr
