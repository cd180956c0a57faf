"""docs/deploy.md documents every config key with its default, and its commands match the program."""

from __future__ import annotations

import re
from pathlib import Path

from infra.config import KEY_NAMES, KEYS, WORKLOADS

DEPLOY = Path(__file__).resolve().parents[2] / "docs" / "deploy.md"


def deploy_section() -> str:
    return DEPLOY.read_text()


def shown(default) -> str:
    if default is None:
        return "(none)"
    if isinstance(default, bool):
        return "`true`" if default else "`false`"
    return f"`{default}`"


def test_every_key_is_in_the_table():
    text = deploy_section()
    rows = {
        m.group(1): m.group(2).strip() for m in re.finditer(r"^\| `([\w.]+)`(?: \(secret\))? \| ([^|]+) \|", text, re.M)
    }
    for key in KEYS:
        workload, _, suffix = key.name.rpartition(".")
        if workload in WORKLOADS and suffix in ("cpu", "memory", "cpuLimit", "memoryLimit"):
            continue
        assert key.name in rows, f"{key.name} is missing from docs/deploy.md"
        assert rows[key.name] == shown(key.default), (key.name, rows[key.name])
    assert set(rows) - set(KEY_NAMES) <= set(WORKLOADS), set(rows) - set(KEY_NAMES)
    for workload in WORKLOADS:
        row = re.search(rf"^\| `{workload}` \|(.+)\|$", text, re.M).group(1)
        cells = [c.strip() for c in row.split("|")]
        assert cells == [
            shown(KEY_NAMES[f"{workload}.{s}"].default) for s in ("cpu", "memory", "cpuLimit", "memoryLimit")
        ]


def test_documented_commands_match_the_outputs(dev):
    text = deploy_section()
    for command in dev.outputs["portForward"].values():
        assert command in text
    assert dev.outputs["predictCommand"].split(" --server")[0] in text
    assert "pulumi config set --secret --path kubeflow-e2e:storage.accessKeyId" in text
    assert "python -m render --stack dev --out" in text


def test_the_front_page_quick_start_matches_the_program(dev):
    """README.md's Deploy quick start: its port-forwards are the stack's outputs, its config keys are known."""
    readme = (DEPLOY.parents[1] / "README.md").read_text()
    start = readme.index("\n## Deploy\n")
    quick = readme[start : readme.index("\n## ", start + 1)]
    forwards = re.findall(r"^(kubectl .*port-forward \S+ \S+)", quick, re.M)
    assert forwards and set(forwards) <= set(dev.outputs["portForward"].values())


def test_every_config_set_on_a_page_names_a_known_key():
    root = DEPLOY.parents[1]
    for page in [root / "README.md", *sorted((root / "docs").glob("*.md"))]:
        for key in re.findall(r"pulumi config set (?:--secret )?(?:--path )?kubeflow-e2e:([\w.]+)", page.read_text()):
            assert key in KEY_NAMES, f"{page.name}: `pulumi config set` of an unknown key {key}"
