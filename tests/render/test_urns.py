"""Every resource keeps its URN and its parent: a changed URN makes a real stack replace the resource (the
bucket included), so moving code between components must not change one. The expected lists under
tests/render/urns/ were taken from the render of each variant before infra/ was reorganised; a
resource added or renamed on purpose updates its list (`URN parent=<parent URN>`, sorted) in the same commit."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.render.renders import VARIANTS

URNS = Path(__file__).parent / "urns"


def urn_lines(rendered) -> list[str]:
    return sorted(f"{r['urn']} parent={r['parent'] or '-'}" for r in rendered.resources)


@pytest.mark.parametrize("name", list(VARIANTS))
def test_urns_and_parents_unchanged(renders, name):
    want = (URNS / f"{name}.txt").read_text().splitlines()
    got = urn_lines(renders.variant(name))
    missing, added = sorted(set(want) - set(got)), sorted(set(got) - set(want))
    assert not missing and not added, f"{name}: gone {missing}\nnew {added}"
    assert got == want  # no duplicate either


def test_every_variant_has_its_list():
    assert sorted(p.stem for p in URNS.glob("*.txt")) == sorted(VARIANTS)
