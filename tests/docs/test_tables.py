"""The pages' tables match the code they describe: the trainer's flags and tuning variables, the demo's knobs,
the policies, the CI settings, the benchmark's figures and goals, and the e2e tools' versions.
(The config keys' table is tests/infra/test_docs.py's.)"""

from __future__ import annotations

import argparse
import importlib
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"


def section(page: str, heading: str) -> str:
    """The text under `heading` (a `## ` line of docs/<page>), up to the next heading of that level or above."""
    text = (DOCS / page).read_text()
    start = text.index(f"\n## {heading}\n")
    end = re.compile(r"^#{1,2} ", re.M).search(text, start + 1 + len(heading))
    return text[start : end.start() if end else None]


def rows(text: str) -> list[list[str]]:
    """Each table row's cells, header and rule lines left out."""
    out = []
    for line in text.splitlines():
        if line.startswith("|") and not re.fullmatch(r"[|\s:-]+", line):
            out.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return out[1:] if out else out


def unquote(cell: str) -> str:
    return cell.strip().strip("`")


def parser_for(command: str) -> argparse.ArgumentParser:
    """The argument parser of `python -m trainer <command>`, built as trainer.cli builds it."""
    from trainer import cli

    module = importlib.import_module(cli.COMMANDS[command][0])
    parser = argparse.ArgumentParser(prog=f"python -m trainer {command}")
    module.add_arguments(parser)
    return parser


def flags(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {s: a for a in parser._actions for s in a.option_strings if s.startswith("--") and s != "--help"}


def test_the_train_flags_table_is_the_parser():
    table = {unquote(r[0]): r for r in rows(section("trainer.md", "`python -m trainer train`"))}
    actions = flags(parser_for("train"))
    assert set(table) == set(actions), "docs/trainer.md's train table and `train --help` list other flags"
    for flag, (_, var, default, _meaning) in table.items():
        action = actions[flag]
        if var:
            assert action.metavar == unquote(var), flag
            continue
        if isinstance(action.default, bool):  # a switch
            assert default == ("on" if action.default else "off"), (flag, default)
        elif action.default is None:  # chosen at run time: the meaning says how
            assert default and not re.fullmatch(r"[\d.eE+-]+", default), (flag, default)
        else:
            assert default and float(default) == float(action.default), (flag, default, action.default)


@pytest.mark.parametrize("command", ["prepare-data", "sync-model", "predict", "evaluate"])
def test_the_usage_lines_name_real_flags(command):
    text = (DOCS / "trainer.md").read_text()
    usages = re.findall(rf"^(?:python -m trainer )?`?{command} (\[?--.*)$", text, re.M)
    usages += re.findall(rf"^python -m trainer {command} (.*)$", text, re.M)
    named = {f for usage in usages for f in re.findall(r"--[a-z][\w-]*", usage)}
    assert named, f"no usage line of {command} in docs/trainer.md"
    assert named - set(flags(parser_for(command))) == set(), command


def test_the_s3_tuning_table_gives_the_defaults_the_code_uses():
    source = (ROOT / "trainer/s3.py").read_text()
    code = {name: float(value) for name, value in re.findall(r'_env_number\("(S3_\w+)", ([\d.]+)', source)}
    documented = {}
    for cells in rows(section("trainer.md", "Environment")):
        if len(cells) == 3 and cells[0].startswith("`S3_"):
            names = re.findall(r"`(S3_\w+)`", cells[0])
            values = [v.strip() for v in cells[1].split(",")]
            documented.update(zip(names, map(float, values), strict=True))
    assert code and documented == code


def test_the_demo_knobs_are_the_ones_it_reads():
    """The knobs' module (the one defining `env_flag`) reads exactly the table's variables."""
    files = [p for p in (ROOT / "demo").glob("*.py") if re.search(r"^def env_flag\(", p.read_text(), re.M)]
    assert len(files) == 1, files
    read = set(re.findall(r'(?:environ\.get|env_int|env_flag)\("([A-Z_]+)"', files[0].read_text()))
    table = {unquote(r[0]) for r in rows(section("demo.md", "Knobs (environment variables)"))}
    assert table and table == read


def test_the_policy_table_is_the_pack():
    from policy import rules

    table = {unquote(r[0]): r for r in rows(section("ci.md", "Policy pack (Pulumi CrossGuard)")) if len(r) == 3}
    assert set(table) == set(rules.BY_NAME)
    for name, (_, _, config) in table.items():
        assert set(re.findall(r"`(\w+)`", config)) == set(rules.BY_NAME[name].config), name


def test_every_ci_setting_in_the_table_is_used_by_a_workflow():
    used = set()
    for path in (ROOT / ".github/workflows").glob("*.yml"):
        used |= set(re.findall(r"\b(?:secrets|vars)\.([A-Z][A-Z0-9_]*)", path.read_text()))
    table = {unquote(r[0]): r[1] for r in rows(section("ci.md", "Secrets and variables"))}
    assert set(table) == used - {"GITHUB_TOKEN"}
    for path in (ROOT / ".github/workflows").glob("*.yml"):
        for kind, name in re.findall(r"\b(secrets|vars)\.([A-Z][A-Z0-9_]*)", path.read_text()):
            if name in table:
                assert table[name].startswith("secret" if kind == "secrets" else "variable"), (name, table[name])


def test_the_benchmark_figures_and_goals_are_the_bench_s():
    bench = importlib.import_module("bench.__main__")
    text = (DOCS / "performance.md").read_text()
    json_lines = [json.loads(line) for line in re.findall(r"^(\{.*\})$", text, re.M)]
    json_lines = [line for line in json_lines if "input_s3_vs_local" in line]  # bench.gpu's lines have their own
    # A run from before a key was added prints the keys it had: a prefix of today's, in order.
    assert json_lines and all(list(line) == list(bench.KEYS)[: len(line)] for line in json_lines)
    symbol = {">=": "≥", "<=": "≤"}
    table = rows(section("performance.md", "The figures"))
    seen = set()
    for cells in table:
        keys = [k for k in re.findall(r"`(\w+)`", cells[1]) if k in bench.KEYS]
        for key in keys:
            seen.add(key)
            goal = bench.GOALS[key]
            if goal:
                assert re.search(rf"{symbol[goal[0]]} {goal[1]:g}\b", cells[3]), (key, cells[3], goal)
    assert {k for k, goal in bench.GOALS.items() if goal} <= seen


def test_the_e2e_tool_versions_are_the_ones_built():
    from e2e import tools

    table = rows(section("e2e.md", "End-to-end: `make e2e`"))
    versions = " ".join(cells[1] for cells in table if len(cells) == 2)
    for name in ("PULUMI", "K8S_PROVIDER", "ETCD", "KUBERNETES", "TRAINING_OPERATOR", "ARGO", "COREDNS", "MINIO", "MC"):
        assert getattr(tools, name) in versions, name


def test_the_image_commands_table_is_what_the_stacks_run():
    from render import render
    from tests.images import commands

    table = {(r[0], unquote(r[1])) for r in rows(section("trainer.md", "Images")) if len(r) == 3}
    rendered = {}
    for stack in ("dev", "prod"):
        for c in commands.collect(render(stack)):
            if c.ours:
                shell = re.sub(r"s3://[\w.-]+/", "s3://<bucket>/", c.shell)
                rendered.setdefault(stack, set()).add((c.image, shell))
    assert table == rendered["dev"], "docs/trainer.md, Images: the dev stack runs other commands"
    text = section("trainer.md", "Images")
    for _, shell in rendered["prod"] - rendered["dev"]:  # prod differs only where the table says, `--shards 5`
        words = shell.split()
        twins = [dev.split() for _, dev in rendered["dev"] if len(dev.split()) == len(words)]
        diffs = [[i for i, (a, b) in enumerate(zip(words, twin, strict=True)) if a != b] for twin in twins]
        nearest = min(diffs, key=len)
        assert nearest and all(f"`{words[i - 1]} {words[i]}`" in text for i in nearest), shell
