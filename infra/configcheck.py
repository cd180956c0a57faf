"""One config value's checks, and the error they raise: each check turns a key's raw value (a string from Pulumi,
or a typed test value) into a checked one, or raises a `ConfigError` naming the key, the bad value and the fix.
The schema (`infra.config`) names a check for every key."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping
from typing import Any

from common.errors import UserError

NS = "kubeflow-e2e"  # the config namespace: `pulumi config set kubeflow-e2e:workers 4`
Getter = Callable[[str], Any]


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


def set_to(key: str, value: object) -> str:
    return f"pulumi config set {NS}:{key} {value}"


class Reader:
    """Raw values by key (`get`, `get_secret`: key -> raw value or None) and each key's checked value, computed
    once, so a check may read another key's (the region's rule depends on `storage.mode`). `schema`: key ->
    its declaration (`infra.config.KEY_NAMES`), for the default and the check."""

    def __init__(self, stack: str, get: Getter, get_secret: Getter, schema: Mapping[str, Any]):
        self.stack, self.get, self.get_secret, self.schema = stack, get, get_secret, schema
        self._checked: dict[str, Any] = {}

    def default(self, key: str) -> Any:
        return self.schema[key].default

    def raw(self, key: str) -> Any:
        """The value as set, or the key's default (`<stack>` filled in) when unset or empty."""
        value = self.get(key)
        if value is None or value == "":
            default = self.default(key)
            return default.replace("<stack>", self.stack) if isinstance(default, str) else default
        return value

    def value(self, key: str) -> Any:
        if key not in self._checked:
            self._checked[key] = self.schema[key].check(self, key)
        return self._checked[key]


Check = Callable[[Reader, str], Any]  # (reader, key) -> the checked value; raises ConfigError


_BOOLS = {"true": True, "false": False}
_CPU = re.compile(r"^(\d+(\.\d+)?|\.\d+)m?$")
_MEMORY = re.compile(r"^(\d+(\.\d+)?|\.\d+)(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$")
_SEMVER = re.compile(r"^\d+\.\d+\.\d+$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def whole(lo: int, hi: int) -> Check:
    """A whole number from `lo` to `hi`, inclusive."""

    def check(r: Reader, key: str) -> int:
        value = r.raw(key)
        try:
            number = int(str(value).strip())
            if isinstance(value, float) and value != number:
                raise ValueError
        except ValueError:
            raise ConfigError(key, "must be a whole number", value, set_to(key, r.default(key))) from None
        if not lo <= number <= hi:
            raise ConfigError(key, f"must be between {lo} and {hi}", value, set_to(key, max(lo, min(hi, number))))
        return number

    return check


def boolean(r: Reader, key: str) -> bool:
    value = r.raw(key)
    if isinstance(value, bool):
        return value
    parsed = _BOOLS.get(str(value).strip().lower())
    if parsed is None:
        raise ConfigError(key, "must be true or false", value, set_to(key, "true"))
    return parsed


def number(r: Reader, key: str) -> str:
    """A decimal number, kept as written; its range is the trainer's rule (`common.rules`, a cross check)."""
    value = r.raw(key)
    try:
        float(str(value))
    except ValueError:
        raise ConfigError(key, "must be a number", value, set_to(key, r.default(key))) from None
    return str(value).strip()


def choice(choices: tuple[str, ...]) -> Check:
    def check(r: Reader, key: str) -> str:
        value = str(r.raw(key)).strip()
        if value not in choices:
            raise ConfigError(key, f"must be one of {', '.join(choices)}", value, set_to(key, choices[0]))
        return value

    return check


def nonempty(r: Reader, key: str) -> str:
    value = str(r.raw(key) or "").strip()
    if not value:
        raise ConfigError(key, "must not be empty", value, f"pulumi config rm {NS}:{key} to use the default")
    return value


def optional_text(r: Reader, key: str) -> str | None:
    return str(r.raw(key) or "").strip() or None


def optional(check: Check) -> Check:  # unset stays None; a set value goes through `check`
    return lambda r, key: check(r, key) if r.raw(key) else None


def secret(r: Reader, key: str) -> Any:
    """As the program hands it over: a `pulumi.Output` secret under Pulumi, the plain value in tests."""
    value = r.get_secret(key)
    return None if value in (None, "") else value


def dns_label(max_len: int = 63) -> Check:
    def check(r: Reader, key: str) -> str:
        value = str(r.raw(key)).strip()
        if len(value) > max_len or not _DNS_LABEL.match(value):
            raise ConfigError(
                key,
                f"must be a DNS label: lower-case letters, digits and '-', at most {max_len} "
                "characters, starting and ending with a letter or digit",
                value,
                f"pulumi config set {NS}:{key} {r.default(key) or 'name-of-the-namespace'}",
            )
        return value

    return check


def bucket_name(r: Reader, key: str) -> str:
    """S3's bucket naming rules (general purpose buckets)."""
    value = str(r.raw(key)).strip()
    problem = None
    if not 3 <= len(value) <= 63:
        problem = "must be 3 to 63 characters long"
    elif not re.fullmatch(r"[a-z0-9.-]+", value):
        problem = "may contain only lower-case letters, digits, '.' and '-'"
    elif not (value[0].isalnum() and value[-1].isalnum()):
        problem = "must start and end with a letter or digit"
    elif ".." in value or ".-" in value or "-." in value:
        problem = "must not contain '..', '.-' or '-.'"
    elif _is_ip(value):
        problem = "must not look like an IP address"
    elif value.startswith(("xn--", "sthree-", "amzn-s3-demo-")):
        problem = "must not start with xn--, sthree- or amzn-s3-demo-"
    elif value.endswith(("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")):
        problem = "must not end with -s3alias, --ol-s3, .mrap, --x-s3 or --table-s3"
    if problem:
        fix = re.sub(r"[^a-z0-9-]+", "-", value.lower()).strip("-")[:63] or f"kubeflow-e2e-{r.stack}"
        if len(fix) < 3:
            fix = f"kubeflow-e2e-{r.stack}"
        raise ConfigError(key, f"breaks S3's bucket naming rules: it {problem}", value, set_to(key, fix))
    return value


def _is_ip(value: str) -> bool:
    try:
        ipaddress.IPv4Address(value)
        return True
    except ValueError:
        return False


def _matching(r: Reader, key: str, pattern: str, meaning: str) -> str:
    value = str(r.raw(key)).strip()
    if not re.fullmatch(pattern, value):
        raise ConfigError(key, f"is not {meaning}", value, set_to(key, r.default(key)))
    return value


def region(r: Reader, key: str) -> str:
    """An AWS region on `aws`; S3-compatible endpoints keep their own names (fr-par, nyc3, auto, minio)."""
    if r.value("storage.mode") == "aws":
        return _matching(r, key, r"[a-z]{2}(-[a-z]+)+-\d", "an AWS region such as us-east-1")
    return _matching(r, key, r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}", "a region name (letters, digits, '.', '_', '-')")


def endpoint_url(r: Reader, key: str) -> str | None:
    """A full URL without a path, checked where it is used (`external`); elsewhere a cross check refuses it."""
    value = r.raw(key)
    if value in (None, ""):
        return None
    if r.value("storage.mode") != "external":
        return value
    text = str(value).strip()
    if not re.fullmatch(r"(https?)://([A-Za-z0-9.-]+|\[[0-9a-fA-F:]+\])(:\d{1,5})?/?", text):
        fix = f"pulumi config set {NS}:{key} https://s3.example.com:9000"
        raise ConfigError(key, "must be a full URL with scheme, host and optional port, no path", value, fix)
    if text.startswith("http://") and r.stack != "dev":  # keys' signatures, data and models in the clear
        problem = f"is plain http on stack {r.stack} (only the dev stack takes http)"
        raise ConfigError(key, problem, value, f"pulumi config set {NS}:{key} https://{text[7:].rstrip('/')}")
    return text.rstrip("/")


def image_ref(r: Reader, key: str) -> str:
    value = str(r.raw(key)).strip()
    fix = f"pulumi config set {NS}:{key} REPOSITORY:TAG (a fixed version) or REPOSITORY@sha256:DIGEST"
    if not value or any(c.isspace() for c in value):
        raise ConfigError(key, "is not an image reference", value, fix)
    if "@" in value:
        name, digest = value.split("@", 1)
        if not name or not _DIGEST.match(digest):
            raise ConfigError(key, "has a malformed digest", value, fix)
        return _registry_host(r.stack, key, value)
    name, _, tag = value.rpartition(":")
    if not name or "/" in tag:  # "host:5000/repo" has no tag
        raise ConfigError(key, "has no tag, so every pull may get a different image", value, fix)
    if tag == "latest":
        raise ConfigError(key, "uses the moving tag latest", value, fix)
    if not _TAG.match(tag):
        raise ConfigError(key, "has a malformed tag", value, fix)
    return _registry_host(r.stack, key, value)


def _registry_host(stack: str, key: str, value: str) -> str:
    """Outside the dev stack an image must name its registry: a bare `kubeflow-e2e/trainer:0.1.0` resolves to
    Docker Hub's `kubeflow-e2e` namespace, which this project does not own. The host is the first path component
    when it holds a `.` or `:` or is `localhost` (Docker's reference grammar, distribution/reference)."""
    first, slash, _ = value.partition("/")
    if stack == "dev" or (slash and ("." in first or ":" in first or first == "localhost")):
        return value
    raise ConfigError(
        key,
        f"names no registry host, so on stack {stack} it would pull from Docker Hub's "
        f"'{first if slash else 'library'}' namespace",
        value,
        f"pulumi config set {NS}:{key} REGISTRY/{value} (e.g. ghcr.io/OWNER/...; docker.io/{value} if Docker "
        "Hub is meant); only the dev stack takes bare names, for images loaded into a local cluster",
    )


def chart_version(r: Reader, key: str) -> str:
    value = str(r.raw(key)).strip()
    if not _SEMVER.match(value):
        problem = "is not a pinned chart version (exact MAJOR.MINOR.PATCH, no ranges)"
        raise ConfigError(key, problem, value, set_to(key, r.default(key)))
    return value


def operator_release(r: Reader, key: str) -> str:
    value = str(r.raw(key)).strip()
    fix = set_to(key, r.default(key))
    m = re.fullmatch(r"v(\d+)\.(\d+)\.(\d+)", value)
    if not m:
        raise ConfigError(key, "is not a pinned release tag (vMAJOR.MINOR.PATCH, not a branch)", value, fix)
    if int(m.group(1)) != 1:
        raise ConfigError(key, "is not a v1 release: Kubeflow Trainer v2 dropped TFJob and TensorFlow", value, fix)
    if int(m.group(2)) < 7:
        raise ConfigError(key, "is older than v1.7, whose standalone manifests this stack installs", value, fix)
    return value


def cpu(r: Reader, key: str) -> str:
    value = str(r.raw(key)).strip()
    if not _CPU.match(value):
        fix = f"pulumi config set {NS}:{key} 500m (or a number of cores: 2)"
        raise ConfigError(key, "is not a CPU quantity", value, fix)
    return value


def memory(r: Reader, key: str) -> str:
    value = str(r.raw(key)).strip()
    if not _MEMORY.match(value):
        raise ConfigError(
            key,
            "is not a memory quantity",
            value,
            f"pulumi config set {NS}:{key} 512Mi (binary suffixes Ki, Mi, Gi; or k, M, G)",
        )
    return value
