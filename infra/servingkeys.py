"""The checks of serving's promotion gate and signing keys (`serving.minAccuracy`, `serving.maxRegression`,
`serving.publicKey`, and the rule that pairs it with `training.signingKey`) and of its metrics
(`metrics.serviceMonitor`), beside `infra.configcheck` and
`infra.configload`, which stay under the layout's size limit."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

from infra.configcheck import ConfigError, Reader, number, set_to


def fraction(r: Reader, key: str) -> str:
    """A number from 0 to 1, kept as written (an accuracy, or a drop in accuracy)."""
    value = number(r, key)
    if not 0.0 <= float(value) <= 1.0:
        raise ConfigError(key, "must be between 0 and 1", value, set_to(key, r.default(key)))
    return value


def ed25519_public_key(r: Reader, key: str) -> str:
    """The base64 of 32 bytes (an Ed25519 public key, as `python -m trainer signing-key` prints it)."""
    value = str(r.raw(key)).strip()
    try:
        ok = len(base64.b64decode(value, validate=True)) == 32
    except binascii.Error:
        ok = False
    if not ok:
        raise ConfigError(key, "must be the base64 of a 32-byte Ed25519 public key", value,
                          "use the public_key that python -m trainer signing-key prints")
    return value


def signing_keys_come_in_pairs(v: Mapping[str, Any]) -> None:
    """Versions are signed (`training.signingKey`) exactly when serving checks signatures (`serving.publicKey`):
    one without the other would publish what serving refuses, or refuse every version."""
    signing, public = v["training.signingKey"] is not None, v["serving.publicKey"] is not None
    if signing != public:
        missing, other = ("serving.publicKey", "training.signingKey") if signing else \
            ("training.signingKey", "serving.publicKey")
        raise ConfigError(missing, f"must be set with {other}", None,
                          "make a pair with python -m trainer signing-key and set both, or neither", literal=True)


AUTO_OR_BOOL = ("auto", "true", "false")


def auto_or_bool(r: Reader, key: str) -> str:
    """`auto`, `true` or `false` (a YAML boolean too), as one of those strings."""
    value = r.raw(key)
    text = ("true" if value else "false") if isinstance(value, bool) else str(value).strip().lower()
    if text not in AUTO_OR_BOOL:
        raise ConfigError(key, f"must be one of {', '.join(AUTO_OR_BOOL)}", value, set_to(key, "auto"))
    return text
