"""Signed model versions: the pipeline signs each version's `_COMPLETE` manifest with an Ed25519 key, and the
serving sidecar refuses a version whose signature is missing or made by another key.

`_COMPLETE` lists every file's size and sha256 (`_EVAL.json` included), so a valid signature over its exact
bytes vouches for the weights and the score; `_SIGNATURE` is written before `_COMPLETE`, so a complete
version is signed from its first moment. This matters where one S3 key is shared by every role (MinIO's root
user, an `external` endpoint): whoever can write the bucket can publish, but only the holder of the private
key (a Secret only the pipeline's pods mount) can sign.

The private key is a PKCS#8 PEM file (`MODEL_SIGNING_KEY_FILE`); the public key is the base64 of its 32 raw
bytes (`serving.publicKey`, `sync-model --public-key`). `python -m trainer signing-key` makes a pair.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from pathlib import Path

from common.errors import UserError
from trainer.publish import COMPLETE
from trainer.store import NotFound, Store

SIGNATURE = "_SIGNATURE"
KEY_FILE_VAR = "MODEL_SIGNING_KEY_FILE"


class BadSignature(UserError):
    """A version that is unsigned, signed by another key, or whose manifest changed after signing."""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def load_private(path) -> object:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    try:
        key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as e:
        raise UserError("cannot read the model signing key", path,
                        f"mount a PKCS#8 PEM Ed25519 key there (python -m trainer signing-key) ({e})") from e
    if not isinstance(key, Ed25519PrivateKey):
        raise UserError("the model signing key is not an Ed25519 key", path,
                        "make one with python -m trainer signing-key")
    return key


def load_public(text: str) -> object:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        raw = base64.b64decode(text.strip(), validate=True)
        return Ed25519PublicKey.from_public_bytes(raw)
    except (binascii.Error, ValueError) as e:
        raise UserError("the model public key is not the base64 of 32 Ed25519 bytes", text,
                        "pass the public key printed by python -m trainer signing-key") from e


def public_text(key) -> str:
    from cryptography.hazmat.primitives import serialization

    return _b64(key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw))


def signer_from_env(environ=os.environ):
    """`publish_dir`'s `sign` callback for the key in MODEL_SIGNING_KEY_FILE; None when it is unset."""
    path = environ.get(KEY_FILE_VAR, "").strip()
    if not path:
        return None
    key = load_private(path)
    public = public_text(key.public_key())

    def sign(manifest: bytes) -> dict[str, bytes]:
        record = {"alg": "ed25519", "public_key": public, "signature": _b64(key.sign(manifest))}
        return {SIGNATURE: json.dumps(record, sort_keys=True).encode()}

    return sign


def verify(version_store: Store, public_key) -> None:
    """Raises BadSignature unless `_SIGNATURE` is a valid signature by `public_key` of the exact `_COMPLETE`
    bytes. (That the files match `_COMPLETE` is checked as they are fetched.)"""
    from cryptography.exceptions import InvalidSignature

    try:
        manifest = version_store.get_bytes(COMPLETE)
        raw = version_store.get_bytes(SIGNATURE)
    except NotFound as e:
        raise BadSignature("unsigned version (no _SIGNATURE)", version_store.url,
                           "publish it from the pipeline, which holds the signing key") from e
    try:
        record = json.loads(raw)
        signature = base64.b64decode(record["signature"], validate=True)
    except (ValueError, KeyError, TypeError, binascii.Error) as e:
        raise BadSignature("unreadable _SIGNATURE", version_store.url_of(SIGNATURE),
                           "publish the version again from the pipeline") from e
    try:
        public_key.verify(signature, manifest)
    except InvalidSignature as e:
        raise BadSignature("the signature does not verify with serving's public key (another key, or a "
                           "changed _COMPLETE)", version_store.url_of(SIGNATURE),
                           "publish from the pipeline whose key matches serving.publicKey") from e


# `python -m trainer signing-key`: a new key pair.

def add_arguments(parser) -> None:
    parser.add_argument("--out", required=True, help="where to write the private key (PKCS#8 PEM, mode 0600)")


def run(args) -> dict:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    out = Path(args.out)
    if out.exists():
        raise UserError("refusing to overwrite a key", out, "pass a new --out path")
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    return {"private_key_file": str(out), "public_key": public_text(key.public_key())}
