"""The benchmarks' shared set-up: the embedded S3 server, the dev stack's render (every `python -m trainer`
process is one of its pod specs), the training data prepared once, a timed `train` run, and where each step
puts its figures (`values`, keyed as in KEYS), its details and its line of the table."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from demo.podspecs import LocalStack
from demo.s3server import CREDENTIALS, S3Server
from demo.supervisor import Supervisor

KEYS = ("input_s3_vs_local", "train_s3_vs_local", "workers_2_vs_1", "tensorboard_lag_s", "publish_s3_vs_local",
        "render_s_1", "render_s_64",
        # added with the scaling curve and the summary uploads; the keys above keep their meaning
        "input_s3_warm_vs_local", "examples_per_s_1", "examples_per_s_2", "examples_per_s_3",
        "summary_upload_mb_hour_1", "summary_upload_mb_hour_10",
        # added with the comparison against plain Keras and the three cold reads; the keys above keep their meaning
        "trainer_vs_keras_fit", "input_s3_vs_local_median3", "input_s3_server_cpu_share")
BUCKET = "bench"
ONE_THREAD = {"TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1", "OMP_NUM_THREADS": "1"}


class Bench:
    def __init__(self, size: dict, out: Path):
        self.size, self.out = size, out
        self.sup = Supervisor(out / "logs")
        self.server: S3Server | None = None
        self.values: dict[str, float | None] = dict.fromkeys(KEYS)
        self.details: dict[str, dict] = {}
        self.rows: list[tuple[str, str]] = []  # (benchmark, what was measured)

    # --- set-up --------------------------------------------------------------------------------------------

    def start(self) -> None:
        self.server = S3Server(log_path=str(self.out / "s3-server.log")).start()
        os.environ.update(self.server.env())  # this process's stores (trainer.s3) use the server too
        import boto3

        boto3.client("s3", endpoint_url=self.server.endpoint).create_bucket(Bucket=BUCKET)
        keys = {k: v for k, v in CREDENTIALS.items() if k != "AWS_REGION"}
        self.stack = LocalStack.render({"training.run": "bench"}, self.server.endpoint, keys, self.out)
        self.env = self.stack.prepare_data().env  # the render stage itself (6.) runs with this environment
        self._data_ready = False

    def stop(self) -> None:
        self.sup.stop_all()
        if self.server:
            self.server.stop()
        # Keep the logs and bench.json; the data, caches, runs and models are hundreds of MB.
        for name in ("data", "cache", "runs", "models", "render"):
            shutil.rmtree(self.out / name, ignore_errors=True)
        for npz in self.out.glob("*.npz"):
            npz.unlink()

    def data(self) -> tuple[str, str]:
        """The training data, prepared once on S3 by `prepare-data` and copied byte for byte to local disk:
        (s3 URL, file URL)."""
        images = self.size["train_images"]
        name = f"synthetic-{images}" if images else "digits"
        s3_url, local_dir = f"s3://{BUCKET}/data/{name}", self.out / "data" / name
        if not self._data_ready:
            source = "digits"
            if images:
                import numpy as np

                rng = np.random.default_rng(0)
                test = images // 6
                source = str(self.out / f"{name}.npz")
                np.savez(source, x_train=rng.integers(0, 256, (images, 28, 28), dtype=np.uint8),
                         y_train=rng.integers(0, 10, images).astype(np.int64),
                         x_test=rng.integers(0, 256, (test, 28, 28), dtype=np.uint8),
                         y_test=rng.integers(0, 10, test).astype(np.int64))
            prep = self.stack.prepare_data().with_args("--source", source).with_env(DATA_URL=s3_url)
            self.sup.wait_all("prepare-data", [self.sup.start(prep.name, prep.cmd, prep.env)], 900)
            from trainer.store import open_store

            remote = open_store(s3_url)
            for key in remote.list():
                remote.get_file(key, local_dir / key)
            self._data_ready = True
        return s3_url, f"file://{local_dir}"

    def data_name(self) -> str:
        images = self.size["train_images"]
        return f"{images:,} random MNIST-sized images" if images else "the offline digits"

    def timed_train(self, name: str, args: list[str], workers: int = 0, pin: bool = False, **env: str) -> dict:
        """A `train` run (a lone chief, or chief + workers, optionally each pinned to its own CPU): the wall
        time of the whole command and the chief's JSON."""
        replicas = self.stack.train(workers=workers)
        n = len(replicas)
        cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
        start = time.monotonic()
        procs = []
        for rank, p in enumerate(replicas):
            p = p.with_args(*args).with_env(**env)
            cmd = p.cmd
            if pin and shutil.which("taskset") and len(cpus) >= n:
                cmd = ["taskset", "-c", str(cpus[rank]), *cmd]
            procs.append(self.sup.start(f"{name}-{p.name.removeprefix('train-')}", cmd, p.env))
        self.sup.wait_all(name, procs, timeout=1800)
        wall = time.monotonic() - start
        result = procs[0].result() or {}
        return {"wall_s": round(wall, 3), "result": result,
                "pinned": bool(pin and shutil.which("taskset") and len(cpus) >= n)}

    def timed_module(self, name: str, module: str, args: list[str], **env: str) -> dict:
        """`python -m <module> ARGS` as one more process with the dev stack's training environment (as
        `timed_train`'s lone chief gets it): the wall time and its last JSON line."""
        p = self.stack.train(workers=0)[0].with_env(**env)
        start = time.monotonic()
        proc = self.sup.start(name, [p.cmd[0], "-m", module, *args], p.env)
        self.sup.wait_all(name, [proc], timeout=1800)
        return {"wall_s": round(time.monotonic() - start, 3), "result": proc.result() or {}}
