"""Which pod statuses mean a workload will not come up by itself, read from a pod as the API server returns it
(a plain dict, `status.containerStatuses`, `status.conditions`). The gates (`infra.gate`) check the pods of
the object they wait for on every poll, so `pulumi up` fails within a poll or two of a pod reaching one of
these, instead of at the provider's or the gate's timeout.

- a container (or init container) waiting with ErrImagePull, ImagePullBackOff, InvalidImageName,
  CreateContainerConfigError (a missing Secret or ConfigMap key) or CreateContainerError: nothing changes
  until someone fixes the image or the config;
- a container waiting in CrashLoopBackOff after CRASH_RESTARTS restarts: it has crashed more than once;
- the pod unschedulable (condition PodScheduled False, reason Unschedulable) for UNSCHEDULABLE_GRACE_S: long
  enough for a node that is joining, short of any cluster autoscaler's scale-up (which the message then
  names, e.g. "pod triggered scale-up" events; the gate's timeout still applies to that).
"""

from __future__ import annotations

from dataclasses import dataclass

STUCK_REASONS = ("ErrImagePull", "ImagePullBackOff", "InvalidImageName", "CreateContainerConfigError",
                 "CreateContainerError")
CRASH_RESTARTS = 2
UNSCHEDULABLE_GRACE_S = 30.0


@dataclass(frozen=True)
class PodFailure:
    pod: str
    container: str | None  # None: the pod as a whole (unschedulable)
    reason: str  # ErrImagePull, CrashLoopBackOff, Unschedulable, ...
    message: str  # the status's message (the event text the kubelet or scheduler gave)

    def describe(self, event: str | None = None) -> str:
        """`pod P container C: Reason: message` (plus the newest warning event's text when it says more)."""
        where = f"pod {self.pod}" + (f" container {self.container}" if self.container else "")
        text = f"{where}: {self.reason}"
        if self.message:
            text += f": {self.message}"
        if event and event not in self.message:
            text += f" (event: {event})"
        return text


def unschedulable(pod: dict) -> str | None:
    """The scheduler's message when the pod cannot be placed (None: scheduled, or not judged yet)."""
    for c in (pod.get("status") or {}).get("conditions") or []:
        if c.get("type") == "PodScheduled" and str(c.get("status")) == "False" and c.get("reason") == "Unschedulable":
            return c.get("message") or "Unschedulable"
    return None


def pod_failure(pod: dict, unschedulable_for_s: float = 0.0) -> PodFailure | None:
    """The reason `pod` will not come up by itself, or None. `unschedulable_for_s`: how long the caller has
    seen it unschedulable (it counts only from UNSCHEDULABLE_GRACE_S on)."""
    name = (pod.get("metadata") or {}).get("name", "?")
    status = pod.get("status") or {}
    if status.get("phase") in ("Succeeded",):
        return None
    for c in [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]:
        waiting = (c.get("state") or {}).get("waiting") or {}
        reason = waiting.get("reason")
        if reason in STUCK_REASONS or (reason == "CrashLoopBackOff" and
                                       int(c.get("restartCount") or 0) >= CRASH_RESTARTS):
            message = waiting.get("message") or ""
            if reason == "CrashLoopBackOff":
                last = ((c.get("lastState") or {}).get("terminated") or {})
                exit_code = last.get("exitCode")
                message = (f"restarted {c.get('restartCount')} times, last exit code {exit_code}"
                           + (f" ({last.get('reason')})" if last.get("reason") else "")
                           + (f": {last['message'].strip()}" if last.get("message") else ""))
            return PodFailure(name, c.get("name"), reason, message)
    message = unschedulable(pod)
    if message is not None and unschedulable_for_s >= UNSCHEDULABLE_GRACE_S:
        return PodFailure(name, None, "Unschedulable", message)
    return None


def newest_warning(events: list[dict]) -> str | None:
    """The message of the newest Warning event (by lastTimestamp / eventTime), or None."""
    warnings = [e for e in events if e.get("type") == "Warning" and e.get("message")]
    if not warnings:
        return None
    warnings.sort(key=lambda e: str(e.get("lastTimestamp") or e.get("eventTime") or ""))
    return warnings[-1]["message"].strip()
