"""The demo's stages, in order (`Demo.run`): each runs what the dev stack's render declares, as local processes
(demo/podspecs.py), and prints one line with its time (demo/supervisor.py's `Progress`)."""

from __future__ import annotations

import os
import re
import sys
import time
import urllib.request

from demo import report, supervisor
from demo.podspecs import LocalStack, Process
from demo.s3server import CREDENTIALS, S3Server, boto_kwargs
from demo.settings import TB_REQUIREMENTS, TB_VENV, Settings, tensorboard_install
from demo.supervisor import ROOT, Progress, StageFailed, Supervisor

TF_LOG = re.compile(r"^(WARNING: All log messages|[IWEF]\d{4} |\s*warnings\.warn|.*Warning: )")


class Demo:
    def __init__(self, settings: Settings):
        self.s = settings
        self.sup = Supervisor(settings.dir)
        stages = 7 + (1 if settings.tensorboard else 0)
        self.progress = Progress(stages)
        self.server: S3Server | None = None
        self.stack: LocalStack | None = None
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
        self.render()
        self.prepare_data()
        if s.tensorboard:
            self.start_tensorboard()
        self.train()
        self.curves()
        if self.tensorboard_url:
            self.check_tensorboard()
            self.screenshot_tensorboard()
        self.sync_model()
        self.evaluate()
        self.predict()
        report.summary(
            progress=self.progress,
            results=self.results,
            endpoint=self.server.endpoint,
            bucket=self.stack.bucket,
            log_dir=self.s.dir,
            workers=self.s.workers,
            tensorboard_url=self.tensorboard_url,
        )

    def start_s3(self) -> None:
        log = self.s.dir / "s3-server.log"
        with self.progress.stage("s3 server", [log]) as info:
            self.server = S3Server(log_path=str(log))  # known before it starts: stop() reaches it
            self.server.start()
            info["detail"] = self.server.endpoint

    def render(self) -> None:
        """The dev stack under Pulumi's mocks: every process below runs what its pod spec says."""
        with self.progress.stage("render") as info:
            keys = {k: v for k, v in CREDENTIALS.items() if k != "AWS_REGION"}
            self.stack = LocalStack.render(self.s.overrides(), self.server.endpoint, keys, self.s.dir,
                                           tensorboard=str(TB_VENV / "bin" / "tensorboard"))
            import boto3

            boto3.client("s3", endpoint_url=self.server.endpoint, **boto_kwargs()).create_bucket(
                Bucket=self.stack.bucket)
            job = self.stack.tfjob["metadata"]["name"]
            info["detail"] = (f"dev stack: {len(self.stack.rendered.manifests)} objects; TFJob {job}, "
                              f"bucket {self.stack.bucket} on {self.server.endpoint}")

    def start(self, p: Process, on_line=None) -> supervisor.Proc:
        return self.sup.start(p.name, p.cmd, p.env, on_line=on_line)

    def run_one(self, stage: str, p: Process, timeout: float) -> supervisor.Proc:
        proc = self.start(p)
        self.sup.wait_all(stage, [proc], timeout)
        return proc

    def prepare_data(self) -> None:
        with self.progress.stage("prepare-data") as info:
            p = self.stack.prepare_data()
            out = self.run_one("prepare-data", p, timeout=600).result() or {}
            info["detail"] = f"{out.get('train', '?')} train / {out.get('test', '?')} test images, " \
                             f"{out.get('shards', '?')} shards -> {p.env['DATA_URL']}"

    def train(self) -> None:
        s = self.s
        replicas = [p.with_args(*s.train_args) for p in self.stack.train(workers=s.workers)]
        n = len(replicas)
        say = self.progress.say
        say(f"      training: {n} process{'es' if n > 1 else ''} from the TFJob's replica specs, TF_CONFIG as the "
            f"operator sets it; chief's progress:")

        done = []

        def chief_line(line: str) -> None:
            # The chief's own lines (epochs, resume, export), not TensorFlow's logging, nor the final JSON and
            # what TensorFlow logs after it (the coordination service noticing workers leave).
            if line.lstrip().startswith("{"):
                done.append(True)
            if line.strip() and not self.stopping and not done and not TF_LOG.match(line):
                say(f"        {line}")

        # The chief's environment (RUN_URL, the S3 settings) without TF_CONFIG: what reads its logs back.
        self.run_env = {k: v for k, v in replicas[0].env.items() if k != "TF_CONFIG"}
        with self.progress.stage("train") as info:
            procs = [self.start(p, on_line=chief_line if rank == 0 else None) for rank, p in enumerate(replicas)]
            self.sup.wait_all("train", procs, timeout=1800)
            out = procs[0].result()
            if not out:
                raise StageFailed("train", "the chief printed no JSON result", [procs[0].log])
            self.results["train"] = out
            info["detail"] = (f"accuracy {out.get('accuracy', 0):.4f}, {out.get('examples_per_sec', 0):.0f} "
                              f"examples/s, version {out.get('model_version')} -> {out.get('export_url')}")

    def curves(self) -> None:
        """training.png: loss and accuracy against step for each task, from the run's event files on S3."""
        path = self.s.dir / "training.png"
        run_url = self.run_env["RUN_URL"]
        proc = self.sup.run("train", "curves", [sys.executable, "-m", "demo.curves", run_url, str(path)],
                            self.run_env, timeout=300)
        if not path.is_file():
            raise StageFailed("train", f"no training curves were written to {path}", [proc.log])
        self.results["curves"] = path
        self.progress.say(f"      training curves: {path} (loss and accuracy per task, read back from "
                          f"{run_url}/logs/)")

    def start_tensorboard(self) -> None:
        log = self.s.dir / "tensorboard.log"
        with self.progress.stage("tensorboard", [log]) as info:
            exe = TB_VENV / "bin" / "tensorboard"
            if not exe.exists():
                self.progress.say(f"      installing TensorBoard (no TensorFlow) into {TB_VENV.name} "
                                  f"from {TB_REQUIREMENTS.relative_to(ROOT)}: once, needs the package index")
                self.sup.run("tensorboard", "tensorboard-install", tensorboard_install(), dict(os.environ),
                             timeout=900)
            p = self.stack.tensorboard()
            proc = self.start(p)
            (port,) = p.listens.values()
            url = f"http://127.0.0.1:{port}/"
            _wait_http("tensorboard", url, 60, proc)
            self.tensorboard_url = url
            logdir = p.cmd[p.cmd.index("--logdir") + 1]
            info["detail"] = f"{url}  (logdir {logdir})"

    def check_tensorboard(self) -> None:
        """Asks TensorBoard which tasks and scalars it read from S3 (it reloads every 5 s). Its logdir is this
        run's logs (the stack's), so each of its "runs" is one task of this run."""
        import json

        deadline = time.monotonic() + 30
        seen: dict = {}
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.tensorboard_url + "data/plugin/scalars/tags", timeout=5) as r:
                    seen = {run: sorted(tags) for run, tags in json.load(r).items() if tags}
            except (OSError, ValueError):
                seen = {}
            if seen:
                break
            time.sleep(1)
        self.results["tensorboard"] = seen
        if seen:
            tags = sorted({t for tags in seen.values() for t in tags})
            self.progress.say(f"      TensorBoard reads {len(seen)} task(s) of this demo's run from S3: "
                              f"{', '.join(sorted(seen))}; scalars {', '.join(tags)}")
        else:
            self.progress.say(f"      TensorBoard at {self.tensorboard_url} shows no run of this demo yet "
                              f"(see {self.s.dir / 'tensorboard.log'})")

    def screenshot_tensorboard(self) -> None:
        """tensorboard.png: TensorBoard's scalars page in headless Chromium, once it draws this run's loss."""
        from demo import browser

        problem = browser.missing()
        if problem:
            self.progress.say(f"      no TensorBoard screenshot: {problem}")
            return
        path = self.s.dir / "tensorboard.png"
        try:
            card = browser.screenshot_scalars(self.tensorboard_url, path, timeout=60)
        except Exception as e:  # the live TensorBoard is still there to look at: report, don't fail the run
            self.progress.say(f"      no TensorBoard screenshot: {e}")
            return
        self.results["tensorboard_png"] = path
        self.progress.say(f"      TensorBoard screenshot: {path} ('{card['tag']}' chart of {len(card['runs'])} "
                          f"task(s), headless Chromium)")

    def sync_model(self) -> None:
        with self.progress.stage("sync-model") as info:
            proc = self.run_one("sync-model", self.stack.sync_model(), timeout=300)
            self.results["sync"] = proc.result() or {}
            dest = self.stack.model_dir()
            versions = sorted(p.name for p in dest.iterdir() if p.name.isdigit()) if dest.is_dir() else []
            if not versions:
                raise StageFailed("sync-model", f"no model version appeared in {dest}", [proc.log])
            info["detail"] = f"versions {', '.join(versions)} -> {dest}"

    def evaluate(self) -> None:
        with self.progress.stage("evaluate") as info:
            out = self.run_one("evaluate", self.stack.evaluate(self.s.run), timeout=600).result() or {}
            self.results["evaluate"] = out
            info["detail"] = (f"accuracy {out.get('accuracy', 0):.4f} on {out.get('count')} test images, "
                              f"version {out.get('model_version')}")

    def predict(self) -> None:
        with self.progress.stage("predict") as info:
            # The serving pod: TF Serving's own flags (for the stand-in) beside the watching sidecar.
            sidecar = self.start(self.stack.sync_model(watch=True))
            p = self.stack.serving()
            server = self.start(p)
            url = _wait_line("predict", server, re.compile(r"^serving \S+ at (http://\S+)"), 120)
            _wait_http("predict", f"{url}/v1/models/{self.stack.model_name}", 60, server)
            out = self.run_one("predict", self.stack.predict("--num-tests", "360"), timeout=300).result() or {}
            server.stop()
            sidecar.stop()
            self.results["predict"] = out
            info["detail"] = (f"error rate {out.get('error_rate', 0):.4f} over {out.get('count', '?')} images "
                              f"from version {out.get('model_version')} through the TF Serving REST stand-in")




def _wait_line(stage: str, proc: supervisor.Proc, pattern: re.Pattern, timeout: float) -> str:
    """The first group of the first output line of `proc` that matches `pattern`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in list(proc.tail):
            m = pattern.match(line)
            if m:
                return m.group(1)
        if proc.returncode is not None:
            raise StageFailed(stage, f"{proc.name} exited with code {proc.returncode}{supervisor.last_error(proc)}",
                              [proc.log])
        time.sleep(0.1)
    raise StageFailed(stage, f"{proc.name} printed no address within {timeout:.0f} s", [proc.log])


def _wait_http(stage: str, url: str, timeout: float, proc: supervisor.Proc) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.returncode is not None:
            raise StageFailed(stage, f"{proc.name} exited with code {proc.returncode}{supervisor.last_error(proc)}",
                              [proc.log])
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except OSError:
            time.sleep(0.3)
    raise StageFailed(stage, f"{proc.name}: {url} did not answer within {timeout:.0f} s", [proc.log])
