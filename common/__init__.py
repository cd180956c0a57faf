"""What every part of the repository shares: `common.errors`. Standard library only, and copied into every image
that runs `python -m trainer` (docker/trainer.Dockerfile, docker/sidecar.Dockerfile)."""
