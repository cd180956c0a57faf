"""`reject N`: never serve model version N again (writes `<N>/_REJECTED`); the sidecar drops it at its next
sync and serves the newest version that is neither rejected nor failing the promotion gate."""

from trainer.versions import add_reject_arguments as add_arguments
from trainer.versions import run_reject as run

__all__ = ["add_arguments", "run"]
