"""No import circle anywhere in the tree: every package (`tests.helpers.imports.PACKAGES`), lazy and
TYPE_CHECKING imports included, since an import moved into a function hides a circle without removing it."""

from __future__ import annotations

from tests.helpers.imports import PACKAGES, ROOT, cycles, graph


def test_no_import_circle_in_any_package():
    assert cycles(graph()) == []


def test_every_package_is_read():
    packages = {p.parent.name for p in ROOT.glob("*/__init__.py")}
    assert packages <= set(PACKAGES), packages - set(PACKAGES)


def test_the_check_finds_a_circle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]


def test_the_graph_sees_lazy_and_relative_imports():
    g = graph()
    assert "trainer.s3" in g["trainer.store"]  # imported inside a function
    assert "tests.infra.conftest" in g["tests.infra.test_config"]  # `from .conftest import make_config`
