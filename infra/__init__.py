"""The Pulumi program's components (one module per concern), `python -m render`, and
`python -m infra.ci` (what a CI job checks before it touches a stack)."""
