"""The real Pulumi engine for `make e2e`: the CLI and the kubernetes provider plugin built by
`make e2e-tools`, a local `file://` backend, a passphrase secrets provider, no network.

The Python language host (`pulumi-language-python`) is not served as a Go module, so the program runs as an
Automation API *inline* program: the Automation API serves the language runtime from this process and the
CLI (`pulumi preview/up/destroy --client=...`) drives it; everything else (engine, state, diff, provider,
awaits) is the CLI's and the provider's own. The program is the repo's (`infra.program.main`), with the
config of `Pulumi.dev.yaml` plus the overrides a test gives.

The provider plugin is installed into a per-run PULUMI_HOME with `pulumi plugin install resource kubernetes
<version> --file <binary>`, ambient plugins are ignored and automatic plugin downloads are off, so a plugin
the stack asks for and we did not build fails at once instead of reaching the network.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml
from pulumi import automation as auto

ROOT = Path(__file__).resolve().parents[1]
PROJECT = "kubeflow-e2e"
PASSPHRASE = "kubeflow-e2e: not a real secret, the e2e state lives in a temp dir"


def dev_config() -> dict[str, Any]:
    """`Pulumi.dev.yaml`'s (structured) config as dotted paths: `{"kubeflow-e2e:storage.mode": "minio"}`."""
    out: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}.{k}", v)
        else:
            out[prefix] = value

    for key, value in yaml.safe_load((ROOT / "Pulumi.dev.yaml").read_text())["config"].items():
        walk(key, value)
    return out


class Engine:
    """One backend folder and PULUMI_HOME under `run_dir`; `stack(name, config)` gives a Stack."""

    def __init__(self, tools_root: Path, run_dir: Path, kubeconfig: Path):
        self.tools_root = Path(tools_root)
        self.dir = Path(run_dir)
        self.state = self.dir / "state"
        self.kubeconfig = Path(kubeconfig)
        self.home = self.dir / "pulumi-home"
        self.work = self.dir / "work"
        for d in (self.state, self.home, self.work):
            d.mkdir(parents=True, exist_ok=True)
        self.env = {
            "PULUMI_HOME": str(self.home),
            "PULUMI_BACKEND_URL": f"file://{self.state}",
            "PULUMI_CONFIG_PASSPHRASE": PASSPHRASE,
            "PULUMI_SKIP_UPDATE_CHECK": "true",
            "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
            "PULUMI_IGNORE_AMBIENT_PLUGINS": "true",
            "KUBECONFIG": str(kubeconfig),
        }
        # Python dynamic resources (`infra.gate`) run in the `pulumi-python` resource plugin, a script that
        # upstream ships beside the CLI (`python -u -m pulumi.dynamic`): not in the Go modules nor the wheel.
        plugin_bin = self.home / "bin"
        plugin_bin.mkdir(parents=True, exist_ok=True)
        script = plugin_bin / "pulumi-resource-pulumi-python"
        script.write_text(f'#!/bin/sh\nexec "{sys.executable}" -u -m pulumi.dynamic "$@"\n')
        script.chmod(0o755)
        self.env["PATH"] = f"{plugin_bin}{os.pathsep}{os.environ.get('PATH', '')}"
        del self.env["PULUMI_IGNORE_AMBIENT_PLUGINS"]
        self.pulumi = self.tools_root / "bin" / "pulumi"
        self.provider_version = metadata.version("pulumi_kubernetes")
        self.cli(
            [
                "plugin",
                "install",
                "resource",
                "kubernetes",
                self.provider_version,
                "--file",
                str(self.tools_root / "bin" / "pulumi-resource-kubernetes"),
            ]
        )

    def cli(self, args: list[str]) -> str:
        """Runs the CLI directly (plugin install, version); raises with its output on failure."""
        proc = subprocess.run(
            [str(self.pulumi), *args],
            env={**os.environ, **self.env},
            cwd=self.work,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=300,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"pulumi {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}")
        return proc.stdout

    def stack(self, name: str, config: dict[str, Any] | None = None) -> auto.Stack:
        """Creates (or selects) stack `name` with `Pulumi.dev.yaml`'s config plus `config` (keys without the
        `kubeflow-e2e:` prefix), running the repo's program inline."""

        def program() -> None:
            from infra.program import main

            main()

        opts = auto.LocalWorkspaceOptions(
            work_dir=str(self.work),
            pulumi_home=str(self.home),
            env_vars=self.env,
            secrets_provider="passphrase",
            pulumi_command=auto.PulumiCommand(root=str(self.tools_root)),
            project_settings=auto.ProjectSettings(
                name=PROJECT, runtime="python", backend=auto.ProjectBackend(url=f"file://{self.state}")
            ),
        )
        st = auto.create_or_select_stack(stack_name=name, project_name=PROJECT, program=program, opts=opts)
        # The program runs inline, in this process, which has no KUBECONFIG of its own (only the CLI and its
        # plugins get `self.env`): the program's own reads of the cluster (the capacity check, CRD lookups)
        # find it through the config, as a user's stack may name it.
        kubeconfig = {"cluster.kubeconfig": str(self.kubeconfig)}
        self.set_config(st, {**{k.split(":", 1)[1]: v for k, v in dev_config().items()}, **kubeconfig,
                             **(config or {})})
        return st

    @staticmethod
    def set_config(st: auto.Stack, values: dict[str, Any]) -> None:
        st.set_all_config(
            {
                f"{PROJECT}:{k}": auto.ConfigValue(value=str(v).lower() if isinstance(v, bool) else str(v))
                for k, v in values.items()
            },
            path=True,
        )

    def state_file(self, stack: str) -> Path:
        """The file backend's checkpoint for a stack (`.pulumi/stacks/<project>/<stack>.json`)."""
        return self.state / ".pulumi" / "stacks" / PROJECT / f"{stack}.json"

    def state_resources(self, stack: str) -> list[dict]:
        """The resources in a stack's checkpoint ([] if the stack has none, or no checkpoint yet)."""
        path = self.state_file(stack)
        if not path.exists():
            return []
        data = json.loads(path.read_text())
        return data["checkpoint"].get("latest", {}).get("resources") or []
