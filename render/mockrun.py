"""Runs the Pulumi program once under mocks, in this (fresh) process: `render.stack.render` starts it.

Pulumi's mocks are process-global and the program must be imported after they are set, so each render gets
its own interpreter. Reads `{"stack", "config", "secret_keys"}` as JSON on stdin and writes
`{"resources", "outputs"}` (or `{"error"}` with exit status 2) as JSON on stdout.
"""

from __future__ import annotations

import json
import os
import runpy
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(request: dict) -> dict:
    # Config reaches pulumi.Config the way the language host passes it: through the environment.
    os.environ["PULUMI_CONFIG"] = json.dumps(request["config"])
    os.environ["PULUMI_CONFIG_SECRET_KEYS"] = json.dumps(request["secret_keys"])
    # The program's preview-time reads of the cluster answer "unknown": a render depends on nothing but its
    # inputs (infra.kubeapi).
    os.environ["KUBEFLOW_E2E_OFFLINE"] = "1"

    from infra import configload
    from infra.configcheck import NS
    from render import mocks

    monitor = mocks.install(NS, request["stack"])
    configload.from_pulumi()  # a config error stops here, before any resource

    import pulumi
    from pulumi.runtime.settings import get_root_resource
    from pulumi.runtime.stack import run_pulumi_func
    from pulumi.runtime.sync_await import _sync_await

    outputs: dict = {}

    async def collect() -> None:
        for key, value in sorted(get_root_resource().outputs.items()):
            out = pulumi.Output.from_input(value)
            outputs[key] = mocks.REDACTED if await out.is_secret() else mocks.clean(await out.future())

    def program():
        runpy.run_path(str(ROOT / "__main__.py"), run_name="__main__")
        return collect()

    _sync_await(run_pulumi_func(program))
    return {"resources": monitor.records, "outputs": outputs}


def main() -> int:
    request = json.load(sys.stdin)
    real_stdout, sys.stdout = sys.stdout, sys.stderr  # whatever the program prints is not our JSON
    from infra.configcheck import ConfigError

    try:
        result = run(request)
    except ConfigError as e:
        json.dump({"error": {"key": e.key, "what": e.what, "value": e.value, "fix": e.fix}}, real_stdout)
        return 2
    json.dump(result, real_stdout, sort_keys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
