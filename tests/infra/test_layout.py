"""infra/ holds the components and the config only (issue 12): no import circle between its modules (the
storage modes once set attributes on Storage and imported it back), nothing of the offline render or the CI
check, and no module much over 300 lines."""

from __future__ import annotations

import ast
from pathlib import Path

INFRA = Path(__file__).resolve().parents[2] / "infra"
MAX_LINES = 310


def imports(path: Path) -> set[str]:
    """Every top-level package or infra module PATH imports, lazy and TYPE_CHECKING imports included."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "infra":
                out |= {f"infra.{a.name}" for a in node.names}
            elif node.module.startswith("infra."):
                out.add(".".join(node.module.split(".")[:2]))
            else:
                out.add(node.module.split(".")[0])
        elif isinstance(node, ast.Import):
            out |= {a.name.split(".")[0] for a in node.names}
    return out


def graph() -> dict[str, set[str]]:
    mods = {f"infra.{p.stem}": p for p in INFRA.glob("*.py") if p.stem != "__init__"}
    return {m: {d for d in imports(p) if d in mods} - {m} for m, p in mods.items()}


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    found, done = [], set()

    def visit(node: str, path: list[str]) -> None:
        for dep in sorted(g[node]):
            if dep in path:
                found.append([*path[path.index(dep) :], dep])
            elif dep not in done:
                visit(dep, [*path, dep])
        done.add(node)

    for m in sorted(g):
        visit(m, [m])
    return found


def test_no_import_circle_in_infra():
    assert cycles(graph()) == []


def test_the_cycle_check_finds_one():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]


def test_infra_never_imports_the_render_or_the_ci_check():
    for path in INFRA.glob("*.py"):
        assert not imports(path) & {"render", "ci", "policy", "demo", "bench"}, path.name


def test_no_infra_module_much_over_300_lines():
    sizes = {p.name: len(p.read_text().splitlines()) for p in INFRA.glob("*.py")}
    assert {name: n for name, n in sizes.items() if n > MAX_LINES} == {}
