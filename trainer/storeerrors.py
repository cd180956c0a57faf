"""The errors a store raises, the same for S3 (`trainer.s3`) and a local folder (`trainer.store`)."""

from __future__ import annotations

from common.errors import UserError


class StoreError(UserError):
    """S3 or the local store failed in a way the user can fix (endpoint, credentials, bucket, key). Transient:
    an outage ends, a missing bucket or object gets created, a corrupt upload gets replaced."""

    transient = True


class AccessError(StoreError):
    """No credentials, or the server rejected them. Not transient: a process's keys come from its environment
    and never change while it runs (a restarted pod picks up a rotated Secret)."""

    transient = False


class NotFound(StoreError):
    """The key (or the file under a local store) does not exist."""
