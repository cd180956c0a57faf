"""A stand-in for the Argo workflow controller and the Kubeflow training operator, for `make e2e` only.

Neither controller runs here: both come from large Go modules whose images would also need a container
runtime to run their pods, and KWOK runs no containers. This helper plays their part at the API level and
no further: it watches Workflows and TFJobs in one namespace and writes the status the real controllers
write when the work succeeds (Workflow `status.phase` Running then Succeeded; TFJob conditions Created,
Running, Succeeded with replica counts), after `delay` seconds. No pod is created and no step runs: the
point is to test what the *engine* does with that status (its awaits and ordering), not what Argo or the
operator do.

It records when it first saw each object and when it marked each one Succeeded (`time.monotonic()`), so the
tests can check that an object created after an await (the TFJob after the data-prep Workflow, serving
after the TFJob) appeared only after the awaited object succeeded.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
import urllib.error

from e2e.controlplane import ControlPlane

WORKFLOWS = "/apis/argoproj.io/v1alpha1/namespaces/{ns}/workflows"
TFJOBS = "/apis/kubeflow.org/v1/namespaces/{ns}/tfjobs"
DEPLOYMENTS = "/apis/apps/v1/namespaces/{ns}/deployments"
MERGE = "application/merge-patch+json"


def now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class FakeControllers(threading.Thread):
    def __init__(self, cp: ControlPlane, namespace: str, delay: float = 3.0, period: float = 0.25):
        super().__init__(name="fake-controllers", daemon=True)
        self.cp, self.ns, self.delay, self.period = cp, namespace, delay, period
        self.seen: dict[str, float] = {}  # "<Kind>/<name>/<uid>" -> first seen
        self.succeeded: dict[str, float] = {}  # same key -> marked Succeeded
        self.errors: list[str] = []
        self._halt = threading.Event()

    def key(self, kind: str, obj: dict) -> str:
        return f"{kind}/{obj['metadata']['name']}/{obj['metadata']['uid']}"

    def first(self, table: dict[str, float], kind: str, name: str) -> float | None:
        """Earliest time in `table` for any object of that kind and name (any uid)."""
        times = [t for k, t in table.items() if k.startswith(f"{kind}/{name}/")]
        return min(times) if times else None

    def last(self, table: dict[str, float], kind: str, name: str) -> float | None:
        times = [t for k, t in table.items() if k.startswith(f"{kind}/{name}/")]
        return max(times) if times else None

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=10)

    def run(self) -> None:
        while not self._halt.is_set():
            try:
                self._tick()
            except urllib.error.HTTPError as exc:
                # 404: a CRD or namespace not there (yet, or any more); 429: a CRD just established
                if exc.code not in (404, 429):
                    self.errors.append(f"{exc.code} {exc.reason} on {exc.url}")
            except OSError as exc:
                self.errors.append(repr(exc))
            self._halt.wait(self.period)

    def _items(self, path: str) -> list[dict]:
        try:
            return self.cp.api(path.format(ns=self.ns)).get("items", [])
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return []
            raise

    def _tick(self) -> None:
        t = time.monotonic()
        for d in self._items(DEPLOYMENTS):
            self.seen.setdefault(self.key("Deployment", d), t)
        for wf in self._items(WORKFLOWS):
            k = self.key("Workflow", wf)
            first = self.seen.setdefault(k, t)
            if wf["metadata"].get("deletionTimestamp") or k in self.succeeded:
                continue
            path = f"{WORKFLOWS.format(ns=self.ns)}/{wf['metadata']['name']}"
            if not (wf.get("status") or {}).get("phase"):
                self.cp.api(path, "PATCH", {"status": {"phase": "Running", "startedAt": now()}}, MERGE)
            elif t - first >= self.delay:
                self.cp.api(
                    path, "PATCH", {"status": {"phase": "Succeeded", "finishedAt": now(), "progress": "1/1"}}, MERGE
                )
                self.succeeded[k] = time.monotonic()
        for job in self._items(TFJOBS):
            k = self.key("TFJob", job)
            first = self.seen.setdefault(k, t)
            if job["metadata"].get("deletionTimestamp") or k in self.succeeded:
                continue
            path = f"{TFJOBS.format(ns=self.ns)}/{job['metadata']['name']}/status"
            specs = job["spec"]["tfReplicaSpecs"]
            stamp = now()
            conditions = [
                {"type": "Created", "status": "True", "reason": "TFJobCreated", "lastTransitionTime": stamp},
                {"type": "Running", "status": "True", "reason": "TFJobRunning", "lastTransitionTime": stamp},
            ]
            if t - first < self.delay:
                if not (job.get("status") or {}).get("conditions"):
                    status = {
                        "conditions": conditions,
                        "startTime": stamp,
                        "replicaStatuses": {r: {"active": s.get("replicas", 1)} for r, s in specs.items()},
                    }
                    self.cp.api(path, "PATCH", {"status": status}, MERGE)
                continue
            conditions[1]["status"] = "False"
            conditions.append(
                {
                    "type": "Succeeded",
                    "status": "True",
                    "reason": "TFJobSucceeded",
                    "message": "stand-in controller (e2e/controllers.py)",
                    "lastTransitionTime": stamp,
                }
            )
            status = {
                "conditions": conditions,
                "completionTime": stamp,
                "replicaStatuses": {r: {"active": 0, "succeeded": s.get("replicas", 1)} for r, s in specs.items()},
            }
            self.cp.api(path, "PATCH", {"status": status}, MERGE)
            self.succeeded[k] = time.monotonic()
