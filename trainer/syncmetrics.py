"""`sync-model --metrics-port P`: the sidecar's decisions as Prometheus metrics on `http://:P/metrics`.

- `sync_model_served_version` (gauge): the newest version in the serving folder, the one TF Serving serves
  (its default policy serves the latest); 0 before the first.
- `sync_model_last_success_timestamp_seconds` (gauge, Unix time): the end of the last sync that reached the
  bucket and left the folder as it should be; alert on `time() - this` growing past a few intervals.
- `sync_model_rejected_versions_total` (counter): versions this process refused (the promotion gate, a bad
  signature, files that do not match `_COMPLETE`); `sync_model_rejected_version{version}` is 1 for each.
- `sync_model_sync_errors_total{kind}` (counter): failed syncs, `kind` `transient` (retried: an outage, a
  corrupt upload) or `permanent` (the process then exits 2).

Each process has its own registry (no Python process metrics), so only these are served.
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server


class SyncMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.served = Gauge("sync_model_served_version", "The model version TF Serving serves (the newest in "
                            "the serving folder); 0 before the first", registry=self.registry)
        self.last_success = Gauge("sync_model_last_success_timestamp_seconds",
                                  "Unix time of the end of the last successful sync", registry=self.registry)
        self.rejected_total = Counter("sync_model_rejected_versions", "Versions this process refused to serve",
                                      registry=self.registry)
        self.rejected = Gauge("sync_model_rejected_version", "1 for each version this process refused",
                              ["version"], registry=self.registry)
        self.errors = Counter("sync_model_sync_errors", "Failed syncs by kind (transient: retried; permanent: "
                              "the process exits)", ["kind"], registry=self.registry)
        for kind in ("transient", "permanent"):
            self.errors.labels(kind=kind)  # both series exist from the start, at 0

    def serve(self, port: int, addr: str = "0.0.0.0") -> None:
        """Serves /metrics on `port` in a background thread."""
        start_http_server(port, addr=addr, registry=self.registry)

    def synced(self, result: dict) -> None:
        """One successful `sync_once` result."""
        for v in result["rejected"]:
            self.rejected_total.inc()
            self.rejected.labels(version=str(v)).set(1)
        self.served.set(max(result["versions"], default=0))
        self.last_success.set(time.time())

    def failed(self, transient: bool) -> None:
        self.errors.labels(kind="transient" if transient else "permanent").inc()
