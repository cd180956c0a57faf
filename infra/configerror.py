"""`ConfigError`: a config value the user can fix, named by its key, with the bad value and the fix."""

from __future__ import annotations

import re

from common.errors import UserError
from infra.keys import NS


class ConfigError(UserError):
    """A config value the user can fix: `error: config <ns:key> <problem> (<value>): <fix>`."""

    def __init__(
        self, key: str, problem: str, value: object, fix: str, *, what: str | None = None, literal: bool = False
    ):
        """`literal`: the fix is exact as given (otherwise commands on dotted keys get `--path`)."""
        self.key = key
        super().__init__(what or f"config {NS}:{key} {problem}", _show(value), fix if literal else with_path(fix))


_NESTED_COMMAND = re.compile(rf"\b(pulumi config (?:set|rm)(?: --secret)?|or set) ({NS}:\w+\.[\w.]+)")


def with_path(text: str) -> str:
    """`pulumi config set kubeflow-e2e:storage.mode x` -> `pulumi config set --path kubeflow-e2e:storage.mode x`:
    a dotted key is a field of a structured value, which Pulumi writes only with `--path`."""
    return _NESTED_COMMAND.sub(r"\1 --path \2", text)


def _show(value: object) -> str:
    return "unset" if value is None or value == "" else str(value)
