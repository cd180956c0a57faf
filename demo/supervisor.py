"""Stages and the processes they start: one progress line per stage, one log file per process, and on any
failure every process stopped and the failed stage named with its log.

Shared by `python -m demo`, `python -m bench` and the fault drills, so each runs real `python -m trainer`
processes the same way.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
URL_VARS = ("TF_CONFIG", "DATA_URL", "RUN_URL", "MODEL_URL", "S3_ENDPOINT")


class StageFailed(Exception):
    def __init__(self, stage: str, reason: str, logs: list[Path]):
        self.stage, self.reason, self.logs = stage, reason, logs
        where = ", ".join(str(p) for p in logs) or "no log"
        super().__init__(f"stage '{stage}' failed: {reason} (log: {where})")


def trainer_env(s3_env: dict[str, str], **extra: str) -> dict[str, str]:
    """This process's environment without the trainer's variables, plus the S3 server's and `extra`."""
    env = {k: v for k, v in os.environ.items() if k not in URL_VARS}
    env.update(s3_env)
    pythonpath = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    env.update({"PYTHONPATH": pythonpath, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"})
    env.update(extra)
    return env


def tf_config(ports: list[int], task_type: str, index: int, host: str = "127.0.0.1") -> str:
    """TF_CONFIG for a chief (ports[0]) and len(ports)-1 workers on `host`, for tests that start trainer
    processes by hand: built by `demo.podspecs.tf_config` (the operator's way) from a TFJob of that shape, then
    each replica's Service name replaced by its local address."""
    from demo.podspecs import tf_config as operator_tf_config

    def replica(n: int) -> dict:
        return {"replicas": n, "template": {"spec": {"containers": [{"name": "tensorflow"}]}}}

    job = {"metadata": {"name": "local", "namespace": "local"},
           "spec": {"tfReplicaSpecs": {"Chief": replica(1), "Worker": replica(len(ports) - 1)}}}
    config = json.loads(operator_tf_config(job, task_type.capitalize(), index) or "{}")
    if not config:  # the chief alone: the operator sets no TF_CONFIG; this helper still names the chief
        config = {"cluster": {}, "task": {"type": task_type, "index": index}, "environment": "cloud"}
    config["cluster"] = {t: [f"{host}:{p}" for p in ([ports[0]] if t == "chief" else ports[1:])]
                         for t in ("chief", "worker") if t == "chief" or len(ports) > 1}
    return json.dumps(config)


def last_json(lines) -> dict | None:
    """The last line that parses as a JSON object: the contract for `train`, `evaluate` and `predict`."""
    for line in reversed(list(lines)):
        line = line.strip()
        if line.startswith("{"):
            try:
                value = json.loads(line)
            except ValueError:
                continue
            if isinstance(value, dict):
                return value
    return None


class Proc:
    """A child process whose stdout+stderr go to a log file (and, line by line, to `on_line`)."""

    def __init__(self, name: str, cmd: list[str], env: dict[str, str], log: Path,
                 on_line: Callable[[str], None] | None = None, cwd: Path = ROOT):
        self.name, self.cmd, self.log = name, cmd, log
        self.tail: deque[str] = deque(maxlen=400)
        log.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(log, "w", encoding="utf-8")
        self._log.write("$ " + " ".join(cmd) + "\n")
        self._log.flush()
        # Own process group: Ctrl-C reaches only the demo, which then stops its children in order.
        self.popen = subprocess.Popen(
            cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            bufsize=1, start_new_session=True,
        )
        self._on_line = on_line
        self._reader = threading.Thread(target=self._read, name=f"log-{name}", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            self._log.write(line)
            self._log.flush()
            self.tail.append(line.rstrip("\n"))
            if self._on_line:
                try:
                    self._on_line(line.rstrip("\n"))
                except Exception:  # a display problem must not kill the log
                    pass
        self._log.close()

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def returncode(self) -> int | None:
        return self.popen.poll()

    def wait(self, timeout: float | None = None) -> int:
        rc = self.popen.wait(timeout=timeout)
        self._reader.join(timeout=10)
        return rc

    def result(self) -> dict | None:
        self._reader.join(timeout=10)
        return last_json(self.tail)

    def stop(self, grace: float = 10.0) -> None:
        if self.popen.poll() is None:
            self._signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                self.popen.wait()
        self._reader.join(timeout=10)

    def kill(self) -> None:
        """SIGKILL, no grace: a crashed pod."""
        self._signal(signal.SIGKILL)
        self.popen.wait()
        self._reader.join(timeout=10)

    def _signal(self, sig: int) -> None:
        try:
            os.killpg(self.popen.pid, sig)  # the group: a child the process started goes too
        except ProcessLookupError:
            pass


_starting = 0
_pending: list[int] = []


def _interrupt(signum, frame) -> None:
    if _starting:  # a child is being started: raise once it is on the list, so that it gets stopped too
        _pending.append(signum)
        return
    raise KeyboardInterrupt


def stop_on_signals() -> None:
    """Ctrl-C, `kill` and a closed terminal all unwind as KeyboardInterrupt (so `finally` can stop every
    child), but never between a child's start and its registration with the Supervisor."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _interrupt)


@contextmanager
def _registering() -> Iterator[None]:
    global _starting
    _starting += 1
    try:
        yield
    finally:
        _starting -= 1
    if not _starting and _pending:
        _pending.clear()
        raise KeyboardInterrupt


class Supervisor:
    """Starts processes, remembers them, and stops every one that is still running on `stop_all()`."""

    def __init__(self, log_dir: Path):
        self.log_dir = log_dir
        self.procs: list[Proc] = []

    def start(self, name: str, cmd: list[str], env: dict[str, str], on_line=None) -> Proc:
        with _registering():
            proc = Proc(name, cmd, env, self.log_dir / f"{name}.log", on_line=on_line)
            self.procs.append(proc)
        return proc

    def trainer(self, name: str, args: list[str], env: dict[str, str], on_line=None) -> Proc:
        return self.start(name, [sys.executable, "-m", "trainer", *args], env, on_line=on_line)

    def run(self, stage: str, name: str, cmd: list[str], env: dict[str, str], timeout: float,
            on_line=None) -> Proc:
        """Runs one process to the end; StageFailed if it exits non-zero or outlives `timeout`."""
        proc = self.start(name, cmd, env, on_line=on_line)
        self.wait_all(stage, [proc], timeout)
        return proc

    def wait_all(self, stage: str, procs: list[Proc], timeout: float) -> None:
        """Waits for every one of `procs` to exit 0. The first failure stops the others at once: a chief
        whose worker died would otherwise wait on its collectives."""
        deadline = time.monotonic() + timeout
        pending = list(procs)
        while pending:
            for proc in list(pending):
                rc = proc.returncode
                if rc is None:
                    continue
                pending.remove(proc)
                if rc != 0:
                    for other in pending:
                        other.stop()
                    proc.wait()
                    raise StageFailed(stage, f"{proc.name} exited with code {rc}{last_error(proc)}", [proc.log])
            if pending and time.monotonic() > deadline:
                for other in pending:
                    other.stop()
                raise StageFailed(stage, f"{', '.join(p.name for p in pending)} still running after "
                                         f"{timeout:.0f} s", [p.log for p in pending])
            time.sleep(0.1)
        for proc in procs:
            proc.wait()

    def stop_all(self) -> None:
        # Reverse order: workers and servers started later go first, the chief last.
        for proc in reversed(self.procs):
            proc.stop()


def last_error(proc: Proc) -> str:
    """The child's own `error: ...` line, if it printed one: the most useful thing to show."""
    proc._reader.join(timeout=10)
    for line in reversed(proc.tail):
        if line.startswith("error:"):
            return f": {line}"
    for line in reversed(proc.tail):
        if line.strip():
            return f": {line.strip()[:300]}"
    return ""


class Progress:
    """One line per stage: `[n/N] name   elapsed   (total)   detail`."""

    def __init__(self, total: int, out=None):
        self.total = total
        self.n = 0
        self.t0 = time.monotonic()
        self.out = out or sys.stdout
        self.times: dict[str, float] = {}

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    @contextmanager
    def stage(self, name: str, logs: list[Path] | None = None) -> Iterator[dict]:
        """Runs a stage; the body may put a one-line `detail` into the yielded dict. Any exception other than
        StageFailed becomes a StageFailed naming this stage."""
        self.n += 1
        info: dict = {"detail": ""}
        start = time.monotonic()
        try:
            yield info
        except StageFailed:
            raise
        except Exception as e:
            raise StageFailed(name, f"{type(e).__name__}: {e}", logs or []) from e
        took = time.monotonic() - start
        self.times[name] = took
        self.say(f"[{self.n}/{self.total}] {name:<13} {took:6.1f} s   (total {self.elapsed():5.1f} s)   "
                 f"{info['detail']}".rstrip())
