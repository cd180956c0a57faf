"""Every page (README.md and docs/*.md) stays true to the repository: its links and anchors resolve, and the
files, modules, names and make targets it mentions exist. The front page stays a front page.

Anchors are GitHub's: a heading's text, lower-cased, with everything but letters, digits, `_`, `-` and spaces
dropped and each space turned into `-` (the slugger of github/cmark-gfm's renderer, `github-slugger`)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
PAGES = [README, *sorted(DOCS.glob("*.md"))]
FRONT_PAGE_MAX_LINES = 250
# Top-level entries of the repository: a mention that starts with one of them is a mention of our tree.
TOP = {p.name for p in ROOT.iterdir() if not p.name.startswith(".git") and p.name not in (".venv", ".venv-scan",
                                                                                          ".venv-netpol")}
TOP |= {".github"}
PACKAGES = {p.name for p in ROOT.iterdir() if (p / "__init__.py").is_file()}


def ids(pages):
    return [str(p.relative_to(ROOT)) for p in pages]


def prose(text: str) -> str:
    """The page without its fenced code blocks (commands and program output are checked separately)."""
    return re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)


def code_blocks(text: str) -> list[str]:
    return re.findall(r"^```[^\n]*\n(.*?)^```", text, flags=re.M | re.S)


def spans(text: str) -> list[str]:
    """The `code spans` of the prose."""
    return re.findall(r"`([^`\n]+)`", prose(text))


def slug(heading: str) -> str:
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip()).lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for line in prose(page.read_text()).splitlines():
        m = re.match(r"^#{1,6} (.+?)\s*$", line)
        if not m:
            continue
        base = slug(m.group(1))
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def links(page: Path) -> list[str]:
    return [t for t in re.findall(r"\]\(([^)\s]+)\)", prose(page.read_text()))
            if not re.match(r"^[a-z]+:", t)]


def expand(path: str) -> list[str]:
    """`tests/trainer/test_{a,b}.py` -> both paths (one brace group, as the pages write it)."""
    m = re.search(r"\{([^{}]+)\}", path)
    if not m:
        return [path]
    return [path[: m.start()] + part + path[m.end():] for part in m.group(1).split(",")]


def repo_paths(page: Path) -> list[str]:
    """Paths into our tree that the page names: in code spans, or as the first word of a code line."""
    words = spans(page.read_text())
    for block in code_blocks(page.read_text()):
        words += re.findall(r"(?:^|\s)((?:\.github|\.ci|[a-z_]+)/[\w./{},-]*)", block)
    out = []
    for word in words:
        word = word.split()[0] if word.split() else word
        word = word.rstrip(".,;:)")
        if "/" not in word or any(c in word for c in "<>*…$~"):
            continue
        first = word.split("/", 1)[0]
        if first not in TOP or "://" in word or "/.venv" in word:
            continue  # not ours, a URL, or a venv the page's own commands create
        out += expand(word)
    return out


def test_there_is_a_page_per_part_and_the_front_page_links_them_all():
    text = README.read_text()
    for name in ("architecture", "design", "demo", "trainer", "deploy", "operations", "ci", "e2e", "performance"):
        assert (DOCS / f"{name}.md").is_file(), name
    for page in DOCS.glob("*.md"):
        assert f"](docs/{page.name})" in text, f"README.md does not link docs/{page.name}"


def test_the_front_page_is_short():
    lines = README.read_text().count("\n")
    assert lines <= FRONT_PAGE_MAX_LINES, f"README.md has {lines} lines: move the detail into a page under docs/"


def test_the_front_page_names_the_three_commands_first_run_cost_included():
    text = README.read_text()
    block = code_blocks(text)[0]
    assert [line.split()[1] for line in block.splitlines()] == ["demo", "test", "e2e"]
    e2e = (DOCS / "e2e.md").read_text()
    cost = re.search(r"On an idle machine that is about\s+(\d+)\s+min", e2e).group(1)
    assert re.search(rf"about\s+{cost}\s+min\s+of\s+Go", text), "the first `make e2e` build's cost belongs here"


@pytest.mark.parametrize("page", PAGES, ids=ids(PAGES))
def test_links_and_anchors_resolve(page):
    bad = []
    for target in links(page):
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            bad.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            bad.append(f"{target}: no heading with anchor #{anchor} in {dest.relative_to(ROOT)}")
    assert bad == []


@pytest.mark.parametrize("page", PAGES, ids=ids(PAGES))
def test_named_files_exist(page):
    bad = []
    for path in repo_paths(page):
        file, _, test = path.partition("::")
        if not (ROOT / file).exists():
            bad.append(path)
        elif test and not re.search(rf"^def {re.escape(test)}\(", (ROOT / file).read_text(), re.M):
            bad.append(f"{path}: no such test")
    assert bad == [], f"{page.name} names paths that do not exist"


def module_file(dotted: str) -> Path | None:
    """The file `python -m dotted` (or `import dotted`) would run, or None."""
    base = ROOT.joinpath(*dotted.split("."))
    for candidate in (base / "__main__.py", base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


@pytest.mark.parametrize("page", PAGES, ids=ids(PAGES))
def test_python_m_commands_exist(page):
    bad = []
    for module in re.findall(r"python -m ([\w.]+)", page.read_text()):
        if module.split(".")[0] not in PACKAGES:
            continue  # venv, pytest, pulumi.dynamic: not ours
        file = module_file(module)
        if file is None or (file.name == "__init__.py"):
            bad.append(module)
    assert bad == [], f"{page.name}: `python -m` of modules that cannot run"


@pytest.mark.parametrize("page", PAGES, ids=ids(PAGES))
def test_named_python_objects_exist(page):
    """`trainer.data.dataset`, `demo.supervisor.tf_config`, `infra.gate`: the module exists, and the name in it."""
    bad = []
    for span in spans(page.read_text()):
        m = re.fullmatch(r"([a-z_]+(?:\.[A-Za-z_]\w*)+)(?:\(.*\))?", span)
        if not m or m.group(1).split(".")[0] not in PACKAGES:
            continue
        parts = m.group(1).split(".")
        for i in range(len(parts), 0, -1):
            file = module_file(".".join(parts[:i]))
            if file:
                break
        if file is None:
            bad.append(span)
            continue
        rest = parts[i:]
        source = file.read_text()
        if rest and not re.search(rf"^\s*(?:def|class) {rest[0]}\b|^{rest[0]}\b.*=", source, re.M):
            bad.append(span)
    assert bad == [], f"{page.name} names objects that do not exist"


def make_targets() -> set[str]:
    return set(re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(), re.M))


@pytest.mark.parametrize("page", PAGES, ids=ids(PAGES))
def test_make_targets_exist(page):
    text = page.read_text()
    named = re.findall(r"`make ([\w-]+)", prose(text))
    for block in code_blocks(text):
        named += re.findall(r"^\s*make ([\w-]+)", block, re.M)
    assert set(named) - make_targets() == set(), page.name


def our_python_files() -> set[str]:
    skip = {".git", ".venv", ".venv-scan", ".venv-netpol", ".demo", ".bench", "node_modules"}
    return {p.name for p in ROOT.rglob("*.py") if not skip & set(p.relative_to(ROOT).parts)}


@pytest.mark.parametrize("page", PAGES, ids=ids(PAGES))
def test_named_modules_exist(page):
    """A module named by its file alone (`gate.py`, in a row about `infra/`) is somewhere in the tree."""
    named = {s for s in spans(page.read_text()) if re.fullmatch(r"\w+\.py", s)}
    assert named - our_python_files() == set(), page.name


def test_the_readme_performance_figures_are_the_documented_run():
    """The README's Performance table shows the run that docs/performance.md's "The figures" prints."""
    import json

    readme = (ROOT / "README.md").read_text()
    figures = (ROOT / "docs" / "performance.md").read_text()
    run = json.loads(re.search(r"^(\{.*\})$", figures, re.M).group(1))
    section = readme.split("## Performance", 1)[1].split("\n## ", 1)[0]
    cells = [line for line in section.splitlines() if line.startswith("| 0")][0]
    shown = [float(x) for x in re.findall(r"(?<![≥≤] )\b(\d+\.\d+)\b", cells)]
    keys = ["input_s3_vs_local", "workers_2_vs_1", "train_s3_vs_local", "tensorboard_lag_s",
            "publish_s3_vs_local", "render_s_1", "render_s_64"]
    assert shown == [run[k] for k in keys], (shown, [run[k] for k in keys])
