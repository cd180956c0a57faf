"""infra/ holds the components and the config only: nothing of the offline render, the CI check or the trainer
(the rules both apply are in common/), and no module much over 300 lines. Import circles are checked over the
whole tree (tests/test_imports.py)."""

from __future__ import annotations

import ast
from pathlib import Path

INFRA = Path(__file__).resolve().parents[2] / "infra"
MAX_LINES = 310
# The config schema is a table with one declaration per key (name, type, default, meaning, check); its logic
# lives in configcheck.py and configload.py, which keep to the limit.
TABLES = {"config.py"}


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


def test_infra_never_imports_the_render_the_ci_check_or_the_trainer():
    for path in INFRA.glob("*.py"):
        assert not imports(path) & {"render", "ci", "policy", "demo", "bench", "trainer"}, path.name


def test_no_infra_module_much_over_300_lines():
    sizes = {p.name: len(p.read_text().splitlines()) for p in INFRA.glob("*.py") if p.name not in TABLES}
    assert {name: n for name, n in sizes.items() if n > MAX_LINES} == {}
