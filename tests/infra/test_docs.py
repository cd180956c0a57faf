"""docs/deploy.md documents every config key with its default, and its commands match the program."""

from __future__ import annotations

import re
from pathlib import Path

from infra.config import KEY_NAMES, docs_table

DEPLOY = Path(__file__).resolve().parents[2] / "docs" / "deploy.md"


def deploy_section() -> str:
    return DEPLOY.read_text()


def test_the_table_of_keys_is_the_schemas():
    """The tables are `docs_table()` as they stand: a key added to the schema without its row fails here."""
    regenerate = "paste in the output of: python -c 'from infra.config import docs_table; print(docs_table())'"
    assert docs_table() in deploy_section(), regenerate


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
