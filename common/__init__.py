"""What every part of the repository shares: `common.errors` (errors a user can fix) and `common.rules` (the
trainer's argument rules, which the stack applies to its config too). Standard library only, and copied into every
image that runs `python -m trainer` (docker/trainer.Dockerfile, docker/sidecar.Dockerfile)."""
