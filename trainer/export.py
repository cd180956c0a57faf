"""The end of a `train` run: the chief alone exports and publishes the next model version, then every
process meets at a barrier, and the chief, which hosts the coordination service, leaves last."""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

from common.errors import UserError
from trainer import collectives, tfconfig

EXPORT_RECORD = "export.json"  # under RUN_URL: the version this run exported, and at which step


def finish(trainer, strategy, net, step: int) -> dict:
    """Every process: the chief exports (`model_version`, `export_url`, its test scores), then all of them meet
    at the barrier; a chief that failed to export fails every process. Returns what the chief exported ({} on
    the workers)."""
    config = trainer.config
    done, failure = {}, None
    if config.is_chief:
        try:
            done = _export(trainer, net, step)
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


def _export(trainer, net, step: int) -> dict:
    """Chief only: a plain copy of the model (no strategy, no collectives) exported as a SavedModel,
    scored on the test split, then published as the next version. A rerun of a finished run (nothing left
    to train, and this run's export of that step still complete) reports that version instead of
    publishing the same weights again."""
    import json

    from trainer import evaluate, model, publish

    done = _previous_export(trainer, step)
    if done is not None:
        trainer.say(f"already exported at step {step}: version {done['model_version']} ({done['export_url']})")
        return done
    tmp = Path(tempfile.mkdtemp(prefix="trainer-export-"))
    try:
        local = tmp / "model"
        model.export(net, local)
        scores = evaluate.score(local, trainer.data_store)
        version = publish.claim_version(trainer.model_store, owner=trainer.run_store.url)
        target = trainer.model_store.child(str(version))
        publish.publish_dir(local, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    trainer.say(f"exported version {version} to {target.url}: test accuracy {scores['accuracy']:.4f} "
                f"on {scores['count']} images")
    done = {"accuracy": scores["accuracy"], "loss": scores["loss"], "test_count": scores["count"],
            "model_version": version, "export_url": target.url}
    trainer.run_store.put_bytes(EXPORT_RECORD, json.dumps({**done, "step": step}, sort_keys=True).encode())
    return done

def _previous_export(trainer, step: int) -> dict | None:
    import json

    from trainer import publish
    from trainer.storeerrors import NotFound

    try:
        record = json.loads(trainer.run_store.get_bytes(EXPORT_RECORD))
        done = {k: record[k] for k in ("accuracy", "loss", "test_count", "model_version", "export_url")}
        version = int(done["model_version"])
    except (NotFound, ValueError, KeyError, TypeError):
        return None
    if record.get("step") != step or done["export_url"] != trainer.model_store.url_of(str(version)):
        return None
    return done if version in publish.complete_versions(trainer.model_store) else None



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

