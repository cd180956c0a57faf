"""What the demo prints at the end: the summary of the run and the commands that deploy the same pipeline."""

from __future__ import annotations

import sys
from pathlib import Path

from demo.s3server import boto_kwargs
from demo.settings import TB_REQUIREMENTS, TB_VENV
from demo.supervisor import ROOT, Progress


def summary(
    *,
    progress: Progress,
    results: dict,
    endpoint: str,
    bucket: str,
    log_dir: Path,
    workers: int,
    tensorboard_url: str | None,
) -> None:
    """The closing table: the figures (`results`: stage -> its JSON line), where the logs (`log_dir`) and pictures
    are, what is in `bucket` on the S3 server at `endpoint`, and the commands that deploy the same pipeline with
    Pulumi at `workers` workers."""
    say = progress.say
    train, ev = results.get("train", {}), results.get("evaluate", {})
    objects, nbytes = bucket_objects(endpoint, bucket)
    rows = [
        ("accuracy (evaluate, test split)", f"{ev.get('accuracy', 0):.4f}"),
        ("examples/s (training, global)", f"{train.get('examples_per_sec', 0):.0f}"),
        ("model version", str(ev.get("model_version", train.get("model_version")))),
        ("promotion (sync-model gate)", promotion(results.get("sync", {}))),
        ("objects written to S3", f"{objects} ({nbytes / 1e6:.1f} MB in s3://{bucket})"),
        ("total time", f"{progress.elapsed():.1f} s"),
        ("training curves", str(results.get("curves", "-"))),
    ]
    if results.get("tensorboard_png"):
        rows.append(("TensorBoard screenshot", str(results["tensorboard_png"])))
    if tensorboard_url:
        rows.append(("TensorBoard", f"{tensorboard_url} ({len(results.get('tensorboard', {}))} "
                                    f"run(s) of this demo read from S3)"))
    else:
        how = "" if (TB_VENV / "bin" / "tensorboard").exists() else \
            f" (the first time it installs {TB_REQUIREMENTS.relative_to(ROOT)} into {TB_VENV.name})"
        rows.append(("TensorBoard", f"not started: `TENSORBOARD=1 make demo` serves it live on the run's "
                                    f"S3 logs{how}"))
    width = max(len(k) for k, _ in rows)
    say("")
    say("summary")
    for k, v in rows:
        say(f"  {k:<{width}}  {v}")
    say(f"  logs: {log_dir}")
    say("")
    say("The same pipeline on a Kubernetes cluster, with Pulumi (prerequisites: a cluster, the three images, "
        "`pulumi login`; see the Deploy section of README.md):")
    for cmd in deploy_commands(workers):
        say(f"  {cmd}")
    if tensorboard_url and sys.stdin.isatty():
        say(f"\nTensorBoard stays up at {tensorboard_url} until you press Enter.")
        try:
            input()
        except EOFError:
            pass


def promotion(sync: dict) -> str:
    """The serving sidecar's decision on the newest version: its accuracy against the stack's thresholds."""
    gate = sync.get("gate") or {}
    promoted, refused = gate.get("promoted") or {}, gate.get("refused") or {}
    rule = f"min-accuracy {gate.get('min_accuracy')}, max-regression {gate.get('max_regression')}"
    parts = []
    if promoted:
        newest = max(promoted, key=int)
        accuracy = promoted[newest]
        parts.append(f"version {newest}, accuracy {accuracy:.4f}: promoted ({rule})" if accuracy is not None
                     else f"version {newest}: promoted ({rule})")
    parts += [f"version {v}: rejected ({reason})" for v, reason in refused.items()]
    return "; ".join(parts) or "-"


def bucket_objects(endpoint: str, bucket: str) -> tuple[int, int]:
    """(objects, bytes) in `bucket` on the S3 server at `endpoint`."""
    import boto3

    s3 = boto3.client("s3", endpoint_url=endpoint, **boto_kwargs())
    count = size = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for obj in page.get("Contents", []):
            count += 1
            size += obj["Size"]
    return count, size


def deploy_commands(workers: int) -> list[str]:
    # Pulumi.dev.yaml is in the repository; the stack allows 1 to 64 workers beside the chief.
    return ["pulumi stack init dev",
            "pulumi config set --path kubeflow-e2e:cluster.context <context>   # kubectl config get-contexts",
            f"pulumi config set kubeflow-e2e:workers {min(64, max(1, workers))}",
            "pulumi up"]
