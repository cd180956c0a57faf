"""Test processes: a real `python -m <module>` child whose output lines are kept with their arrival time, and
the JSON object a command prints last (the contract of `train`, `evaluate`, `predict`, `sync-model`...)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time

from demo.supervisor import last_json
from tests.conftest import ROOT


def stdout_json(proc: subprocess.CompletedProcess) -> dict:
    """The JSON object on the last line of a finished process's stdout; ValueError when it is not one."""
    return json.loads(proc.stdout.strip().splitlines()[-1])


class Proc:
    """A real `python -m <module>` process; stdout and stderr lines are kept with the time they arrived."""

    def __init__(self, args: list[str], env: dict[str, str], module: str = "trainer"):
        self.popen = subprocess.Popen([sys.executable, "-m", module, *args], cwd=ROOT, env=env, text=True,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.out: list[tuple[float, str]] = []
        self.err: list[str] = []
        self.exited_at: float | None = None
        self._threads = [threading.Thread(target=self._read, args=(self.popen.stdout, True), daemon=True),
                         threading.Thread(target=self._read, args=(self.popen.stderr, False), daemon=True)]
        for t in self._threads:
            t.start()
        threading.Thread(target=self._wait, daemon=True).start()

    def _read(self, stream, is_out: bool) -> None:
        for line in stream:
            if is_out:
                self.out.append((time.monotonic(), line.rstrip("\n")))
            else:
                self.err.append(line.rstrip("\n"))

    def _wait(self) -> None:
        self.popen.wait()
        self.exited_at = time.monotonic()

    def wait(self, timeout: float) -> int:
        try:
            rc = self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise
        for t in self._threads:
            t.join(timeout=10)
        while self.exited_at is None:
            time.sleep(0.01)
        return rc

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGKILL)
            self.popen.wait()

    @property
    def lines(self) -> list[str]:
        return [line for _, line in self.out]

    def result(self) -> dict | None:
        return last_json(self.lines)

    def log(self) -> str:
        return "\n".join(self.lines[-20:] + self.err[-40:])
