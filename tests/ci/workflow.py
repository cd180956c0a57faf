"""Read the workflows, and run one of their `run:` steps for real in bash, the way a GitHub runner would.

`run_step` replaces each `${{ … }}` expression with a value the test gives (only plain references such as
`vars.X`, `steps.s.outputs.o`, and `secrets.X != ''` occur in the steps run here; anything else fails the
test), then runs the script with `bash -e` (or `bash -eo pipefail` for `shell: bash`, as GitHub does) in
the repository root, with `$GITHUB_OUTPUT`, `$GITHUB_ENV` and `$RUNNER_TEMP` pointing into a temporary folder.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.ci.tools import ROOT

WORKFLOWS = ROOT / ".github/workflows"
_EXPR = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")
_HAS_SECRET = re.compile(r"^secrets\.(\w+) != ''$")
_REF = re.compile(r"^[\w-]+(\.[\w-]+)+$")


def load(name: str, text: str | None = None) -> dict:
    return yaml.safe_load(text if text is not None else (WORKFLOWS / name).read_text())


def triggers(workflow: dict) -> dict:
    return workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as true


def _one(found: list[dict], what: str) -> dict:
    assert len(found) == 1, f"expected exactly one step {what}, found {len(found)}"
    return found[0]


def step_using(job: dict, action: str) -> dict:
    return _one([s for s in job["steps"] if s.get("uses", "").startswith(action + "@")], f"using {action}")


def steps_using(job: dict, action: str) -> list[dict]:
    return [s for s in job["steps"] if s.get("uses", "").startswith(action + "@")]


def step_with_id(job: dict, step_id: str) -> dict:
    return _one([s for s in job["steps"] if s.get("id") == step_id], f"with id {step_id!r}")


def index_of(job: dict, step: dict) -> int:
    return next(i for i, s in enumerate(job["steps"]) if s is step)


def stack_jobs(workflow: dict) -> dict[str, dict]:
    """The jobs that run pulumi against a stack (deploy's dev and prod, preview's matrix job)."""
    return {
        name: job for name, job in workflow["jobs"].items()
        if any(s.get("uses", "").startswith("pulumi/actions@") for s in job.get("steps", []))
    }


def substitute(text: str, values: dict[str, str]) -> str:
    def one(match: re.Match) -> str:
        expr = match.group(1)
        has = _HAS_SECRET.match(expr)
        if has:
            return "true" if values.get(f"secrets.{has.group(1)}") else "false"
        if _REF.match(expr):
            if expr.startswith(("vars.", "secrets.")):
                return values.get(expr, "")
            if expr not in values:
                raise KeyError(f"the test gives no value for ${{{{ {expr} }}}}")
            return values[expr]
        raise ValueError(f"expression not supported by this runner: {expr}")

    return _EXPR.sub(one, text)


@dataclass
class StepRun:
    returncode: int
    stdout: str
    stderr: str
    outputs: dict[str, str]
    env_file: str
    temp: Path


def run_step(step: dict, values: dict[str, str], tmp_path: Path, timeout: float = 120,
             runner_env: dict[str, str] | None = None, cwd: Path = ROOT) -> StepRun:
    """`runner_env`: what the runner itself sets (GITHUB_REPOSITORY_OWNER, ...), beside the step's `env`;
    `cwd`: the checkout (default the repository; a copy when the step writes to it)."""
    temp = tmp_path / "runner-temp"
    temp.mkdir(exist_ok=True)
    output, env_file = tmp_path / "github-output", tmp_path / "github-env"
    output.write_text("")
    env_file.write_text("")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "RUNNER_", "AWS_", "PULUMI_"))}
    env.update({k: substitute(str(v), values) for k, v in (step.get("env") or {}).items()})
    env.update(runner_env or {})
    env.update(GITHUB_OUTPUT=str(output), GITHUB_ENV=str(env_file), RUNNER_TEMP=str(temp), GITHUB_ACTIONS="true")
    script = tmp_path / "step.sh"
    script.write_text(substitute(step["run"], values))
    flags = ["-eo", "pipefail"] if step.get("shell") == "bash" else ["-e"]
    proc = subprocess.run(["bash", "--noprofile", "--norc", *flags, str(script)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)
    outputs = dict(line.split("=", 1) for line in output.read_text().splitlines() if "=" in line)
    return StepRun(proc.returncode, proc.stdout, proc.stderr, outputs, env_file.read_text(), temp)


def run_comment_script(
    script: str, env: dict[str, str], existing: list[dict], cwd: Path | None = None
) -> list[tuple]:
    """Runs the github-script step's JavaScript under node the way actions/github-script v8 does (an async
    function of `require`, `github`, `context`), with an in-memory stand-in for GitHub's REST API that
    records the calls (GitHub cannot run here); `cwd`: the runner's workspace (default the test's own)."""
    harness = textwrap.dedent("""
        const calls = [];
        const existing = JSON.parse(process.env.EXISTING);
        const github = {
          paginate: async (fn, args) => fn(args),
          rest: { issues: {
            listComments: async (args) => { calls.push(['list', args.issue_number]); return existing; },
            updateComment: async (args) => { calls.push(['update', args.comment_id, args.body]); },
            createComment: async (args) => { calls.push(['create', args.issue_number, args.body]); },
          } },
        };
        const context = { serverUrl: 'https://github.com', runId: 7, repo: { owner: 'o', repo: 'r' },
                          payload: { pull_request: { number: 12 } } };
        const AsyncFunction = Object.getPrototypeOf(async function () {}).constructor;
        const fn = new AsyncFunction('require', 'github', 'context', process.env.SCRIPT);
        fn(require, github, context).then(() => console.log(JSON.stringify(calls)),
                                          (e) => { console.error(e); process.exit(1); });
    """)
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is missing: it runs the github-script steps (Debian package nodejs; GitHub's runners "
                    "have it)")
    env = {"PATH": os.environ.get("PATH", ""), "SCRIPT": script, "EXISTING": json.dumps(existing), **env}
    proc = subprocess.run([node, "-e", harness], capture_output=True, text=True, timeout=60, env=env,
                          cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    return [tuple(c) for c in json.loads(proc.stdout)]
