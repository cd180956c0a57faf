"""`python -m render --stack dev --out DIR [--set key=value ...]`: what the Pulumi program declares,
rendered offline under Pulumi's mocks (see `render.stack`)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from common.errors import UserError
from infra.configcheck import NS
from render.stack import render


def _parse_set(items: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UserError("--set wants key=value", item, "e.g. --set workers=4")
        out[key] = value
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m render", description=__doc__.split("\n\n")[0])
    parser.add_argument("--stack", default="dev", help="stack name: reads Pulumi.<stack>.yaml (default: dev)")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"override a config key (namespace {NS} implied), repeatable",
    )
    args = parser.parse_args(argv)
    try:
        rendered = render(args.stack, _parse_set(args.set))
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    written = rendered.write(args.out)
    print(
        f"{args.stack}: {len(rendered.manifests)} Kubernetes objects and {len(rendered.others())} other "
        f"resources written under {args.out} ({len(written)} files)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
