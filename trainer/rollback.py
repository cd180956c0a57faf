"""`rollback --to N`: serve version N again by rejecting every newer complete version (`_REJECTED`); the
sidecar falls back to N within one sync interval."""

from trainer.versions import add_rollback_arguments as add_arguments
from trainer.versions import run_rollback as run

__all__ = ["add_arguments", "run"]
