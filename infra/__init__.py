"""The Pulumi program's components (one module per concern) and `python -m infra.render`."""
