"""`python -m demo` (`make demo`): the whole pipeline on this machine, offline, as `pulumi up` runs it on a
cluster: S3 server -> prepare-data -> chief + workers -> (TensorBoard) -> sync-model -> evaluate -> predict.

Knobs (environment):
  DATASET=digits|mnist   digits: scikit-learn's bundled digits, offline (default); mnist: download mnist.npz;
                         or the path or URL of a file in the mnist.npz layout
  WORKERS=N              workers beside the chief (default 1); 0 trains in the chief alone
  EPOCHS=N               override the trainer's default epochs (20)
  TRAIN_ARGS="..."       more flags for `python -m trainer train`, e.g. TRAIN_ARGS="--batch-size 128 --seed 3"
  TENSORBOARD=1          serve TensorBoard on the run's S3 logs while training (from .venv-tensorboard, which
                         is created on request: TensorBoard reads s3:// only where TensorFlow is not installed)
  DEMO_DIR=path          where the logs go (default .demo/<timestamp>/)
"""

from __future__ import annotations

import os
import re
import shlex
import sys
import time
import urllib.request
from pathlib import Path

from demo import pipeline
from demo.pipeline import ROOT, Progress, StageFailed, Supervisor, tf_config, trainer_env
from demo.s3server import S3Server, free_port

BUCKET = "demo"
TF_LOG = re.compile(r"^(WARNING: All log messages|[IWEF]\d{4} |\s*warnings\.warn|.*Warning: )")
MODEL_NAME = "mnist"
TB_VENV = ROOT / ".venv-tensorboard"
TB_REQUIREMENTS = ROOT / "requirements" / "tensorboard.txt"


def env_int(name: str, default: int, low: int = 0) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = low - 1
    if value < low:
        sys.exit(f"error: {name} must be an integer >= {low} ({raw!r}): set it like {name}={default}")
    return value


def env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


class Settings:
    def __init__(self) -> None:
        self.dataset = (os.environ.get("DATASET") or "digits").strip()
        if self.dataset.lower() in ("digits", "mnist"):
            self.dataset = self.dataset.lower()
            # None: prepare-data's default source, the public mnist.npz
            self.source = "digits" if self.dataset == "digits" else None
        else:
            self.source = self.dataset  # a path or URL of an mnist.npz-layout file
            self.dataset = "custom"
        self.workers = env_int("WORKERS", 1)
        self.epochs = env_int("EPOCHS", 0, low=1) if os.environ.get("EPOCHS", "").strip() else None
        self.tensorboard = env_flag("TENSORBOARD")
        self.train_args = shlex.split(os.environ.get("TRAIN_ARGS", ""))
        stamp = time.strftime("%Y%m%d-%H%M%S")
        self.dir = Path(os.environ.get("DEMO_DIR") or ROOT / ".demo" / stamp).resolve()
        self.run = f"demo-{stamp}"


def main() -> int:
    pipeline.stop_on_signals()  # Ctrl-C, `kill`, a closed terminal: `finally` stops every process started
    settings = Settings()
    settings.dir.mkdir(parents=True, exist_ok=True)
    demo = Demo(settings)
    try:
        demo.run()
        return 0
    except StageFailed as e:
        print(f"\nFAILED at stage '{e.stage}': {e.reason}", file=sys.stderr)
        if e.stage == "prepare-data" and settings.dataset != "digits":
            print("  DATASET=mnist (or a URL) needs the network: unset DATASET for the offline digits",
                  file=sys.stderr)
        for log in e.logs:
            print(f"  log: {log}", file=sys.stderr)
        print(f"  all logs: {settings.dir}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"\ninterrupted: stopping every process the demo started (logs: {settings.dir})", file=sys.stderr)
        return 130
    finally:
        demo.stop()


class Demo:
    def __init__(self, settings: Settings):
        self.s = settings
        self.sup = Supervisor(settings.dir)
        stages = 6 + (1 if settings.tensorboard else 0)
        self.progress = Progress(stages)
        self.server: S3Server | None = None
        self.results: dict = {}
        self.tensorboard_url: str | None = None
        self.stopping = False

    def stop(self) -> None:
        self.stopping = True  # a chief whose worker is being stopped prints errors: not news
        self.sup.stop_all()
        if self.server:
            self.server.stop()

    # --- the stages ---------------------------------------------------------------------------------------

    def run(self) -> None:
        s, say = self.s, self.progress.say
        who = f"chief + {s.workers} worker{'s' if s.workers != 1 else ''}"
        say(f"demo: {s.dataset} dataset, {who}, logs in {s.dir}")
        self.start_s3()
        self.prepare_data()
        if s.tensorboard:
            self.start_tensorboard()
        self.train()
        if self.tensorboard_url:
            self.check_tensorboard()
        self.sync_model()
        self.evaluate()
        self.predict()
        self.summary()

    def start_s3(self) -> None:
        log = self.s.dir / "s3-server.log"
        with self.progress.stage("s3 server", [log]) as info:
            self.server = S3Server(log_path=str(log))  # known before it starts: stop() reaches it
            self.server.start()
            import boto3

            boto3.client("s3", endpoint_url=self.server.endpoint, **_boto_kwargs()).create_bucket(Bucket=BUCKET)
            info["detail"] = f"{self.server.endpoint}, bucket {BUCKET}"
        self.env = trainer_env(
            self.server.env(),
            DATA_URL=f"s3://{BUCKET}/data/{self.s.dataset}",
            RUN_URL=f"s3://{BUCKET}/runs/{self.s.run}",
            MODEL_URL=f"s3://{BUCKET}/models/{MODEL_NAME}",
            DATA_CACHE_DIR=str(self.s.dir / "cache"),
        )

    def prepare_data(self) -> None:
        source = self.s.source
        args = ["prepare-data"] + (["--source", source] if source else [])
        with self.progress.stage("prepare-data") as info:
            proc = self.sup.run("prepare-data", "prepare-data", _trainer_cmd(args), self.env, timeout=600)
            out = proc.result() or {}
            info["detail"] = f"{out.get('train', '?')} train / {out.get('test', '?')} test images, " \
                             f"{out.get('shards', '?')} shards -> {self.env['DATA_URL']}"

    def train(self) -> None:
        s = self.s
        n = 1 + s.workers
        ports = [free_port() for _ in range(n)]
        args = ["train"] + (["--epochs", str(s.epochs)] if s.epochs else []) + s.train_args
        say = self.progress.say
        say(f"      training: {n} process{'es' if n > 1 else ''}, TF_CONFIG as the TFJob operator sets it; "
            f"chief's progress:")

        def chief_line(line: str) -> None:
            # The chief's own lines (epochs, resume, export), not TensorFlow's logging or the final JSON.
            if line.strip() and not self.stopping and not line.lstrip().startswith("{") and not TF_LOG.match(line):
                say(f"        {line}")

        with self.progress.stage("train") as info:
            procs = []
            for rank in range(n):
                kind, index = ("chief", 0) if rank == 0 else ("worker", rank - 1)
                env = dict(self.env, TF_CONFIG=tf_config(ports, kind, index)) if n > 1 else self.env
                procs.append(self.sup.trainer(f"train-{kind}-{index}", args, env,
                                              on_line=chief_line if rank == 0 else None))
            self.sup.wait_all("train", procs, timeout=1800)
            out = procs[0].result()
            if not out:
                raise StageFailed("train", "the chief printed no JSON result", [procs[0].log])
            self.results["train"] = out
            info["detail"] = (f"accuracy {out.get('accuracy', 0):.4f}, {out.get('examples_per_sec', 0):.0f} "
                              f"examples/s, version {out.get('model_version')} -> {out.get('export_url')}")

    def start_tensorboard(self) -> None:
        log = self.s.dir / "tensorboard.log"
        with self.progress.stage("tensorboard", [log]) as info:
            exe = TB_VENV / "bin" / "tensorboard"
            if not exe.exists():
                self.progress.say(f"      installing TensorBoard (no TensorFlow) into {TB_VENV.name} "
                                  f"from {TB_REQUIREMENTS.relative_to(ROOT)}: once, needs the package index")
                self.sup.run("tensorboard", "tensorboard-install", [
                    "sh", "-c",
                    f'"{sys.executable}" -m venv "{TB_VENV}" && "{TB_VENV}/bin/pip" install --quiet '
                    f'--disable-pip-version-check -r "{TB_REQUIREMENTS}" -c "{ROOT}/requirements/constraints.txt"',
                ], dict(os.environ), timeout=900)
            port = free_port()
            tb_env = {k: v for k, v in os.environ.items() if k not in pipeline.URL_VARS}
            tb_env.update(self.server.env())  # TensorBoard's own s3 reader wants S3_ENDPOINT as a full URL
            self.sup.start("tensorboard", [
                str(exe), "--logdir", f"s3://{BUCKET}/runs/", "--host", "127.0.0.1", "--port", str(port),
                "--reload_interval", "5",
            ], tb_env)
            url = f"http://127.0.0.1:{port}/"
            _wait_http("tensorboard", url, 60, self.sup.procs[-1])
            self.tensorboard_url = url
            info["detail"] = f"{url}  (logdir s3://{BUCKET}/runs/)"

    def check_tensorboard(self) -> None:
        """Asks TensorBoard which runs and scalars it read from S3 (it reloads every 5 s)."""
        import json

        deadline = time.monotonic() + 30
        seen: dict = {}
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.tensorboard_url + "data/plugin/scalars/tags", timeout=5) as r:
                    seen = {run: sorted(tags) for run, tags in json.load(r).items() if self.s.run in run}
            except (OSError, ValueError):
                seen = {}
            if seen:
                break
            time.sleep(1)
        self.results["tensorboard"] = seen
        if seen:
            tags = sorted({t for tags in seen.values() for t in tags})
            self.progress.say(f"      TensorBoard reads {len(seen)} run(s) of this demo from S3: "
                              f"{', '.join(sorted(seen))}; scalars {', '.join(tags)}")
        else:
            self.progress.say(f"      TensorBoard at {self.tensorboard_url} shows no run of this demo yet "
                              f"(see {self.s.dir / 'tensorboard.log'})")

    def sync_model(self) -> None:
        dest = self.s.dir / "models" / MODEL_NAME
        with self.progress.stage("sync-model") as info:
            proc = self.sup.run("sync-model", "sync-model", _trainer_cmd(["sync-model", "--dest", str(dest)]),
                                self.env, timeout=300)
            versions = sorted(p.name for p in dest.iterdir() if p.name.isdigit()) if dest.is_dir() else []
            if not versions:
                raise StageFailed("sync-model", f"no model version appeared in {dest}", [proc.log])
            self.model_dir = dest
            info["detail"] = f"versions {', '.join(versions)} -> {dest}"

    def evaluate(self) -> None:
        with self.progress.stage("evaluate") as info:
            proc = self.sup.run("evaluate", "evaluate", _trainer_cmd(["evaluate"]), self.env, timeout=600)
            out = proc.result() or {}
            self.results["evaluate"] = out
            info["detail"] = (f"accuracy {out.get('accuracy', 0):.4f} on {out.get('count')} test images, "
                              f"version {out.get('model_version')}")

    def predict(self) -> None:
        with self.progress.stage("predict") as info:
            # TF Serving's own flags; port 0 picks a free one, and the server prints where it listens.
            server = self.sup.start("serving", [
                sys.executable, "-m", "demo.serving", "--model_name", MODEL_NAME,
                "--model_base_path", str(self.model_dir), "--rest_api_port", "0",
            ], self.env)
            url = _wait_line("predict", server, re.compile(r"^serving \S+ at (http://\S+)"), 120)
            _wait_http("predict", f"{url}/v1/models/{MODEL_NAME}", 60, server)
            proc = self.sup.run("predict", "predict", _trainer_cmd(
                ["predict", "--server", url, "--model", MODEL_NAME, "--num-tests", "360"]), self.env,
                timeout=300)
            out = proc.result() or {}
            server.stop()
            self.results["predict"] = out
            info["detail"] = (f"error rate {out.get('error_rate', 0):.4f} over {out.get('count', '?')} images "
                              f"from version {out.get('model_version')} through the TF Serving REST stand-in")

    def summary(self) -> None:
        say = self.progress.say
        train, ev = self.results.get("train", {}), self.results.get("evaluate", {})
        objects, nbytes = self.bucket_objects()
        rows = [
            ("accuracy (evaluate, test split)", f"{ev.get('accuracy', 0):.4f}"),
            ("examples/s (training, global)", f"{train.get('examples_per_sec', 0):.0f}"),
            ("model version", str(ev.get("model_version", train.get("model_version")))),
            ("objects written to S3", f"{objects} ({nbytes / 1e6:.1f} MB in s3://{BUCKET})"),
            ("total time", f"{self.progress.elapsed():.1f} s"),
        ]
        if self.tensorboard_url:
            rows.append(("TensorBoard", f"{self.tensorboard_url} ({len(self.results.get('tensorboard', {}))} "
                                        f"run(s) of this demo read from s3://{BUCKET}/runs/)"))
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
        say(f"  logs: {self.s.dir}")
        say("")
        say("The same pipeline on a Kubernetes cluster, with Pulumi (prerequisites: a cluster, the three images, "
            "`pulumi login`; see the Deploy section of README.md):")
        for cmd in deploy_commands(self.s.workers):
            say(f"  {cmd}")
        if self.tensorboard_url and sys.stdin.isatty():
            say(f"\nTensorBoard stays up at {self.tensorboard_url} until you press Enter.")
            try:
                input()
            except EOFError:
                pass

    def bucket_objects(self) -> tuple[int, int]:
        import boto3

        s3 = boto3.client("s3", endpoint_url=self.server.endpoint, **_boto_kwargs())
        count = size = 0
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
            for obj in page.get("Contents", []):
                count += 1
                size += obj["Size"]
        return count, size


def deploy_commands(workers: int) -> list[str]:
    # Pulumi.dev.yaml is in the repository; the stack allows 1 to 64 workers beside the chief.
    return ["pulumi stack init dev", f"pulumi config set kubeflow-e2e:workers {min(64, max(1, workers))}",
            "pulumi up"]


def _trainer_cmd(args: list[str]) -> list[str]:
    return [sys.executable, "-m", "trainer", *args]


def _boto_kwargs() -> dict:
    from demo.s3server import CREDENTIALS

    return {"region_name": CREDENTIALS["AWS_REGION"], "aws_access_key_id": CREDENTIALS["AWS_ACCESS_KEY_ID"],
            "aws_secret_access_key": CREDENTIALS["AWS_SECRET_ACCESS_KEY"]}


def _wait_line(stage: str, proc: pipeline.Proc, pattern: re.Pattern, timeout: float) -> str:
    """The first group of the first output line of `proc` that matches `pattern`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in list(proc.tail):
            m = pattern.match(line)
            if m:
                return m.group(1)
        if proc.returncode is not None:
            raise StageFailed(stage, f"{proc.name} exited with code {proc.returncode}{pipeline.last_error(proc)}",
                              [proc.log])
        time.sleep(0.1)
    raise StageFailed(stage, f"{proc.name} printed no address within {timeout:.0f} s", [proc.log])


def _wait_http(stage: str, url: str, timeout: float, proc: pipeline.Proc) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.returncode is not None:
            raise StageFailed(stage, f"{proc.name} exited with code {proc.returncode}{pipeline.last_error(proc)}",
                              [proc.log])
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except OSError:
            time.sleep(0.3)
    raise StageFailed(stage, f"{proc.name}: {url} did not answer within {timeout:.0f} s", [proc.log])


if __name__ == "__main__":
    sys.exit(main())
