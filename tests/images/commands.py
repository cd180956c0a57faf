"""Every command the rendered manifests run in one of our images, and a way to run it in that image's venv.

`collect(rendered)`: each container and init container of the render's pods (tests/infra/pods.py), its
`command`/`args` combined with the Dockerfile's ENTRYPOINT/CMD as Kubernetes does, Argo's placeholders filled
with the workflow's defaults; an image is ours when its repository ends in `/trainer`, `/sidecar` or
`/tensorboard`, the others are listed as foreign. `LocalCluster.run`: the command as a real process in
`venvs.path(image)`, with the image's files, its ENV and the container's env, and only the object store,
the volumes and the ports mapped to this machine. What is mapped, and how: docs/e2e.md, "Every command in
its image".
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.helpers import argo
from tests.images import venvs
from tests.infra.pods import pod_specs

ROOT = venvs.ROOT
DOCKER = ROOT / "docker"
WORKFLOW_NAME = "retrain-mnist-check"
_PLACEHOLDER = re.compile(r"\{\{\s*([^}]+?)\s*\}\}")
_MISSING = re.compile(r"No module named '([^']+)'")
TRAINER_ORDER = ("check-parameters", "prepare-data", "train", "evaluate", "sync-model", "predict")


@dataclass
class PodCommand:
    stack: str
    where: str  # Kind/name/.../container
    image: str  # trainer | sidecar | tensorboard, or the foreign reference
    ref: str  # the image reference in the manifest
    argv: list[str]
    env: list[dict]
    mounts: list[dict]
    volumes: list[dict]
    ports: list[int]
    init: bool  # an init container
    long_running: bool  # a Deployment's container: must stay up
    probe: dict | None  # the readinessProbe
    ours: bool = True

    @property
    def shell(self) -> str:
        return shlex.join(self.argv)

    def verb(self) -> str:
        if self.argv[:3] == ["python", "-m", "trainer"] and len(self.argv) > 3:
            return self.argv[3]
        return self.argv[0]


# ---- Dockerfiles ------------------------------------------------------------------------------------------


@dataclass
class Dockerfile:
    env: dict[str, str] = field(default_factory=dict)
    workdir: str = "/"
    copies: list[tuple[list[str], str]] = field(default_factory=list)
    entrypoint: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)


def dockerfile(image: str) -> Dockerfile:
    text = re.sub(r"\\\n", " ", (DOCKER / f"{image}.Dockerfile").read_text())
    out = Dockerfile()
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        word = word.upper()
        if word == "ENV":
            for item in shlex.split(rest):
                key, _, value = item.partition("=")
                out.env[key] = value
        elif word == "WORKDIR":
            out.workdir = rest.strip()
        elif word == "COPY":
            *srcs, dest = rest.split()
            out.copies.append((srcs, dest))
        elif word in ("ENTRYPOINT", "CMD"):
            setattr(out, word.lower(), json.loads(rest))
    return out


def _ours(ref: str) -> str | None:
    repo = ref.split("@", 1)[0]
    repo = repo.rsplit(":", 1)[0] if ":" in repo.rsplit("/", 1)[-1] else repo
    name = repo.rsplit("/", 1)[-1]
    return name if name in venvs.IMAGES else None


def image_files(image: str, app: Path) -> Path:
    """Lays out the image's working directory in `app`: what its Dockerfile COPYs (the requirement files go to
    pip, not here). A file the Dockerfile does not copy is not there, as in the image."""
    for srcs, dest in dockerfile(image).copies:
        for src in srcs:
            if src.startswith("requirements/"):
                continue
            if (ROOT / src).is_dir():  # COPY dir/ dest/: the folder's contents into dest
                shutil.copytree(ROOT / src, app / dest, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                target = app / dest / Path(src).name if dest.endswith("/") else app / dest
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / src, target)
    app.mkdir(parents=True, exist_ok=True)
    return app


# ---- collecting -------------------------------------------------------------------------------------------


class _View:
    """What pods.pod_specs reads of a render: its manifests, with Argo parameters filled in."""

    def __init__(self, manifests: list[dict]):
        self.manifests = manifests


def _fill_argo(m: dict) -> dict:
    if m.get("kind") not in ("Workflow", "WorkflowTemplate"):
        return m
    params = {p["name"]: str(p["value"]) for p in m["spec"].get("arguments", {}).get("parameters", [])}
    values = {f"workflow.parameters.{k}": v for k, v in params.items()} | {"workflow.name": WORKFLOW_NAME}

    try:
        return json.loads(argo.substitute(json.dumps(m), values))
    except KeyError as e:
        raise ValueError(f"{m['kind']}/{m['metadata']['name']}: no value for {{{{{e.args[0]}}}}}") from None


def collect(rendered) -> list[PodCommand]:
    """Every container of every pod the render would start, ours and foreign, in render order."""
    out = []
    view = _View([_fill_argo(m) for m in rendered.manifests])
    for where, spec in pod_specs(view):
        pairs = [*((True, c) for c in spec.get("initContainers", [])), *((False, c) for c in spec["containers"])]
        for init, c in pairs:
            image = _ours(c["image"])
            argv = list(c.get("command") or [])
            if image:
                df = dockerfile(image)
                argv = argv or list(df.entrypoint)
                argv += list(c["args"]) if "args" in c else ([] if c.get("command") else list(df.cmd))
            else:
                argv += list(c.get("args") or [])
            text = json.dumps([argv, c.get("env")])
            if left := _PLACEHOLDER.search(text):
                raise ValueError(f"{rendered.stack} {where}/{c['name']}: unresolved {left.group(0)}")
            out.append(
                PodCommand(
                    stack=rendered.stack,
                    where=f"{where}/{c['name']}",
                    image=image or c["image"],
                    ref=c["image"],
                    argv=argv,
                    env=list(c.get("env") or []),
                    mounts=list(c.get("volumeMounts") or []),
                    volumes=list(spec.get("volumes") or []),
                    ports=[p["containerPort"] for p in c.get("ports", [])],
                    init=init,
                    long_running=where.startswith("Deployment/") and not init,
                    probe=c.get("readinessProbe"),
                    ours=image is not None,
                )
            )
    return out


def datasets(rendered, namespace: str = "kubeflow-e2e") -> dict[str, str]:
    """Fluid Dataset name in our namespace (= its PVC's claimName) -> the S3 URL it mounts, following a
    Dataset that references another (`dataset://<namespace>/<name>`, the cache in its own namespace)."""
    points = {
        (m["metadata"]["namespace"], m["metadata"]["name"]): m["spec"]["mounts"][0]["mountPoint"]
        for m in rendered.find("Dataset")
    }
    out = {}
    for (ns, name), url in points.items():
        if ns != namespace:
            continue
        while url.startswith("dataset://"):
            url = points[tuple(url[len("dataset://") :].split("/", 1))]
        out[name] = url
    return out


def run_order(commands: list[PodCommand]) -> list[PodCommand]:
    """The pipeline's order: one-shot commands by stage (init containers are one-shot), then the long-running
    ones (a server started last sees what the others wrote)."""

    def key(c: PodCommand) -> tuple:
        verb = c.verb()
        stage = TRAINER_ORDER.index(verb) if verb in TRAINER_ORDER else len(TRAINER_ORDER)
        return (c.long_running, stage, not c.init)

    return sorted(commands, key=key)


# ---- running ----------------------------------------------------------------------------------------------


class ImageCommandError(AssertionError):
    pass


@dataclass
class Result:
    command: PodCommand
    argv: list[str]
    returncode: int | None  # None: a long-running command that was up and was stopped
    stdout: str
    stderr: str
    seconds: float


BUCKET = "check"


def _local_bucket(value: str) -> str:
    return re.sub(r"s3://[a-z0-9][a-z0-9.-]*", f"s3://{BUCKET}", value)


def _url_shape(value: str) -> str:
    m = re.match(r"^(s3|file)://", value)
    return m.group(1) if m else value


class LocalCluster:
    """Runs pod commands of one stack in their image venvs against `s3` (a demo.s3server.S3Server)."""

    def __init__(self, renders: list, s3, workdir: Path, extra_env: dict[str, str] | None = None):
        self.s3 = s3
        self.workdir = workdir
        self.extra_env = extra_env or {}
        self.datasets = {(r.stack, name): url for r in renders for name, url in datasets(r).items()}
        self._apps: dict[str, Path] = {}
        self._done: set[tuple] = set()

    def signature(self, c: PodCommand) -> tuple:
        """Two replicas (or templates) with this same signature exercise the same code: run once."""
        env = {e["name"]: _url_shape(str(e.get("value", "ref"))) for e in c.env}
        env["S3_ENDPOINT"] = "local"  # set for every stack (see _env)
        # A run's folder is not just a URL's shape: the stack's TensorBoard reads one run's logs, so the training
        # that writes that run must itself run.
        for e in c.env:
            if e["name"] == "RUN_URL" and "value" in e:
                env["RUN_URL"] = _local_bucket(str(e["value"]))
        argv = tuple(_local_bucket(a) for a in c.argv)
        return (c.image, argv, tuple(sorted(env.items())), tuple(sorted(m["mountPath"] for m in c.mounts)),
                c.long_running)

    def app(self, image: str) -> Path:
        if image not in self._apps:
            self._apps[image] = image_files(image, self.workdir / f"app-{image}")
        return self._apps[image]

    def _paths(self, c: PodCommand) -> dict[str, Path]:
        base = self.workdir / "mounts" / re.sub(r"[^A-Za-z0-9]+", "-", c.where)
        out = {}
        for m in c.mounts:
            local = base / m["name"]
            local.mkdir(parents=True, exist_ok=True)
            out[m["mountPath"].rstrip("/")] = local
        return out

    @staticmethod
    def _rewrite(value: str, paths: dict[str, Path]) -> str:
        value = _local_bucket(value)
        for mount, local in sorted(paths.items(), key=lambda kv: -len(kv[0])):
            for prefix, repl in ((f"file://{mount}", f"file://{local}"), (mount, str(local))):
                if value == prefix or value.startswith(prefix + "/"):
                    return repl + value[len(prefix) :]
        return value

    def _env(self, c: PodCommand, paths: dict[str, Path]) -> dict[str, str]:
        df = dockerfile(c.image)
        env = {"PATH": f"{venvs.path(c.image) / 'bin'}:/usr/bin:/bin", "PYTHONNOUSERSITE": "1"}
        env.update({k: self._rewrite(v, paths) for k, v in df.env.items()})
        keys = self.s3.env()
        for e in c.env:
            name = e["name"]
            if "value" in e:
                env[name] = self._rewrite(str(e["value"]), paths)
            elif "secretKeyRef" in e.get("valueFrom", {}) and name in keys:
                env[name] = keys[name]
            else:
                raise ImageCommandError(f"{c.stack} {c.where}: no local mapping for env {name}: {e}")
        env["S3_ENDPOINT"] = self.s3.endpoint  # MinIO's Service, or AWS when unset: the local server
        env.update(self.extra_env)
        return env

    def _argv(self, c: PodCommand, paths: dict[str, Path]) -> list[str]:
        argv, ports = [], {}
        for p in c.ports:
            ports[str(p)] = str(_free_port())
        for i, a in enumerate(c.argv):
            a = self._rewrite(a, paths)
            if a in ports and i > 0 and c.argv[i - 1].startswith("-"):
                a = ports[a]
            elif "=" in a and a.startswith("-") and a.split("=", 1)[1] in ports:
                a = a.split("=", 1)[0] + "=" + ports[a.split("=", 1)[1]]
            argv.append(a)
        self._ports = ports
        return argv

    def _bucket(self) -> None:
        client = self._client()
        try:
            client.create_bucket(Bucket=BUCKET)
        except client.exceptions.BucketAlreadyOwnedByYou:
            pass

    def _client(self):
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.s3.endpoint,
            region_name="us-east-1",
            aws_access_key_id=self.s3.env()["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=self.s3.env()["AWS_SECRET_ACCESS_KEY"],
        )

    def _fill_volumes(self, c: PodCommand, paths: dict[str, Path]) -> None:
        """A mounted Fluid dataset PVC gets the Dataset's S3 prefix, as Fluid's DataLoad would."""
        claims = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in c.volumes if "persistentVolumeClaim" in v}
        for m in c.mounts:
            claim = claims.get(m["name"])
            if claim is None:
                continue
            if (c.stack, claim) not in self.datasets:
                raise ImageCommandError(f"{c.stack} {c.where}: PVC {claim} is no Fluid Dataset: no local mapping")
            bucket, _, prefix = _local_bucket(self.datasets[c.stack, claim])[len("s3://") :].partition("/")
            local = paths[m["mountPath"].rstrip("/")]
            client = self._client()
            pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix.rstrip("/") + "/")
            for page in pages:
                for obj in page.get("Contents", []):
                    dest = local / obj["Key"][len(prefix.rstrip("/")) + 1 :]
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    client.download_file(bucket, obj["Key"], str(dest))

    def run(self, c: PodCommand, timeout: float = 600, settle: float = 12) -> Result:
        """Runs `c`; raises ImageCommandError naming the image, the command and any missing module."""
        python = venvs.ready(c.image)
        if python is None:
            raise ImageCommandError(
                f"image venv {c.image} is missing ({venvs.path(c.image)}): `make image-venvs` (part of `make test`) "
                f"builds it from requirements/{c.image}.txt"
            )
        paths = self._paths(c)
        env = self._env(c, paths)
        argv = self._argv(c, paths)
        self._bucket()
        self._fill_volumes(c, paths)
        start = time.monotonic()
        proc = subprocess.Popen(
            argv,
            cwd=self.app(c.image),
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
            executable=shutil.which(argv[0], path=env["PATH"]) or argv[0],
        )
        if not c.long_running:
            try:
                out, err = proc.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                out, err = proc.communicate()
                raise self._error(c, argv, f"did not finish within {timeout:.0f} s", err) from None
            if proc.returncode != 0:
                raise self._error(c, argv, f"exited {proc.returncode}", err)
            return Result(c, argv, proc.returncode, out, err, time.monotonic() - start)
        try:
            self._wait_up(c, proc, settle)
        finally:  # up (or failed): stop it and its children
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
        return Result(c, argv, None, out, err, time.monotonic() - start)

    def _wait_up(self, c: PodCommand, proc: subprocess.Popen, settle: float) -> None:
        """Up means: still running after `settle` seconds and, with an httpGet readiness probe, answering it;
        a TensorBoard on an s3:// logdir must also list the runs written there."""
        deadline = time.monotonic() + max(settle, 90 if c.probe else settle)
        ready_at = time.monotonic() + settle
        http = (c.probe or {}).get("httpGet")
        base = f"http://127.0.0.1:{self._ports[str(http['port'])]}" if http else None
        logdir = next((a for i, a in enumerate(c.argv) if i and c.argv[i - 1] == "--logdir"), "")
        while True:
            if proc.poll() is not None:
                _, err = proc.communicate()
                raise self._error(c, proc.args, f"exited {proc.returncode} while it should keep running", err)
            ok = time.monotonic() >= ready_at
            if ok and base:
                ok = _get(base + http["path"]) is not None
                if ok and logdir.startswith("s3://"):
                    runs = _get(base + "/data/runs")
                    ok = bool(runs and json.loads(runs))
            if ok:
                return
            if time.monotonic() > deadline:
                os.killpg(proc.pid, signal.SIGTERM)
                _, err = proc.communicate()
                raise self._error(c, proc.args, "was not ready in time", err)
            time.sleep(1)

    @staticmethod
    def _error(c: PodCommand, argv, what: str, stderr: str) -> ImageCommandError:
        missing = sorted(set(_MISSING.findall(stderr or "")))
        head = f"image {c.image}: `{c.shell}` ({c.stack} {c.where}) {what}"
        if missing:
            head += f": missing module {', '.join(missing)} (add it to requirements/{c.image}.txt)"
        tail = "\n".join((stderr or "").strip().splitlines()[-15:])
        return ImageCommandError(f"{head}\n  ran: {shlex.join(argv)}\n  stderr (end):\n{tail}")


def _get(url: str) -> bytes | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.read() if r.status == 200 else None
    except OSError:
        return None


def _free_port() -> int:
    from demo.s3server import free_port

    return free_port()


def iter_ours(commands: list[PodCommand]) -> Iterator[PodCommand]:
    return (c for c in commands if c.ours)


def listing(renders: list) -> str:
    """A table of every container command, per image: what docs/trainer.md ("Images") and the report list."""
    lines = []
    for rendered in renders:
        for c in collect(rendered):
            shell = c.shell if "\n" not in c.shell else c.shell.split("\n", 1)[0] + " ..."
            lines.append(f"{c.stack:5} {c.image if c.ours else 'foreign ' + c.ref:45} {c.where:55} {shell}")
    return "\n".join(lines)


if __name__ == "__main__":
    from render import render

    print(listing([render("dev"), render("prod")]))
