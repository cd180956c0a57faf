"""`python -m trainer <command>`: one module per command, imported only when chosen.

Each command module has `add_arguments(parser)` and `run(args) -> dict | None`; a returned dict is printed
as the last stdout line, as JSON. Only the chosen module is imported, so `sync-model` and `predict` never
load TensorFlow.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys

from common.errors import UserError

COMMANDS = {
    "prepare-data": ("trainer.prepare", "write the dataset as sharded TFRecords and a manifest under DATA_URL"),
    "check-parameters": ("trainer.checkparams", "refuse a retrain parameter that is not one of its choices"),
    "train": ("trainer.train", "train the CNN (MultiWorkerMirroredStrategy under TF_CONFIG), export a version"),
    "evaluate": ("trainer.evaluate", "score the newest complete model version on the test split"),
    "sync-model": ("trainer.sync", "mirror complete model versions into a local directory (TF Serving sidecar)"),
    "reject": ("trainer.reject", "never serve one model version again (marks it _REJECTED)"),
    "rollback": ("trainer.rollback", "serve an older model version again: reject every newer one"),
    "signing-key": ("trainer.signing", "make an Ed25519 key pair that signs model versions"),
    "predict": ("trainer.predict", "send test images to TF Serving's REST API and print the error rate"),
}


def env_arg(parser: argparse.ArgumentParser, flag: str, var: str, help: str, required: bool = True) -> None:
    """A flag whose default is an environment variable; `--flag` overrides `$VAR`."""
    parser.add_argument(
        flag,
        default=os.environ.get(var) or None,
        metavar=var,
        help=f"{help} (default: ${var})",
    )
    parser.set_defaults(**{f"_env_{flag.lstrip('-').replace('-', '_')}": (var, required)})


def check_env_args(args: argparse.Namespace) -> None:
    for key, value in list(vars(args).items()):
        if not key.startswith("_env_"):
            continue
        var, required = value
        flag = key[len("_env_"):]
        if required and not getattr(args, flag):
            raise UserError(f"{var} is not set", "empty", f"set {var} or pass --{flag.replace('_', '-')}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m trainer", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="command")
    for name, (module_name, text) in COMMANDS.items():
        p = sub.add_parser(name, help=text, description=text)
        if argv and argv[0] == name:
            module = importlib.import_module(module_name)
            module.add_arguments(p)
            p.set_defaults(_module=module)
    args = parser.parse_args(argv)
    from trainer import scratch

    try:
        scratch.setup()
        if scratch.swept():
            print(f"removed {len(scratch.swept())} scratch folder(s) left in {scratch.base()} by killed earlier "
                  "runs", file=sys.stderr, flush=True)
        check_env_args(args)
        result = args._module.run(args)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except scratch.Terminated:
        print("error: terminated (SIGTERM): stopped, temporary files removed", file=sys.stderr)
        return 143  # 128 + SIGTERM, what the shell reports for a process the signal ended
    except Exception as e:
        full = scratch.disk_full(e)  # TensorFlow's or Python's "No space left on device", as one line
        if full is None:
            raise
        print(f"error: {full}", file=sys.stderr)
        return 2
    finally:
        scratch.cleanup()
    if result is not None:
        print(json.dumps(result, sort_keys=True), flush=True)
    return 0
