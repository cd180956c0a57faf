"""Components take their options the Pulumi way: a caller that wants a component to wait for something
passes `opts=pulumi.ResourceOptions(depends_on=[...])`. Pulumi records that on the component only; its
children do not inherit it (pulumi `ResourceOptions`: a child inherits its parent's providers, not its
dependencies), so a component hands `depends_on(opts)` on to the children that must wait."""

from __future__ import annotations

from collections.abc import Sequence

import pulumi


def depends_on(opts: pulumi.ResourceOptions | None) -> list[pulumi.Resource]:
    """The resources `opts.depends_on` names, as a list (`[]` without opts or depends_on). Raises TypeError
    for an Output or awaitable depends_on: a component needs the resources themselves, so pass a list."""
    deps = opts.depends_on if opts is not None else None
    if deps is None:
        return []
    if isinstance(deps, pulumi.Resource):
        return [deps]
    if isinstance(deps, Sequence) and all(isinstance(d, pulumi.Resource) for d in deps):
        return list(deps)
    raise TypeError(f"depends_on {deps!r}: pass a list of resources to a component, not an Output")
