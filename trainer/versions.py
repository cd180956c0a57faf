"""A model version's evaluation, its rejection, and the promotion gate the serving sidecar applies.

`<N>/_EVAL.json` is written into the version's folder before `_COMPLETE`, so its sha256 is in the manifest and
it is as trustworthy as the weights. `<N>/_REJECTED` is written after the fact (by the gate, `reject` or
`rollback`): a rejected version is never served again, whatever its score.

Runs without TensorFlow (the sidecar imports it): import nothing from TF here.
"""

from __future__ import annotations

import hashlib
import json
import time

from common.errors import UserError
from trainer import cli
from trainer.publish import complete_versions, marked_versions, read_complete
from trainer.store import NotFound, Store, StoreError, open_store

EVAL = "_EVAL.json"
REJECTED = "_REJECTED"
EVAL_FORMAT = 1


class Untrusted(StoreError):
    """The version's evaluation is missing, unreadable or does not match its checksum: its score cannot be
    trusted, and it stays so (unlike an outage)."""


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_eval(version_store: Store) -> dict:
    """The version's `_EVAL.json`, checked against the sha256 its `_COMPLETE` gives for it. A version without
    one, or whose file does not match, raises StoreError: its score cannot be trusted."""
    manifest = read_complete(version_store)
    entry = next((f for f in manifest["files"] if f["path"] == EVAL), None)
    if entry is None:
        raise Untrusted("the version has no evaluation (no _EVAL.json in its _COMPLETE)",
                         version_store.url, "publish it with `python -m trainer train`, which scores it first")
    try:
        raw = version_store.get_bytes(EVAL)
    except NotFound as e:
        raise Untrusted("the version's _EVAL.json is missing", version_store.url_of(EVAL),
                         "publish the version again") from e
    if len(raw) != int(entry["size"]) or digest(raw) != entry["sha256"]:
        raise Untrusted("_EVAL.json does not match its checksum in _COMPLETE", version_store.url_of(EVAL),
                         "the version is corrupt: publish it again")
    try:
        record = json.loads(raw)
        float(record["accuracy"])
    except (ValueError, KeyError, TypeError) as e:
        raise Untrusted("unreadable _EVAL.json", version_store.url_of(EVAL), "publish the version again") from e
    return record


def rejected_versions(store: Store) -> set[int]:
    """The versions marked `_REJECTED`, from one listing (the sidecar's check every interval)."""
    return set(marked_versions(store, REJECTED))


def rejected(store: Store) -> dict[int, dict]:
    """{version: its _REJECTED record} for every rejected version under the model store."""
    out = {}
    for key in store.list():
        head, _, rest = key.partition("/")
        if rest == REJECTED and head.isdigit():
            try:
                out[int(head)] = json.loads(store.get_bytes(key))
            except NotFound:
                continue  # removed while we listed
            except ValueError:
                out[int(head)] = {"reason": "unreadable _REJECTED"}
    return out


def reject(store: Store, version: int, reason: str, by: str) -> dict:
    """Marks `version` rejected (idempotent: an existing mark is kept, with its first reason)."""
    record = {"version": version, "reason": reason, "by": by, "at": int(time.time())}
    store.child(str(version)).create(REJECTED, json.dumps(record, sort_keys=True).encode())
    return record


def gate(record: dict, serving: dict | None, min_accuracy: float | None, max_regression: float | None) -> str | None:
    """Why the version scored `record` must not replace the one scored `serving` (None: it may). Fails when its
    accuracy is under `min_accuracy`, or more than `max_regression` under the served version's."""
    accuracy = float(record["accuracy"])
    if min_accuracy is not None and accuracy < min_accuracy:
        return f"accuracy {accuracy:.4f} < min-accuracy {min_accuracy:.4f}"
    if max_regression is not None and serving is not None:
        floor = float(serving["accuracy"]) - max_regression
        if accuracy < floor:
            return (f"accuracy {accuracy:.4f} < {floor:.4f} (served version's {float(serving['accuracy']):.4f} "
                    f"- max-regression {max_regression:.4f})")
    return None


# `python -m trainer reject N` (trainer/reject.py) and `rollback --to N` (trainer/rollback.py) run these.

def add_reject_arguments(parser) -> None:
    cli.env_arg(parser, "--model-url", "MODEL_URL", "the model's versions: s3://bucket/prefix or file:///path")
    parser.add_argument("version", type=int, help="the version never to serve again")
    parser.add_argument("--reason", default="rejected by hand", help="recorded in its _REJECTED")


def add_rollback_arguments(parser) -> None:
    cli.env_arg(parser, "--model-url", "MODEL_URL", "the model's versions: s3://bucket/prefix or file:///path")
    parser.add_argument("--to", type=int, required=True, dest="to",
                        help="the version to serve again: every newer version is rejected")
    parser.add_argument("--reason", default=None, help="recorded in the newer versions' _REJECTED")


def _complete(store: Store, version: int) -> list[int]:
    store.check()
    versions = complete_versions(store)
    if version not in versions:
        have = ", ".join(map(str, versions)) or "none"
        raise UserError("no complete model version", store.url_of(str(version)),
                        f"pass one of the complete versions ({have})")
    return versions


def run_reject(args) -> dict:
    store = open_store(args.model_url, "MODEL_URL")
    _complete(store, args.version)
    reject(store, args.version, args.reason, "reject")
    return {"model_url": store.url, "rejected": [args.version],
            "reason": rejected(store)[args.version].get("reason")}


def run_rollback(args) -> dict:
    """Rejects every complete version newer than `--to` (those rejected already keep their mark and are not
    listed); the sidecar falls back to `--to` at its next sync
    (a version already rejected itself is refused: rolling back to it would serve nothing)."""
    store = open_store(args.model_url, "MODEL_URL")
    versions = _complete(store, args.to)
    marks = rejected(store)
    if args.to in marks:
        raise UserError(f"version {args.to} is rejected", store.url_of(f"{args.to}/{REJECTED}"),
                        f"roll back to a version that is not ({marks[args.to].get('reason', '')})")
    newer = [v for v in versions if v > args.to and v not in marks]  # the rejected ones keep their reason
    reason = args.reason or f"rolled back to version {args.to}"
    for v in newer:
        reject(store, v, reason, "rollback")
    return {"model_url": store.url, "serving": args.to, "rejected": newer}

