"""Pulumi entry point: load and validate the config, build the components, export the outputs."""

from infra.program import main

main()
