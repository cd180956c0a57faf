"""Value parsers for the config: each turns a raw value (a string from Pulumi, or a typed test value) into
a checked one, or raises a ConfigError that names the key, the bad value and the fix."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from infra.configerror import ConfigError
from infra.keys import KEY_NAMES, NS

Getter = Callable[[str], Any]


_BOOLS = {"true": True, "false": False}
_CPU = re.compile(r"^(\d+(\.\d+)?|\.\d+)m?$")
_MEMORY = re.compile(r"^(\d+(\.\d+)?|\.\d+)(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$")
_UNITS = {
    "": 1,
    "m": Decimal("0.001"),
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "P": 10**15,
    "E": 10**18,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "Pi": 2**50,
    "Ei": 2**60,
}
_SEMVER = re.compile(r"^\d+\.\d+\.\d+$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def quantity_value(text: str) -> Decimal:
    m = re.match(r"^([\d.]+)([A-Za-z]*)$", text)
    assert m, text
    return Decimal(m.group(1)) * _UNITS[m.group(2)]


def arn_parts(arn: str) -> tuple[str, str]:
    m = re.match(r"^arn:(aws[a-z-]*):iam::(\d{12}):oidc-provider/(.+)$", arn)
    if not m:
        raise ConfigError(
            "storage.oidcProviderArn",
            "is not an IAM OIDC provider ARN",
            arn,
            "use arn:aws:iam::ACCOUNT:oidc-provider/oidc.eks.REGION.amazonaws.com/id/ID "
            "(aws iam list-open-id-connect-providers)",
        )
    return m.group(1), m.group(2)


def oidc_issuer(arn: str) -> str:
    """`arn:aws:iam::1:oidc-provider/oidc.eks...` -> `oidc.eks...` (the trust policy's condition prefix)."""
    return arn.split(":oidc-provider/", 1)[1]


class Parser:
    def __init__(self, stack: str, get: Getter, get_secret: Getter):
        self.stack, self.get, self.get_secret = stack, get, get_secret

    def raw(self, key: str) -> Any:
        value = self.get(key)
        if value is None or value == "":
            default = KEY_NAMES[key].default
            if isinstance(default, str):
                default = default.replace("<stack>", self.stack)
            return default
        return value

    def secret(self, key: str) -> Any:
        return self.get_secret(key)

    def nonempty(self, key: str) -> str:
        value = str(self.raw(key) or "").strip()
        if not value:
            raise ConfigError(key, "must not be empty", value, f"pulumi config rm {NS}:{key} to use the default")
        return value

    def int(self, key: str, lo: int, hi: int) -> int:
        value = self.raw(key)
        try:
            number = int(str(value).strip())
            if isinstance(value, float) and value != number:
                raise ValueError
        except ValueError:
            raise ConfigError(
                key, "must be a whole number", value, f"pulumi config set {NS}:{key} {KEY_NAMES[key].default}"
            ) from None
        if not lo <= number <= hi:
            raise ConfigError(
                key,
                f"must be between {lo} and {hi}",
                value,
                f"pulumi config set {NS}:{key} {max(lo, min(hi, number))}",
            )
        return number

    def bool(self, key: str) -> bool:
        value = self.raw(key)
        if isinstance(value, bool):
            return value
        parsed = _BOOLS.get(str(value).strip().lower())
        if parsed is None:
            raise ConfigError(key, "must be true or false", value, f"pulumi config set {NS}:{key} true")
        return parsed

    def number(self, key: str) -> str:
        """A decimal number, kept as written; whether it is in range is the trainer's rule (`trainer.rules`,
        applied in `infra.config`)."""
        value = self.raw(key)
        try:
            float(str(value))
        except ValueError:
            raise ConfigError(
                key, "must be a number", value, f"pulumi config set {NS}:{key} {KEY_NAMES[key].default}"
            ) from None
        return str(value).strip()

    def choice(self, key: str, choices: tuple[str, ...]) -> str:
        value = str(self.raw(key)).strip()
        if value not in choices:
            raise ConfigError(
                key,
                f"must be one of {', '.join(choices)}",
                value,
                f"pulumi config set {NS}:{key} {choices[0]}",
            )
        return value

    def match(self, key: str, pattern: str, meaning: str) -> str:
        value = str(self.raw(key)).strip()
        if not re.fullmatch(pattern, value):
            raise ConfigError(key, f"is not {meaning}", value, f"pulumi config set {NS}:{key} {KEY_NAMES[key].default}")
        return value

    def dns_label(self, key: str, max_len: int = 63) -> str:
        value = str(self.raw(key)).strip()
        if len(value) > max_len or not _DNS_LABEL.match(value):
            raise ConfigError(
                key,
                f"must be a DNS label: lower-case letters, digits and '-', at most {max_len} "
                "characters, starting and ending with a letter or digit",
                value,
                f"pulumi config set {NS}:{key} {KEY_NAMES[key].default or 'name-of-the-namespace'}",
            )
        return value

    def bucket(self, key: str) -> str:
        """S3's bucket naming rules (general purpose buckets)."""
        value = str(self.raw(key)).strip()
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
            fix = re.sub(r"[^a-z0-9-]+", "-", value.lower()).strip("-")[:63] or f"kubeflow-e2e-{self.stack}"
            if len(fix) < 3:
                fix = f"kubeflow-e2e-{self.stack}"
            raise ConfigError(
                key,
                f"breaks S3's bucket naming rules: it {problem}",
                value,
                f"pulumi config set {NS}:{key} {fix}",
            )
        return value

    def endpoint(self, key: str, value: str) -> str:
        m = re.fullmatch(r"(https?)://([A-Za-z0-9.-]+|\[[0-9a-fA-F:]+\])(:\d{1,5})?/?", value.strip())
        if not m:
            raise ConfigError(
                key,
                "must be a full URL with scheme, host and optional port, no path",
                value,
                f"pulumi config set {NS}:{key} https://s3.example.com:9000",
            )
        return value.strip().rstrip("/")

    def image(self, key: str) -> str:
        value = str(self.raw(key)).strip()
        fix = f"pulumi config set {NS}:{key} REPOSITORY:TAG (a fixed version) or REPOSITORY@sha256:DIGEST"
        if not value or any(c.isspace() for c in value):
            raise ConfigError(key, "is not an image reference", value, fix)
        if "@" in value:
            name, digest = value.split("@", 1)
            if not name or not _DIGEST.match(digest):
                raise ConfigError(key, "has a malformed digest", value, fix)
            return self._registry_host(key, value)
        name, _, tag = value.rpartition(":")
        if not name or "/" in tag:  # "host:5000/repo" has no tag
            raise ConfigError(key, "has no tag, so every pull may get a different image", value, fix)
        if tag == "latest":
            raise ConfigError(key, "uses the moving tag latest", value, fix)
        if not _TAG.match(tag):
            raise ConfigError(key, "has a malformed tag", value, fix)
        return self._registry_host(key, value)

    def _registry_host(self, key: str, value: str) -> str:
        """Outside the dev stack an image must name its registry: a bare `kubeflow-e2e/trainer:0.1.0` resolves
        to Docker Hub's `kubeflow-e2e` namespace, which this project does not own. The host is the first path
        component when it holds a `.` or `:` or is `localhost` (the rule of Docker's reference grammar,
        distribution/reference `reference.go`)."""
        first, slash, _ = value.partition("/")
        if self.stack == "dev" or (slash and ("." in first or ":" in first or first == "localhost")):
            return value
        raise ConfigError(
            key,
            f"names no registry host, so on stack {self.stack} it would pull from Docker Hub's "
            f"'{first if slash else 'library'}' namespace",
            value,
            f"pulumi config set {NS}:{key} REGISTRY/{value} (e.g. ghcr.io/OWNER/...; docker.io/{value} if Docker "
            "Hub is meant); only the dev stack takes bare names, for images loaded into a local cluster",
        )

    def chart_version(self, key: str) -> str:
        value = str(self.raw(key)).strip()
        if not _SEMVER.match(value):
            raise ConfigError(
                key,
                "is not a pinned chart version (exact MAJOR.MINOR.PATCH, no ranges)",
                value,
                f"pulumi config set {NS}:{key} {KEY_NAMES[key].default}",
            )
        return value

    def operator_version(self, key: str) -> str:
        value = str(self.raw(key)).strip()
        fix = f"pulumi config set {NS}:{key} {KEY_NAMES[key].default}"
        m = re.fullmatch(r"v(\d+)\.(\d+)\.(\d+)", value)
        if not m:
            raise ConfigError(key, "is not a pinned release tag (vMAJOR.MINOR.PATCH, not a branch)", value, fix)
        if int(m.group(1)) != 1:
            raise ConfigError(key, "is not a v1 release: Kubeflow Trainer v2 dropped TFJob and TensorFlow", value, fix)
        if int(m.group(2)) < 7:
            raise ConfigError(key, "is older than v1.7, whose standalone manifests this stack installs", value, fix)
        return value

    def cpu(self, key: str) -> str:
        value = str(self.raw(key)).strip()
        if not _CPU.match(value):
            raise ConfigError(
                key,
                "is not a CPU quantity",
                value,
                f"pulumi config set {NS}:{key} 500m (or a number of cores: 2)",
            )
        return value

    def memory(self, key: str) -> str:
        value = str(self.raw(key)).strip()
        if not _MEMORY.match(value):
            raise ConfigError(
                key,
                "is not a memory quantity",
                value,
                f"pulumi config set {NS}:{key} 512Mi (binary suffixes Ki, Mi, Gi; or k, M, G)",
            )
        return value

    def resources(self, workload: str) -> tuple[str, str, str, str]:
        """(cpu, memory, cpu limit, memory limit), each request at most its limit."""
        cpu, memory = self.cpu(f"{workload}.cpu"), self.memory(f"{workload}.memory")
        cpu_limit, memory_limit = self.cpu(f"{workload}.cpuLimit"), self.memory(f"{workload}.memoryLimit")
        for what, request, limit in (("cpu", cpu, cpu_limit), ("memory", memory, memory_limit)):
            if quantity_value(request) > quantity_value(limit):
                key = f"{workload}.{what}"
                raise ConfigError(
                    key,
                    f"is above its limit {workload}.{what}Limit ({limit})",
                    request,
                    f"pulumi config set {NS}:{key}Limit {request}, or lower {NS}:{key}",
                )
        return cpu, memory, cpu_limit, memory_limit


def _is_ip(value: str) -> bool:
    try:
        ipaddress.IPv4Address(value)
        return True
    except ValueError:
        return False
