"""`check-parameters`: the first step of a retrain Workflow. Each parameter's value must be one of its choices,
compared as strings, before any later step substitutes it as text into a manifest.

`argo submit` checks a parameter's `enum`; the Argo controller does not, for a Workflow created through the API
(measured with argo-workflows v4.0.7 on the e2e's real node, docs/deploy.md). Argo substitutes a parameter into
a container's arguments as one string, newlines and all, so this step sees exactly what the TFJob manifest would.
"""

from __future__ import annotations

import argparse

from common.errors import UserError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--param",
        nargs=3,
        action="append",
        default=[],
        metavar=("NAME", "VALUE", "CHOICES"),
        help="a parameter, its value and its choices (comma-separated); repeat for each parameter",
    )


def check(params: list[tuple[str, str, str]]) -> dict[str, str]:
    """name -> value for `(name, value, choices)` triples, `choices` comma-separated.

    Raises UserError naming the first parameter whose value is not one of its choices (shown with `repr`, so a
    newline shows as `\\n`), or a parameter given twice."""
    values: dict[str, str] = {}
    for name, value, choices in params:
        allowed = choices.split(",")
        if name in values:
            raise UserError(f"parameter {name}", "given twice", "pass each parameter once")
        if value not in allowed:
            raise UserError(
                f"parameter {name} is {value!r}",
                "not one of its choices",
                f"submit with `-p {name}=<one of {', '.join(allowed)}>`",
            )
        values[name] = value
    return values


def run(args: argparse.Namespace) -> dict:
    if not args.param:
        raise UserError("check-parameters", "no --param", "pass --param NAME VALUE CHOICES for each parameter")
    return {"parameters": check([tuple(p) for p in args.param])}
