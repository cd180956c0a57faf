"""The Pulumi program: one `ComponentResource` per concern and the typed, validated config. The offline
render lives in `render/`, the CI jobs' settings check in `ci/`."""
