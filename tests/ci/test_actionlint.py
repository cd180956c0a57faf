"""actionlint passes on every workflow (with shellcheck over the `run:` scripts), and it does bite.

actionlint knows the inputs of popular actions by their major tag (`actions/checkout@v7`); the workflows pin
commits with the release in a comment (`@<sha> # v7.0.1`), which it cannot look up. So the workflows are also
linted once more with each pin replaced by its release's major tag, which catches a misspelt or removed input.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

from tests.ci.tools import ROOT, tool

WORKFLOWS = sorted((ROOT / ".github/workflows").glob("*.yml"))


def actionlint(files: list[Path], cwd: Path) -> list[dict]:
    proc = subprocess.run(
        [str(tool("actionlint")), "-shellcheck", str(tool("shellcheck")), "-format", "{{json .}}",
         *map(str, files)],
        cwd=cwd, capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode in (0, 1), proc.stderr  # 1: problems found; anything else: it did not run
    return json.loads(proc.stdout or "[]")


def show(errors: list[dict]) -> str:
    return "\n".join(f"{Path(e['filepath']).name}:{e['line']}: [{e['kind']}] {e['message']}" for e in errors)


def test_there_are_workflows():
    assert {path.name for path in WORKFLOWS} >= {"preview.yml", "deploy.yml"}


def test_actionlint_passes_on_every_workflow():
    errors = actionlint(WORKFLOWS, ROOT)
    assert errors == [], show(errors)


def test_action_inputs_match_the_pinned_major_versions(tmp_path):
    folder = tmp_path / ".github/workflows"
    folder.mkdir(parents=True)
    for path in WORKFLOWS:
        text = re.sub(r"(uses: [\w.-]+/[\w./-]+@)[0-9a-f]{40} # (v\d+)\.\d+\.\d+", r"\1\2", path.read_text())
        (folder / path.name).write_text(text)
    errors = actionlint(sorted(folder.glob("*.yml")), tmp_path)
    assert errors == [], show(errors)


def test_actionlint_reports_a_broken_workflow(tmp_path):
    folder = tmp_path / ".github/workflows"
    folder.mkdir(parents=True)
    bad = folder / "bad.yml"
    bad.write_text(
        "name: bad\n"
        "on: pull_request\n"
        "jobs:\n"
        "  preview:\n"
        "    runs-on: ubuntu-24.04\n"
        "    steps:\n"
        "      - uses: pulumi/actions@v7\n"
        "        with:\n"
        "          comand: preview\n"  # misspelt input
        "      - run: echo ${{ github.event.pull_request.title }}\n"  # script injection
        "      - run: cp $SRC /tmp\n"  # unquoted: shellcheck SC2086
        "      - if: ${{ matrix.stack == 'dev' }}\n"  # no matrix in this job
        "        run: echo dev\n"
    )
    errors = actionlint([bad], tmp_path)
    found = {(e["line"], e["kind"]) for e in errors}
    assert {(9, "action"), (10, "expression"), (11, "shellcheck"), (12, "expression")} <= found, show(errors)
