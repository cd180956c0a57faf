"""`python -m ci impact`: what a change does to data prep, training and serving, read from two real renders of
the dev stack; and the preview workflow's manifest comment carrying those lines, built by the workflow's own
Diff step in bash and posted by its own github-script under node."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ci import impact
from tests.ci.tools import ROOT
from tests.ci.workflow import load, run_comment_script, run_step, step_using


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory, renders):
    out = tmp_path_factory.mktemp("base")
    renders("dev").write(out / "dev")
    return out


def head(tmp_path, renders, overrides: dict):
    renders("dev", overrides).write(tmp_path / "head" / "dev")
    return tmp_path / "head"


def lines(base_dir, head_dir) -> dict[str, str]:
    return {line.split(": ", 2)[1]: line.split(": ", 2)[2] for line in impact.report(base_dir, head_dir)}


def test_more_epochs_train_from_scratch_and_touch_nothing_else(tmp_path, renders, base_dir):
    got = lines(base_dir, head(tmp_path, renders, {"training.epochs": 10}))
    old, new = renders("dev").outputs["runSpec"]["digest"], renders("dev", {"training.epochs": 10}).outputs[
        "runSpec"]["digest"]
    assert old != new
    assert got == {
        "data prep": "untouched",
        "training": f"from scratch, new run digest {old} -> {new} (training.epochs)",
        "serving": "untouched",
    }


def test_serving_replicas_touch_serving_only(tmp_path, renders, base_dir):
    got = lines(base_dir, head(tmp_path, renders, {"serving.replicas": 3}))
    assert got == {
        "data prep": "untouched",
        "training": "untouched",
        "serving": "scales 1 -> 3 replicas, no restart (serving.replicas)",
    }


def test_more_workers_rerun_data_prep_and_retrain(tmp_path, renders, base_dir):
    got = lines(base_dir, head(tmp_path, renders, {"workers": 4}))
    assert got["data prep"] == "reruns (workers)"  # 5 processes: 5 shards, not 4
    assert got["training"].startswith("from scratch, new run digest ") and got["training"].endswith("(workers)")
    assert got["serving"] == "untouched"


def test_a_backoff_limit_resumes_in_a_new_tfjob_and_a_poll_change_restarts_serving(tmp_path, renders, base_dir):
    got = lines(base_dir, head(tmp_path, renders, {"training.backoffLimit": 7, "serving.pollSeconds": 11}))
    assert got == {
        "data prep": "untouched",
        "training": "resumes from its last checkpoint in a new TFJob (training.backoffLimit)",
        "serving": "restarts, a rolling update of its pods (serving.pollSeconds)",
    }


def test_the_command_prints_one_line_per_stack_and_piece_and_refuses_a_missing_folder(tmp_path, base_dir):
    (tmp_path / "head" / "prod").mkdir(parents=True)
    (tmp_path / "head" / "prod" / "NOT-RENDERED").write_text("")
    cmd = [sys.executable, "-m", "ci", "impact", str(base_dir), str(base_dir)]
    same = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    assert same.returncode == 0, same.stderr
    assert same.stdout.splitlines() == ["dev: data prep: untouched", "dev: training: untouched",
                                        "dev: serving: untouched"]
    missing = subprocess.run([*cmd[:-1], str(tmp_path / "nowhere")], capture_output=True, text=True, cwd=ROOT)
    assert missing.returncode == 2 and "nowhere is not a folder" in missing.stderr
    assert impact.report(base_dir, tmp_path / "head")[-1] == "prod: not rendered at head: impact unknown"


def test_the_manifest_comment_shows_the_impact(tmp_path, renders, base_dir):
    """The Diff step runs in a workspace laid out as the job's (base/ and head/ checkouts, out/<side>/<stack>),
    its comment.md is then posted by the comment job's script."""
    workflow = load("preview.yml")
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "head").symlink_to(ROOT)
    renders("dev").write(ws / "out" / "base" / "dev")
    renders("dev", {"serving.replicas": 2}).write(ws / "out" / "head" / "dev")
    diff = next(s for s in workflow["jobs"]["manifests"]["steps"] if s.get("name") == "Diff")
    summary = tmp_path / "summary.md"
    run = run_step(diff, {}, tmp_path, cwd=ws, runner_env={"GITHUB_STEP_SUMMARY": str(summary)})
    assert run.returncode == 0, run.stderr
    script = step_using(workflow["jobs"]["manifests-comment"], "actions/github-script")["with"]["script"]
    [_, (verb, number, body)] = run_comment_script(script, {}, existing=[], cwd=ws)
    assert (verb, number) == ("create", 12)
    assert body.startswith("<!-- manifest-diff -->")
    impact_part = body.split("### ML impact: base → head", 1)[1].split("### Rendered manifests", 1)[0]
    assert "dev: serving: scales 1 -> 2 replicas, no restart (serving.replicas)" in impact_part
    assert "dev: training: untouched" in impact_part and "dev: data prep: untouched" in impact_part
    assert "+  replicas: 2" in body  # the manifest diff follows
