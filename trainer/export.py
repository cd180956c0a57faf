"""The end of a `train` run: the chief alone exports and publishes the next model version, then every
process meets at a barrier, and the chief, which hosts the coordination service, leaves last."""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from common.errors import UserError
from trainer import collectives, tfconfig

if TYPE_CHECKING:
    from trainer.store import Store

EXPORT_RECORD = "export.json"  # under RUN_URL: the version this run exported, and at which step


def finish(strategy, net, step: int, *, config: tfconfig.TFConfig, data_store: Store, run_store: Store,
           model_store: Store, say: Callable[[str], None], args=None, lease=None) -> dict:
    """Every process: the chief exports `net` at `step` (scored on the test split in `data_store`, published as
    the next version under `model_store`, recorded in `run_store`), then all of them meet at the barrier; a
    chief that failed to export fails every process. Returns what the chief exported (`model_version`,
    `export_url`, its test scores; {} on the workers). `say` prints one line of progress; `args` (the training
    arguments) go into the version's `_EVAL.json` as a digest; `lease` (the chief's on RUN_URL) must still be
    held to publish."""
    done, failure = {}, None
    if config.is_chief:
        try:
            done = _export(net, step, data_store=data_store, run_store=run_store, model_store=model_store, say=say,
                           args=args, lease=lease)
        except BaseException as e:  # still meet the workers at the barrier, then fail
            failure = e
    ok = collectives.barrier(strategy, failure is None)
    if failure is not None:
        raise failure
    if not ok:
        raise UserError("the chief failed to export the model", config.task_name,
                        "see the chief's log; rerun the job to resume from the last checkpoint")
    if config.is_chief and config.distributed:
        _wait_for_peers_to_leave(config)
    return done


def _export(net, step: int, *, data_store: Store, run_store: Store, model_store: Store,
            say: Callable[[str], None], args=None, lease=None) -> dict:
    """Chief only: a plain copy of the model (no strategy, no collectives) exported as a SavedModel,
    scored on the test split, its score written into it as `_EVAL.json` (covered by `_COMPLETE`, so the
    serving sidecar's promotion gate can trust it), then published as the next version. A rerun of a finished
    run (nothing left to train, and this run's export of that step still complete) reports that version
    instead of publishing the same weights again."""
    import json

    from trainer import evaluate, model, publish, signing, versions

    done = _previous_export(step, run_store, model_store)
    if done is not None:
        say(f"already exported at step {step}: version {done['model_version']} ({done['export_url']})")
        return done
    if lease is not None:
        lease.check()  # another training took this run over: publish nothing
    sign = signing.signer_from_env()  # a missing or bad key fails before the export, not after
    tmp = Path(tempfile.mkdtemp(prefix="trainer-export-"))
    try:
        local = tmp / "model"
        model.export(net, local)
        scores = evaluate.score(local, data_store)
        record = evaluation(scores, step, data_store, run_store, args)
        (local / versions.EVAL).write_bytes(json.dumps(record, indent=1, sort_keys=True).encode())
        version = publish.claim_version(model_store, owner=run_store.url)
        target = model_store.child(str(version))
        publish.publish_dir(local, target, sign=sign)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    say(f"exported version {version} to {target.url}: test accuracy {scores['accuracy']:.4f} "
                f"on {scores['count']} images")
    done = {"accuracy": scores["accuracy"], "loss": scores["loss"], "test_count": scores["count"],
            "model_version": version, "export_url": target.url}
    run_store.put_bytes(EXPORT_RECORD, json.dumps({**done, "step": step}, sort_keys=True).encode())
    return done

def evaluation(scores: dict, step: int, data_store: Store, run_store: Store, args=None) -> dict:
    """What `_EVAL.json` holds: the score, and what it was scored on (the dataset's manifest digest) and by
    (the run, its step and a digest of its training arguments), so a rerun can find its own version."""
    import hashlib
    import json

    from trainer import data, versions

    settings = {k: v for k, v in sorted(vars(args).items()) if not k.startswith("_")} if args is not None else {}
    return {
        "format": versions.EVAL_FORMAT,
        "accuracy": scores["accuracy"],
        "loss": scores["loss"],
        "count": scores["count"],
        "split": "test",
        "dataset": data_store.url,
        "dataset_sha256": hashlib.sha256(data_store.get_bytes(data.MANIFEST)).hexdigest(),
        "run": run_store.url,
        "step": step,
        "args_sha256": hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest(),
    }


def _previous_export(step: int, run_store: Store, model_store: Store) -> dict | None:
    """This run's version of `step`: from `export.json`, or, when the chief was stopped between the version's
    `_COMPLETE` and `export.json`, from the `_EVAL.json` of a complete version that names this run and step
    (so the rerun reports that version instead of publishing a duplicate)."""
    import json

    from trainer import publish, versions
    from trainer.storeerrors import NotFound, StoreError

    complete = publish.complete_versions(model_store)
    try:
        record = json.loads(run_store.get_bytes(EXPORT_RECORD))
        done = {k: record[k] for k in ("accuracy", "loss", "test_count", "model_version", "export_url")}
        version = int(done["model_version"])
    except (NotFound, ValueError, KeyError, TypeError):
        record = None
    if record is not None and record.get("step") == step \
            and done["export_url"] == model_store.url_of(str(version)) and version in complete:
        return done
    for version in reversed(complete):
        target = model_store.child(str(version))
        try:
            ev = versions.read_eval(target)
        except StoreError:
            continue
        if ev.get("run") == run_store.url and ev.get("step") == step:
            done = {"accuracy": ev["accuracy"], "loss": ev["loss"], "test_count": ev["count"],
                    "model_version": version, "export_url": target.url}
            run_store.put_bytes(EXPORT_RECORD, json.dumps({**done, "step": step}, sort_keys=True).encode())
            return done
    return None


def _wait_for_peers_to_leave(config: tfconfig.TFConfig, timeout: float = 30.0) -> None:
    """The chief hosts the coordination service: it waits until the other tasks have closed their ports
    (exited) so none of them loses the service while shutting down."""
    import socket
    import sys

    others = [a for t, addrs in config.cluster.items() for a in addrs if a != config.address]
    deadline = time.monotonic() + timeout
    for addr in others:
        host, _, port = addr.rpartition(":")
        while time.monotonic() < deadline:
            try:
                socket.create_connection((host.strip("[]"), int(port)), timeout=1.0).close()
            except OSError:
                break  # refused or unreachable: that task is gone
            time.sleep(0.2)
        else:
            print(f"warning: {addr} still accepts connections after {timeout:.0f} s; leaving anyway",
                  file=sys.stderr, flush=True)
            return

