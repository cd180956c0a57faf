"""The offline render: the Pulumi program run under Pulumi's mocks, with no CLI, provider, cluster or
credentials. `python -m render --stack dev --out DIR` writes what a stack declares; `render.render(stack)`
returns it (`render.stack`). `render.mocks` records each registration, `render.mockrun` runs the program in
a fresh interpreter. None of this is part of a deployment: `infra/` never imports it."""

from render.stack import Rendered, is_manifest, render, stack_config

__all__ = ["Rendered", "is_manifest", "render", "stack_config"]
