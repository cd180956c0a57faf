"""`TF_CONFIG`, as the TFJob operator sets it: the only module that reads it.

The operator writes JSON like
`{"cluster": {"chief": ["job-chief-0:2222"], "worker": ["job-worker-0:2222"]},
"task": {"type": "worker", "index": 0}, "environment": "cloud"}`.
Absent means one process. Supported task types are `chief` and `worker` (MultiWorkerMirroredStrategy);
`ps` and `evaluator` (ParameterServerStrategy, side-car evaluation) are rejected with a message, as is any
other type.
Ranks: the chief is 0, `worker` i is i + 1; with no chief (a single worker) that worker is rank 0 and chief.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

from common.errors import UserError

VAR = "TF_CONFIG"
SUPPORTED = ("chief", "worker")
UNSUPPORTED = {
    "ps": "ParameterServerStrategy is not supported: declare a chief and workers only (no PS replicas)",
    "evaluator": "a side-car evaluator is not supported: run `python -m trainer evaluate` after training "
                 "and declare a chief and workers only",
    "master": "'master' is the TF 1.x name: declare the replica type as Chief",
}
EXAMPLE = ('{"cluster": {"chief": ["host0:2222"], "worker": ["host1:2222"]}, '
           '"task": {"type": "worker", "index": 0}}')


@dataclass(frozen=True)
class TFConfig:
    task_type: str = "chief"
    task_index: int = 0
    # {"chief": [addr], "worker": [addr, ...]}; empty for one process without TF_CONFIG.
    cluster: dict[str, list[str]] = field(default_factory=dict)

    @property
    def num_workers(self) -> int:
        """Processes taking part in training (chief included)."""
        return max(1, sum(len(self.cluster.get(t, [])) for t in SUPPORTED))

    @property
    def rank(self) -> int:
        """Global rank: chief 0, worker i -> i + 1 (or i when there is no chief)."""
        if self.task_type == "worker" and self.cluster.get("chief"):
            return self.task_index + 1
        return self.task_index

    @property
    def is_chief(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.num_workers > 1

    @property
    def task_name(self) -> str:
        """`chief-0`, `worker-1`: names this process in logs and the summary folder."""
        return f"{self.task_type}-{self.task_index}"

    @property
    def address(self) -> str | None:
        addrs = self.cluster.get(self.task_type)
        return addrs[self.task_index] if addrs else None


def _fail(what: str, value: object, fix: str = "") -> UserError:
    return UserError(f"{VAR} {what}", value, fix or f"it should look like {EXAMPLE}")


def parse(raw: str | None) -> TFConfig:
    """Parses the value of TF_CONFIG; None or blank means one process."""
    if raw is None or not raw.strip():
        return TFConfig()
    try:
        conf = json.loads(raw)
    except ValueError as e:
        raise _fail(f"is not valid JSON ({e.msg} at char {e.pos})", _clip(raw)) from e
    if not isinstance(conf, dict):
        raise _fail("must be a JSON object", _clip(raw))

    cluster = conf.get("cluster")
    if not isinstance(cluster, dict) or not cluster:
        raise _fail("has no 'cluster'", _clip(raw), f"add the cluster spec, for example {EXAMPLE}")
    for ttype in cluster:
        _check_type(ttype, "cluster")
    clean: dict[str, list[str]] = {}
    for ttype, addrs in cluster.items():
        if not isinstance(addrs, list) or not addrs:
            raise _fail(f"cluster.{ttype} must be a non-empty list of host:port", addrs)
        for addr in addrs:
            host, _, port = addr.rpartition(":") if isinstance(addr, str) else ("", "", "")
            if not host or not port.isdigit():
                raise _fail(f"cluster.{ttype} has an address that is not host:port", addr)
        if len(set(addrs)) != len(addrs):
            raise _fail(f"cluster.{ttype} lists an address twice", addrs, "give every task its own host:port")
        clean[ttype] = list(addrs)
    if len(clean.get("chief", [])) > 1:
        raise _fail("has more than one chief", clean["chief"], "declare exactly one Chief replica")
    if len(clean.get("worker", [])) > 1 and "chief" not in clean:
        raise _fail(
            "has several workers but no chief",
            clean["worker"],
            "declare one Chief replica (it saves checkpoints and exports the model) plus the workers",
        )

    task = conf.get("task")
    if not isinstance(task, dict) or "type" not in task:
        raise _fail("has no 'task' with a type", _clip(raw), 'add "task": {"type": "chief", "index": 0}')
    ttype = task["type"]
    _check_type(ttype, "task")
    if ttype not in clean:
        raise _fail(f"task type {ttype!r} is not in the cluster", sorted(clean),
                    "use a task type that the cluster lists")
    index = task.get("index", 0)
    if isinstance(index, bool) or not isinstance(index, int):
        raise _fail("task.index must be an integer", index)
    if not 0 <= index < len(clean[ttype]):
        raise _fail(
            f"task.index is out of range for {ttype!r}",
            index,
            f"the cluster has {len(clean[ttype])} {ttype} address(es): index 0..{len(clean[ttype]) - 1}",
        )
    return TFConfig(task_type=ttype, task_index=index, cluster=clean)


def _check_type(ttype: object, where: str) -> None:
    if ttype in SUPPORTED:
        return
    if isinstance(ttype, str) and ttype.lower() in UNSUPPORTED:
        raise _fail(f"{where} has task type {ttype!r}", ttype, UNSUPPORTED[ttype.lower()])
    raise _fail(f"{where} has an unknown task type", ttype,
                "task types are 'chief' and 'worker' (lower case)")


def _clip(raw: str, n: int = 120) -> str:
    return raw if len(raw) <= n else raw[:n] + "..."


def load(environ=None) -> TFConfig:
    """TF_CONFIG from the environment."""
    environ = os.environ if environ is None else environ
    return parse(environ.get(VAR))
