"""`sync-model`: the TF Serving sidecar. Mirrors complete model versions from MODEL_URL into DIR/<version>/.

TF Serving watches DIR and loads integer-named version folders. A version is fetched into a hidden temporary
sibling, checked file by file against its `_COMPLETE` manifest, then renamed into place, so a partial version
never appears. The newest K servable versions are kept; the new ones are in place before old ones go.

A version is servable when it is complete, not marked `_REJECTED` (by `reject`, `rollback` or this gate) and,
with `--min-accuracy` or `--max-regression`, its `_EVAL.json` passes: at least that accuracy, and at most that
far under the servable version before it (the one being served when it appeared); with `--public-key`, only
if its `_SIGNATURE` verifies (`trainer.signing`); and only if its files match `_COMPLETE`. A version that fails is
logged once and marked `_REJECTED` with the reason, so it is never reconsidered; TF Serving keeps the last good
one. Where the sidecar's credentials cannot write (the stack gives serving read-only access) the mark is kept
in memory: the decision depends only on the versions' records, so a restarted sidecar reaches the same one.

Runs without TensorFlow (the sidecar image has boto3, numpy and cryptography): import nothing from TF here.
"""

from __future__ import annotations

import logging
import shutil
import signal
import sys
import time
from pathlib import Path

from common.errors import UserError
from trainer import cli, signing, versions
from trainer.publish import LEFTOVER_NAME, VERSION_NAME, Corrupt, complete_versions, fetch_dir
from trainer.store import Store, StoreError, open_store

log = logging.getLogger("sync-model")


def add_arguments(parser) -> None:
    cli.env_arg(parser, "--model-url", "MODEL_URL", "the model's versions: s3://bucket/prefix or file:///path")
    parser.add_argument("--dest", required=True, help="local folder TF Serving reads (DEST/<version>/)")
    parser.add_argument("--watch", action="store_true", help="keep syncing every --interval seconds")
    parser.add_argument("--interval", type=float, default=30.0, help="seconds between syncs (default: 30)")
    parser.add_argument("--keep", type=int, default=2, help="newest servable versions to keep (default: 2)")
    parser.add_argument("--min-accuracy", type=float, default=None,
                        help="promote only versions whose _EVAL.json accuracy is at least this (default: no floor)")
    parser.add_argument("--max-regression", type=float, default=None,
                        help="promote only versions at most this much less accurate than the one served "
                             "(default: any)")
    parser.add_argument("--max-bytes", type=int, default=None,
                        help="the DEST volume's size: a version larger than its share (DEST holds --keep + 1 "
                             "versions while a new one lands) is refused, not fetched (default: no limit)")
    cli.env_arg(parser, "--public-key", "MODEL_PUBLIC_KEY", "serve only versions signed by this Ed25519 key "
                "(base64 of its 32 bytes; python -m trainer signing-key)", required=False)
    parser.add_argument("--metrics-port", type=int, default=None,
                        help="with --watch: serve Prometheus metrics on this port at /metrics "
                             "(trainer.syncmetrics; default: none)")
    parser.add_argument("--metrics-host", default="0.0.0.0",
                        help="the address the metrics listen on (default: every interface, as in a pod)")


class Gate:
    """The promotion rule and what this process has decided: a version is checked once (a complete version
    never changes), a rejection is logged once."""

    def __init__(self, min_accuracy: float | None = None, max_regression: float | None = None,
                 public_key=None):
        self.min_accuracy, self.max_regression, self.public_key = min_accuracy, max_regression, public_key
        self.passed: dict[int, dict | None] = {}  # version: its _EVAL.json (None when not read: no thresholds)
        self.rejected: dict[int, str] = {}  # decided here (whether or not the mark could be written)
        self.too_big: dict[int, int] = {}  # version: its bytes, past --max-bytes' share (not marked: ours alone)

    @property
    def on(self) -> bool:
        return self.min_accuracy is not None or self.max_regression is not None

    def _check(self, store: Store, v: int, served: dict | None) -> tuple[dict | None, str | None]:
        """(its evaluation, why it is refused or None)."""
        version_store = store.child(str(v))
        if self.public_key is not None:
            try:
                signing.verify(version_store, self.public_key)
            except signing.BadSignature as e:
                return None, e.what
        if not self.on:
            return None, None
        try:
            record = versions.read_eval(version_store)
        except versions.Untrusted as e:
            return None, f"no trusted evaluation: {e.what}"
        return record, versions.gate(record, served, self.min_accuracy, self.max_regression)

    def servable(self, store: Store, remote: list[int]) -> list[int]:
        """The servable versions among `remote` (ascending); the refused ones are rejected (`refuse`)."""
        marked = versions.rejected_versions(store)
        ok, served = [], None
        for v in remote:
            if v in marked or v in self.rejected:
                continue
            if v in self.passed:
                record = self.passed[v]
            else:
                record, reason = self._check(store, v, served)
                if reason is not None:
                    self.refuse(store, v, reason)
                    continue
                self.passed[v] = record
            ok.append(v)
            served = record or served
        return ok

    def describe(self, wanted: list[int]) -> dict:
        """The rule, the served versions' recorded accuracy and every refusal this process decided."""
        return {"min_accuracy": self.min_accuracy, "max_regression": self.max_regression,
                "signed": self.public_key is not None,
                "promoted": {str(v): (self.passed.get(v) or {}).get("accuracy") for v in sorted(wanted)},
                "refused": {str(v): reason for v, reason in sorted(self.rejected.items())}}

    def refuse(self, store: Store, v: int, reason: str) -> None:
        """Logs the version's rejection in one line and marks it `_REJECTED` so no one reconsiders it."""
        self.rejected[v] = reason
        self.passed.pop(v, None)
        # The mark goes first, so whoever reads the line finds it written.
        try:
            versions.reject(store, v, reason, "sync-model")
            unwritten = None
        except StoreError as e:  # read-only credentials: the decision stands for this process
            unwritten = e.what
        log.info("rejected version %d: %s", v, reason)
        if unwritten:
            log.info("version %d: cannot write its _REJECTED mark (%s); rejected in this process", v, unwritten)


def local_versions(dest: Path) -> list[int]:
    if not dest.is_dir():
        return []
    return sorted(int(p.name) for p in dest.iterdir() if p.is_dir() and VERSION_NAME.match(p.name))


def _too_big(store: Store, version: int, keep: int, max_bytes: int | None, gate: Gate) -> bool:
    """Whether the version cannot fit DEST: logged once in one line, with the version and its size."""
    if max_bytes is None:
        return False
    if version not in gate.too_big:
        size = sum(store.child(str(version)).list().values())
        if size <= max_bytes // (keep + 1):
            return False
        gate.too_big[version] = size
        log.info("refused version %d: %d bytes, more than its share of the models volume (%d of %d bytes: "
                 "%d versions at once with --keep %d)", version, size, max_bytes // (keep + 1), max_bytes,
                 keep + 1, keep)
    return True


def sync_once(store: Store, dest: Path, keep: int, gate: Gate | None = None, max_bytes: int | None = None) -> dict:
    """One pass: fetch the newest `keep` servable versions that are missing (newest first), then drop the
    others (a rejected version goes at once). A version whose files do not match its `_COMPLETE` is refused
    like one that fails the gate, and the next older one takes its place. A version that fails to fetch for
    another reason (S3 gone) is skipped, the rest still come down, nothing is dropped in that pass, and the
    first failure is raised at the end."""
    gate = gate or Gate()
    dest.mkdir(parents=True, exist_ok=True)
    for p in dest.iterdir():
        if LEFTOVER_NAME.match(p.name):
            shutil.rmtree(p, ignore_errors=True)
    remote = complete_versions(store)
    before = set(gate.rejected)
    servable = gate.servable(store, remote)
    have = set(local_versions(dest))
    wanted, added, failures = [], [], []
    for version in reversed(servable):
        if len(wanted) == keep:
            break
        if version not in have and _too_big(store, version, keep, max_bytes, gate):
            continue  # an older version takes its place; filling the volume would evict the pod in a loop
        if version not in have:
            try:
                fetch_dir(store.child(str(version)), dest / str(version))
                added.append(version)
            except Corrupt as e:
                gate.refuse(store, version, f"{e.what} ({e.value})")
                continue
            except UserError as e:
                failures.append(e)
        wanted.append(version)
    removed = []
    # Never empty the folder TF Serving serves from because the listing came back empty or a fetch failed.
    if wanted and not failures:
        for version in sorted(have - set(wanted)):
            shutil.rmtree(dest / str(version))
            removed.append(version)
    if failures:
        raise failures[0]
    return {"model_url": store.url, "dest": str(dest), "versions": local_versions(dest),
            "added": added, "removed": removed, "remote": remote,
            "servable": [v for v in servable if v not in gate.rejected],
            "rejected": sorted(set(gate.rejected) - before), "gate": gate.describe(wanted),
            "too_big": {str(v): n for v, n in sorted(gate.too_big.items())}}


def _no_versions(store: Store) -> UserError:
    return UserError("no complete model version", store.url,
                     "train and export a model first (python -m trainer train), or check MODEL_URL")


def run(args) -> dict | None:
    for flag, value in (("--min-accuracy", args.min_accuracy), ("--max-regression", args.max_regression)):
        if value is not None and not 0.0 <= value <= 1.0:
            raise UserError(f"{flag} must be between 0 and 1", value, f"pass {flag} 0.9, for example")
    public_key = signing.load_public(args.public_key) if args.public_key else None
    gate = Gate(args.min_accuracy, args.max_regression, public_key)
    # Also in the one-shot run (the init container): a rejection is logged there too. Only this logger:
    # botocore's INFO lines would otherwise appear under the "sync-model" prefix.
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s sync-model %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
    if args.keep < 1:
        raise UserError("--keep must be at least 1", args.keep, "pass --keep 1 or more")
    if args.interval <= 0:
        raise UserError("--interval must be positive", args.interval, "pass --interval 30, for example")
    metrics = None
    if args.metrics_port is not None:
        if not args.watch or not 1 <= args.metrics_port <= 65535:
            raise UserError("--metrics-port takes a port (1-65535) and goes with --watch", args.metrics_port,
                            "pass --watch --metrics-port 9102, for example")
        from trainer.syncmetrics import SyncMetrics

        metrics = SyncMetrics()
        metrics.serve(args.metrics_port, args.metrics_host)
    store = open_store(args.model_url, "MODEL_URL")
    dest = Path(args.dest).absolute()
    if not args.watch:
        store.check()
        result = sync_once(store, dest, args.keep, gate, args.max_bytes)
        if not result["remote"]:
            raise _no_versions(store)
        if not result["versions"] and gate.too_big:
            v, size = max(gate.too_big.items())
            raise UserError("model version too large for the models volume", f"version {v}: {size} bytes",
                            f"give the serving pod's models volume more than {(args.keep + 1) * size} bytes, or "
                            "lower --keep")
        if not result["servable"]:
            raise UserError("no servable model version: every complete one is rejected", store.url,
                            "see its _REJECTED reason; train a better model, or roll back "
                            "(python -m trainer rollback --to N)")
        return result
    return watch(store, dest, args.keep, args.interval, gate, metrics, args.max_bytes)


def watch(store: Store, dest: Path, keep: int, interval: float, gate: Gate | None = None, metrics=None,
          max_bytes: int | None = None) -> None:
    """Syncs every `interval` seconds until SIGTERM/SIGINT; one log line per change. Transient errors (an
    outage, a missing bucket, a corrupt upload) are logged and retried at the next interval: serving goes on
    with what is already on disk. Permanent ones (`UserError.transient` False: a malformed S3_ENDPOINT or
    S3_* setting, credentials that are missing or rejected) raise, so the process exits 2 and Kubernetes
    restarts the container visibly (CrashLoopBackOff), which also picks up a rotated Secret. `metrics`: a
    `trainer.syncmetrics.SyncMetrics` that records every sync (None: none)."""
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    gate = gate or Gate()
    log.info("watching %s -> %s every %ss, keeping %d, min-accuracy %s, max-regression %s", store.url, dest,
             interval, keep, gate.min_accuracy, gate.max_regression)
    waiting_logged = failing = False
    while not stopping:
        try:
            result = sync_once(store, dest, keep, gate, max_bytes)
            if metrics:
                metrics.synced(result)
            if failing:
                log.info("%s reachable again", store.url)
                failing = False
            for v in result["added"]:
                record = gate.passed.get(v)
                log.info("added version %d%s", v, f" (promoted: accuracy {record['accuracy']:.4f})" if record else "")
            for v in result["removed"]:
                log.info("removed version %d", v)
            if not result["remote"] and not waiting_logged:
                log.info("no complete version under %s yet; waiting", store.url)
                waiting_logged = True
        except UserError as e:
            if metrics:
                metrics.failed(e.transient)
            if not e.transient:
                log.error("error: %s; not retrying: this needs a configuration change", e)
                raise
            log.warning("error: %s; retrying in %ss", e, interval)
            failing = True
        deadline = time.monotonic() + interval
        while not stopping and time.monotonic() < deadline:
            time.sleep(min(0.2, interval))
    log.info("stopped")
    return None
