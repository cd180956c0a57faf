"""`sync-model`: the TF Serving sidecar. Mirrors complete model versions from MODEL_URL into DIR/<version>/.

TF Serving watches DIR and loads integer-named version folders. A version is fetched into a hidden temporary
sibling, checked file by file against its `_COMPLETE` manifest, then renamed into place, so a partial version
never appears. The newest K complete versions are kept; the new ones are in place before old ones go.

Runs without TensorFlow (the sidecar image has boto3 only): import nothing from TF here.
"""

from __future__ import annotations

import logging
import shutil
import signal
import sys
import time
from pathlib import Path

from common.errors import UserError
from trainer import cli
from trainer.publish import LEFTOVER_NAME, VERSION_NAME, complete_versions, fetch_dir
from trainer.store import Store, open_store

log = logging.getLogger("sync-model")


def add_arguments(parser) -> None:
    cli.env_arg(parser, "--model-url", "MODEL_URL", "the model's versions: s3://bucket/prefix or file:///path")
    parser.add_argument("--dest", required=True, help="local folder TF Serving reads (DEST/<version>/)")
    parser.add_argument("--watch", action="store_true", help="keep syncing every --interval seconds")
    parser.add_argument("--interval", type=float, default=30.0, help="seconds between syncs (default: 30)")
    parser.add_argument("--keep", type=int, default=2, help="newest complete versions to keep (default: 2)")


def local_versions(dest: Path) -> list[int]:
    if not dest.is_dir():
        return []
    return sorted(int(p.name) for p in dest.iterdir() if p.is_dir() and VERSION_NAME.match(p.name))


def sync_once(store: Store, dest: Path, keep: int) -> dict:
    """One pass: fetch the newest `keep` complete versions that are missing (newest first), then drop the
    others. A version that fails to fetch (corrupt, S3 gone) is skipped, the rest still come down, nothing is
    dropped in that pass, and the first failure is raised at the end."""
    dest.mkdir(parents=True, exist_ok=True)
    for p in dest.iterdir():
        if LEFTOVER_NAME.match(p.name):
            shutil.rmtree(p, ignore_errors=True)
    remote = complete_versions(store)
    wanted = remote[-keep:]
    have = set(local_versions(dest))
    added, failures = [], []
    for version in reversed(wanted):
        if version not in have:
            try:
                fetch_dir(store.child(str(version)), dest / str(version))
                added.append(version)
            except UserError as e:
                failures.append(e)
    removed = []
    # Never empty the folder TF Serving serves from because the listing came back empty or a fetch failed.
    if wanted and not failures:
        for version in sorted(have - set(wanted)):
            shutil.rmtree(dest / str(version))
            removed.append(version)
    if failures:
        raise failures[0]
    return {"model_url": store.url, "dest": str(dest), "versions": local_versions(dest),
            "added": added, "removed": removed, "remote": remote}


def _no_versions(store: Store) -> UserError:
    return UserError("no complete model version", store.url,
                     "train and export a model first (python -m trainer train), or check MODEL_URL")


def run(args) -> dict | None:
    if args.keep < 1:
        raise UserError("--keep must be at least 1", args.keep, "pass --keep 1 or more")
    if args.interval <= 0:
        raise UserError("--interval must be positive", args.interval, "pass --interval 30, for example")
    store = open_store(args.model_url, "MODEL_URL")
    dest = Path(args.dest).absolute()
    if not args.watch:
        store.check()
        result = sync_once(store, dest, args.keep)
        if not result["remote"]:
            raise _no_versions(store)
        return result
    return watch(store, dest, args.keep, args.interval)


def watch(store: Store, dest: Path, keep: int, interval: float) -> None:
    """Syncs every `interval` seconds until SIGTERM/SIGINT; one log line per change. Transient errors (an
    outage, a missing bucket, a corrupt upload) are logged and retried at the next interval: serving goes on
    with what is already on disk. Permanent ones (`UserError.transient` False: a malformed S3_ENDPOINT or
    S3_* setting, credentials that are missing or rejected) raise, so the process exits 2 and Kubernetes
    restarts the container visibly (CrashLoopBackOff), which also picks up a rotated Secret."""
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s sync-model %(message)s")
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    log.info("watching %s -> %s every %ss, keeping %d", store.url, dest, interval, keep)
    waiting_logged = failing = False
    while not stopping:
        try:
            result = sync_once(store, dest, keep)
            if failing:
                log.info("%s reachable again", store.url)
                failing = False
            for v in result["added"]:
                log.info("added version %d", v)
            for v in result["removed"]:
                log.info("removed version %d", v)
            if not result["remote"] and not waiting_logged:
                log.info("no complete version under %s yet; waiting", store.url)
                waiting_logged = True
        except UserError as e:
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
