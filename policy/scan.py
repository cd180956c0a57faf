"""The manifest security scan: checkov over rendered Kubernetes manifests, offline, where every failed check
must be explained by an entry of policy/checkov-skips.yaml.

    python -m render --stack dev --out out/dev
    python -m policy.scan out/dev            # exit 1 and a list when a failure has no explanation

checkov runs from its own environment (requirements/scan.txt): it pins packages the program needs newer.
It is found as $CHECKOV, else in $SCAN_VENV (default .venv-scan), else on PATH.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SKIPS = HERE / "checkov-skips.yaml"
CHECKS_DIR = HERE / "checkov_checks"


@dataclass(frozen=True)
class Finding:
    check_id: str
    check_name: str
    resource: str  # checkov's id: Kind.namespace.name
    file: str  # relative to the scanned folder

    def __str__(self) -> str:
        return f"{self.check_id} {self.resource} ({self.file}): {self.check_name}"


@dataclass(frozen=True)
class Skip:
    check_id: str
    reason: str
    resources: tuple[str, ...]  # fnmatch patterns over Finding.resource

    def covers(self, finding: Finding) -> bool:
        return finding.check_id == self.check_id and any(
            fnmatch.fnmatchcase(finding.resource, pattern) for pattern in self.resources
        )


class ScanError(Exception):
    pass


def checkov_path() -> str:
    if os.environ.get("CHECKOV"):
        return os.environ["CHECKOV"]
    venv = Path(os.environ.get("SCAN_VENV") or ROOT / ".venv-scan")
    venv = venv if venv.is_absolute() else ROOT / venv
    if (venv / "bin" / "checkov").exists():
        return str(venv / "bin" / "checkov")
    found = shutil.which("checkov")
    if not found:
        raise ScanError("checkov not found: `make install` builds .venv-scan from requirements/scan.txt")
    return found


def load_skips(path: Path = SKIPS) -> list[Skip]:
    data = yaml.safe_load(path.read_text()) or {}
    skips = []
    for index, entry in enumerate(data.get("skips") or []):
        check_id, reason = entry.get("id"), str(entry.get("reason") or "").strip()
        if not check_id or not str(check_id).startswith("CKV"):
            raise ScanError(f"{path.name}: skip #{index + 1} has no checkov id (CKV_...): {entry}")
        if len(reason) < 20:
            raise ScanError(f"{path.name}: skip {check_id} needs a reason that explains it, got {reason!r}")
        resources = entry.get("resources") or ["*"]
        skips.append(Skip(str(check_id), reason, tuple(str(r) for r in resources)))
    return skips


def write_manifests(manifests: Iterable[dict], folder: Path, name: str = "manifests.yaml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(yaml.safe_dump_all(list(manifests), sort_keys=False))
    return path


def run_checkov(folder: Path, checkov: str | None = None, timeout: float = 300) -> list[Finding]:
    """Every failed check in the manifests under folder. Offline: --skip-download stops checkov from
    fetching guidelines and policies from the platform."""
    command = [checkov or checkov_path(), "--directory", str(folder), "--framework", "kubernetes",
               "--external-checks-dir", str(CHECKS_DIR), "--skip-download", "--quiet", "--compact",
               "--output", "json"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BC_", "PRISMA_", "CKV_"))}
    env["LOG_LEVEL"] = "ERROR"
    proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
    if proc.returncode not in (0, 1):  # 1: some check failed
        raise ScanError(f"checkov exited {proc.returncode}: {proc.stderr.strip()[-2000:]}")
    report = json.loads(proc.stdout or "{}")
    reports = report if isinstance(report, list) else [report]
    findings = []
    for part in reports:
        if not part.get("results"):
            continue  # a summary with no resources: {"passed": 0, ...}
        if part.get("summary", {}).get("parsing_errors"):
            raise ScanError(f"checkov could not parse {part['results'].get('parsing_errors')}")
        for check in part["results"].get("failed_checks", []):
            file = str(check.get("file_path", "")).lstrip("/")
            findings.append(Finding(check["check_id"], check.get("check_name", ""), check["resource"], file))
    return sorted(set(findings), key=lambda f: (f.file, f.resource, f.check_id))


def unexplained(findings: Sequence[Finding], skips: Sequence[Skip]) -> list[Finding]:
    return [f for f in findings if not any(skip.covers(f) for skip in skips)]


def unused(findings: Sequence[Finding], skips: Sequence[Skip]) -> list[Skip]:
    return [skip for skip in skips if not any(skip.covers(f) for f in findings)]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m policy.scan", description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="+", type=Path, help="folders of rendered manifests")
    parser.add_argument("--skips", type=Path, default=SKIPS, help="the skip list (default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        skips = load_skips(args.skips)
        bad = []
        for folder in args.folders:
            findings = run_checkov(folder)
            left = unexplained(findings, skips)
            bad += left
            explained = len(findings) - len(left)
            print(f"{folder}: {len(findings)} failed checks, {explained} explained by the skip list")
    except ScanError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for finding in bad:
        print(f"unexplained: {finding}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
