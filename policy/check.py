"""The policy pack's rules without a Pulumi CLI or cloud: render a stack under mocks (`render.render`) and run
every rule over the resources it registers. CI's credential-free job runs this, so forks get it too.

    python -m policy.check --stack dev [--set workers=64 --set training.batchSize=128] [--config policy/config.json]

Exit 0 when nothing is reported, 1 with one line per violation, 2 for a config error.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from common.errors import UserError
from policy import rules


def parse_sets(pairs: Sequence[str]) -> dict[str, str]:
    overrides = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UserError("--set wants KEY=VALUE", pair, "e.g. --set workers=4")
        overrides[key.strip()] = value
    return overrides


def load_config(path: Path | None) -> dict:
    if path is None:
        return {}
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UserError("cannot read the policy config", path,
                        f"give a JSON file like policy/config.json ({exc})") from None
    unknown = sorted(set(config) - set(rules.BY_NAME))
    if unknown:
        raise UserError(f"{path} names unknown policies", ", ".join(unknown),
                        f"use the policy names: {', '.join(rules.BY_NAME)}")
    return config


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m policy.check", description=__doc__.split("\n\n")[0])
    parser.add_argument("--stack", required=True, help="stack to render (dev, prod)")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key of the stack (repeatable)")
    parser.add_argument("--config", type=Path, help="policy pack config (JSON), as `--policy-pack-config`")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
        overrides = parse_sets(args.sets)
        from render import render  # imports Pulumi: only once the arguments are good

        rendered = render(args.stack, overrides=overrides)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    found = rules.evaluate(rendered.resources, config)
    for violation in found:
        print(violation)
    print(f"{args.stack}: {len(rendered.resources)} resources, {len(found)} policy violations")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
