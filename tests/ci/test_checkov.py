"""The manifest security scan: checkov, offline, over both stacks' rendered manifests finds nothing that the
skip list does not explain, every skip is still needed, and the deliberately bad variant is flagged.

checkov takes 2-3 s per run, so it runs once for the whole module, over one folder per case."""

from __future__ import annotations

import pytest

from policy import scan
from render import Rendered
from tests.ci.tools import rendered, tool
from tests.policy import samples

CASES = ("dev", "prod", "bad")


@pytest.fixture(scope="module")
def findings(tmp_path_factory) -> dict[str, list[scan.Finding]]:
    root = tmp_path_factory.mktemp("manifests")
    bad = Rendered(stack="dev", resources=samples.bad_variant(rendered("dev").resources))
    for case, source in (("dev", rendered("dev")), ("prod", rendered("prod")), ("bad", bad)):
        scan.write_manifests(source.manifests, root / case)
    found = scan.run_checkov(root, checkov=str(tool("checkov")))
    by_case = {case: [f for f in found if f.file.split("/")[0] == case] for case in CASES}
    assert sum(map(len, by_case.values())) == len(found)
    return by_case


@pytest.fixture(scope="module")
def skips():
    return scan.load_skips()


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_committed_stack_has_no_unexplained_failures(findings, skips, stack):
    assert findings[stack], "checkov found nothing at all: did it scan the manifests?"
    left = scan.unexplained(findings[stack], skips)
    assert left == [], "\n".join(map(str, left))


def test_every_skip_is_still_needed(findings, skips):
    stale = scan.unused(findings["dev"] + findings["prod"], skips)
    assert stale == [], f"remove from policy/checkov-skips.yaml: {[s.check_id for s in stale]}"


def test_checkov_flags_the_bad_variant(findings, skips):
    def left(case):
        return {(f.check_id, f.resource) for f in scan.unexplained(findings[case], skips)}

    new = left("bad") - left("dev")  # the bad variant is the dev stack with one Deployment and Service broken
    assert {
        ("CKV_KFE_1", "Service.kubeflow-e2e.serving"),  # LoadBalancer (our check)
        ("CKV_K8S_14", "Deployment.kubeflow-e2e.serving"),  # image tag latest
        ("CKV_K8S_11", "Deployment.kubeflow-e2e.serving"),  # no CPU limit
        ("CKV_K8S_13", "Deployment.kubeflow-e2e.serving"),  # no memory limit
    } <= new
    assert {resource for _, resource in new} == {"Service.kubeflow-e2e.serving",
                                                 "Deployment.kubeflow-e2e.serving"}


def test_skip_list_entries_are_explained():
    for skip in scan.load_skips():
        assert skip.check_id.startswith("CKV") and len(skip.reason) >= 80, skip


def test_skip_list_without_reasons_is_rejected(tmp_path):
    path = tmp_path / "skips.yaml"
    path.write_text("skips:\n  - id: CKV_K8S_43\n    reason: because\n")
    with pytest.raises(scan.ScanError, match="needs a reason"):
        scan.load_skips(path)


def test_scan_cli_fails_on_unexplained_findings(tmp_path, monkeypatch, capsys):
    bad = Rendered(stack="dev", resources=samples.bad_variant(rendered("dev").resources))
    scan.write_manifests([m for m in bad.manifests if m["kind"] == "Service"], tmp_path)
    monkeypatch.setenv("CHECKOV", str(tool("checkov")))
    assert scan.main([str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "unexplained: CKV_KFE_1 Service.kubeflow-e2e.serving" in out
