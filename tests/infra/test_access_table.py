"""docs/deploy.md's "who can do what" table says what the renders grant: each Role it names has exactly the
rules it lists (resources and verbs), each account it says has no Kubernetes API access gets no token and no
binding, and the Argo server's row matches the chart values."""

from __future__ import annotations

import re
from pathlib import Path

from tests.docs.test_tables import rows, section

DEPLOY = Path(__file__).resolve().parents[2] / "docs" / "deploy.md"
ROLE = re.compile(r"Role `([a-z0-9-]+)`(?: in `[a-z0-9-]+`)?: (.*?)(?:\.|\(| every|$)")
GRANT = re.compile(r"((?:`[a-z/]+`(?:, )?)+) ([a-z]+(?:/[a-z]+)*)")


def table() -> list[list[str]]:
    return rows(section("deploy.md", "Security: who can do what, with which identity"))


def documented_grants(cell: str) -> dict[str, set[tuple[str, str]]]:
    """Role name -> {(resource, verb)} as the cell lists them: "Role `r`: `a`, `b` get/list; `c` create"."""
    out = {}
    for name, grants in ROLE.findall(cell):
        pairs = set()
        for resources, verbs in GRANT.findall(grants):
            for res in re.findall(r"`([a-z/]+)`", resources):
                pairs |= {(res, v) for v in verbs.split("/")}
        out[name] = pairs
    return out


def rendered_grants(rendered, name: str) -> set[tuple[str, str]]:
    (role,) = [r for r in rendered.find("Role") if r["metadata"]["name"] == name]
    return {(res, v) for rule in role["rules"] for res in rule["resources"] for v in rule["verbs"]}


def test_every_role_in_the_table_grants_what_it_says(variant):
    named = {}
    for row in table():
        named |= documented_grants(row[2])
    assert {"workflow-executor", "retrain-submitter", "argo-workflows-server"} <= set(named)
    for name, pairs in named.items():
        if name == "argo-workflows-server" and not variant.find("Namespace", "argo"):
            continue  # the cluster's own Argo
        assert rendered_grants(variant, name) == pairs, name
    # ... and no Role of the stack is left out of the table.
    assert {r["metadata"]["name"] for r in variant.find("Role")} <= set(named)


def test_accounts_the_table_gives_no_api_access_have_no_token_or_binding(variant):
    bound = {s["name"] for b in variant.find("RoleBinding") for s in b["subjects"]}
    accounts = {sa["metadata"]["name"]: sa for sa in variant.find("ServiceAccount")}
    checked = 0
    for who, identity, api, _ in table():
        if not api.startswith("none"):
            continue
        for name in re.findall(r"`([a-z0-9-]+)`", identity):
            if name in accounts:
                checked += 1
                assert accounts[name]["automountServiceAccountToken"] is False, who
                assert name not in bound, who
    assert checked >= 3  # pipeline, serving, tensorboard


def test_the_argo_servers_row_matches_the_chart(prod):
    (row,) = [r for r in table() if r[0].startswith("the Argo server")]
    (chart,) = [c for c in prod.by_type("kubernetes:helm.sh/v4:Chart") if c["name"] == "argo-workflows"]
    server = chart["inputs"]["values"]["server"]
    assert "`client` auth" in row[2] and server["authModes"] == ["client"]
    # Not the chart's ClusterRole: the stack's own, with the reads the table lists.
    assert server["rbac"] == {"create": False}
    reads = re.search(r"ClusterRole of the same name, reads only: (.*?);", row[2]).group(1)
    rendered = prod.one("ClusterRole", "argo-workflows-server")["rules"]
    assert {(res, v) for r in rendered for res in r["resources"] for v in r["verbs"]} == {
        (res, v) for resources, verbs in GRANT.findall(reads)
        for res in re.findall(r"`([a-z/]+)`", resources) for v in verbs.split("/")
    }
    assert "HTTPS" in row[0] and server["secure"] is True
