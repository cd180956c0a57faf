"""One training per run: the chief holds a lease on `RUN_URL` while it trains.

The lease is `RUN_URL/_LEASE/<generation>`: JSON with the holder's identity, its host and when it expires.
Taking a free run creates generation 1 with a conditional write (`Store.create`, S3's `If-None-Match: *`);
taking over an expired lease creates the next generation the same way, so of two takers only one wins. The
holder renews its own generation in a background thread; it has lost the lease when a newer generation exists
(someone took it over after it expired), and then it publishes nothing. The restarts of one job present the
same identity (`TRAINING_ID`, else the TFJob's name from the pod's labels, else the host name) and resume
under the lease they already hold.

On a server that ignores `If-None-Match` two conditional creates of one key both succeed: that is detected
once with a probe object and said in one line; the lease then relies on reading its generation back, which
still catches a second training that starts more than one round trip later.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
import uuid
from datetime import UTC, datetime

from common.errors import UserError
from trainer.store import NotFound, Store

PREFIX = "_LEASE"
TTL_SECONDS = 120.0  # a holder that died frees the run this long after its last renewal
RENEW_SECONDS = 30.0
IDENTITY_VARS = ("TRAINING_ID", "TFJOB_NAME")


def identity(env=os.environ) -> str:
    """Who trains: stable across the restarts of one job (a restarted pod keeps its TFJob's name)."""
    for var in IDENTITY_VARS:
        if env.get(var, "").strip():
            return f"{var.lower()}:{env[var].strip()}"
    return f"host:{socket.gethostname()}"


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class LeaseHeld(UserError):
    """Another training holds the run's lease; the same call fails until it ends or its lease expires."""


class Lease:
    def __init__(self, run_store: Store, holder: str, ttl: float = TTL_SECONDS, renew: float = RENEW_SECONDS,
                 clock=time.time):
        self.store = run_store.child(PREFIX)
        self.url = run_store.url
        self.holder, self.ttl, self.renew_every, self.clock = holder, ttl, renew, clock
        self.generation: int | None = None
        self.token = uuid.uuid4().hex
        self.lost: str | None = None
        self.resumed = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _generations(self) -> list[int]:
        return sorted(int(k) for k in self.store.list() if k.isdigit())

    def _read(self, generation: int) -> dict | None:
        try:
            return json.loads(self.store.get_bytes(str(generation)))
        except NotFound:
            return None
        except ValueError:
            return {"holder": "unreadable lease", "expires": 0}

    def _record(self) -> bytes:
        return json.dumps({"holder": self.holder, "host": socket.gethostname(), "token": self.token,
                           "expires": self.clock() + self.ttl}, sort_keys=True).encode()

    def conditional_writes_honoured(self) -> bool:
        """Writes a probe object twice with `create`: a server that honours `If-None-Match` refuses the
        second."""
        key = f"probe-{uuid.uuid4().hex[:12]}"
        try:
            self.store.create(key, b"1")
            return not self.store.create(key, b"2")
        finally:
            self.store.delete([key])

    def acquire(self, attempts: int = 10) -> Lease:
        """Takes the run's lease, or resumes under it when this holder already has it; raises LeaseHeld naming
        the holder and its expiry when another training has it."""
        if not self.conditional_writes_honoured():
            print(f"warning: the S3 server ignores If-None-Match; the lease on {self.url} relies on reading it "
                  "back, so two trainings started within one round trip of each other may both proceed",
                  file=sys.stderr, flush=True)
        for _ in range(attempts):
            gens = self._generations()
            current = gens[-1] if gens else 0
            record = self._read(current) if current else None
            if current and record is None:
                continue  # deleted while we listed
            if record is not None and record.get("holder") == self.holder:
                self.generation, self.resumed = current, True
                self.token = record.get("token", self.token)
                self.store.put_bytes(str(current), self._record())
                return self
            if record is not None and float(record.get("expires", 0)) > self.clock():
                raise LeaseHeld(
                    f"another training holds this run: {record.get('holder')} on {record.get('host', '?')}, "
                    f"its lease expires at {_when(float(record['expires']))}",
                    f"{self.store.url_of(str(current))}",
                    "wait for it to finish, give this training another RUN_URL, or stop the other one and "
                    "start this one after its lease expires",
                )
            mine = self._record()
            if self.store.create(str(current + 1), mine) and self.store.get_bytes(str(current + 1)) == mine:
                self.generation = current + 1
                if current:
                    self.store.delete([str(g) for g in gens])  # the expired generations are history now
                return self
        raise UserError("could not take the run's lease", self.store.url,
                        "another training keeps taking it: stop it, or give this training another RUN_URL")

    def check(self) -> None:
        """Raises when this holder lost the lease (it expired and another training took the run over)."""
        if self.generation is None:
            return
        newer = [g for g in self._generations() if g > self.generation]
        if newer or self.lost:
            raise UserError("this training lost the run's lease: another training took the run over",
                            self.store.url_of(str(newer[-1] if newer else self.generation)),
                            "nothing was published; let the other training finish")

    def renew(self) -> None:
        try:
            self.check()
            self.store.put_bytes(str(self.generation), self._record())
        except UserError as e:
            self.lost = str(e)

    def start(self) -> Lease:
        """Renews every `renew` seconds in a daemon thread until `release`."""

        def loop():
            while not self._stop.wait(self.renew_every):
                self.renew()
                if self.lost:
                    print(f"warning: {self.lost}", file=sys.stderr, flush=True)
                    return

        self._thread = threading.Thread(target=loop, name="run-lease", daemon=True)
        self._thread.start()
        return self

    def release(self) -> None:
        """Stops renewing and lets the lease expire now (kept, so the run's last holder stays on record)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self.generation is not None and not self.lost:
            record = json.loads(self._record())
            record["expires"] = self.clock()
            self.store.put_bytes(str(self.generation), json.dumps(record, sort_keys=True).encode())
