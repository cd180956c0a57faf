"""boto3, in one place: the client, retries, multipart transfers, and botocore failures turned into messages.

The only module that imports boto3. `S3_ENDPOINT` (a full URL) selects an S3-compatible server and path-style
addressing; unset means AWS. Credentials come from boto3's default chain (env keys, IRSA on EKS, ...).

Tunables (environment, all optional):
  S3_MAX_ATTEMPTS      attempts per request, botocore "standard" retry mode: jittered exponential backoff
                       from 50 ms, capped at 20 s. The default 12 waits about 33 s in all (median; 18 s at
                       the 5th percentile) before giving up, so a S3 outage of 10-15 s mid-training is ridden
                       out, and an unreachable endpoint is still reported within about a minute. Tests use
                       1-2 to fail fast.
  S3_CONNECT_TIMEOUT   seconds to open a connection (default 5)
  S3_READ_TIMEOUT      seconds to wait for data on an open connection (default 60)
  S3_MAX_CONCURRENCY   threads per multipart transfer (default 8)

botocore's own variables also apply: AWS_REQUEST_CHECKSUM_CALCULATION and AWS_RESPONSE_CHECKSUM_VALIDATION
(`when_supported`, botocore's default, or `when_required` for S3-compatible servers that refuse the CRC32
headers botocore sends since 1.36; the stack sets both from `storage.checksums`).

Retried by botocore ("standard" mode): connection errors, HTTP 500/502/503/504, 429, RequestTimeout and the
throttling codes (SlowDown, ...). Not retried, each with its own message in `translate`: RequestTimeTooSkewed,
SignatureDoesNotMatch, InvalidAccessKeyId, the token codes, AccessDenied, a KMS denial, NoSuchBucket.
"""

from __future__ import annotations

import hashlib
import os
import random
import re
import threading
import time
import urllib.parse
from pathlib import Path

import boto3
import botocore.exceptions as bx
from boto3.s3.transfer import TransferConfig
from botocore.config import Config

from common.errors import UserError
from trainer.storeerrors import AccessError, NotFound, StoreError

MULTIPART_BYTES = 8 * 1024 * 1024
RANGED_BYTES = 64 * 1024 * 1024
STREAM_CHUNK = 256 * 1024

_CREDENTIAL_CODES = {  # besides InvalidAccessKeyId and SignatureDoesNotMatch, which have their own messages
    "InvalidToken", "ExpiredToken", "TokenRefreshRequired", "InvalidClientTokenId", "AuthorizationHeaderMalformed",
    "InvalidSecurity",
}
_DENIED_CODES = {"AccessDenied", "403", "Forbidden", "AllAccessDisabled"}
_MISSING_KEY_CODES = {"NoSuchKey", "404", "NotFound"}

# botocore's variables for its checksums, which the stack sets from `storage.checksums` (infra/podspec.py).
CHECKSUM_ENV = ("AWS_REQUEST_CHECKSUM_CALCULATION", "AWS_RESPONSE_CHECKSUM_VALIDATION")

_lock = threading.Lock()
_clients: dict[tuple, object] = {}


def _env_number(name: str, default: float, cast=float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = cast(raw)
    except ValueError:
        value = None
    if value is None or value <= 0:
        raise UserError(f"{name} must be a positive number", raw, f"set {name}={default} or unset it")
    return value


def endpoint() -> str | None:
    """`S3_ENDPOINT` as a full URL, or None for AWS."""
    url = (os.environ.get("S3_ENDPOINT") or "").strip()
    if not url:
        return None
    bad = UserError(
        "S3_ENDPOINT must be a full URL with scheme",
        url,
        "set it like http://minio.minio:9000, or unset it for AWS",
    )
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or any(c.isspace() for c in url):
        raise bad
    try:
        parts.port  # noqa: B018  (raises ValueError for a port that is not a number in 0-65535)
    except ValueError:
        raise bad from None
    return url.rstrip("/")


# botocore's own rule for a region name (botocore/utils.py `validate_region_name`): letters, digits and
# hyphens, at most 63, not all digits, no hyphen at either end. botocore checks it only when a request is
# signed, which a retry loop would take for an outage.
_REGION = re.compile(r"^(?![0-9]+$)(?!-)[a-zA-Z0-9-]{1,63}(?<!-)$")


def region() -> str | None:
    """`AWS_REGION` (or `AWS_DEFAULT_REGION`), checked as botocore would; None when neither is set."""
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        value = (os.environ.get(name) or "").strip()
        if value:
            if not _REGION.match(value):
                raise UserError(f"{name} is not a region name", value,
                                f"set {name} to a region such as us-east-1 (or the S3 server's own name)")
            return value
    return None


def where() -> str:
    return endpoint() or "AWS S3"


def settings() -> dict:
    return {
        "endpoint": endpoint(),
        "region": region(),
        "max_attempts": int(_env_number("S3_MAX_ATTEMPTS", 12, int)),
        "connect_timeout": _env_number("S3_CONNECT_TIMEOUT", 5.0),
        "read_timeout": _env_number("S3_READ_TIMEOUT", 60.0),
        "max_concurrency": int(_env_number("S3_MAX_CONCURRENCY", 8, int)),
    }


def client(response_crc: bool = True):
    """A boto3 S3 client for the current settings; one per process, settings and `response_crc` (clients are
    thread-safe). `response_crc=False`: botocore does not check the CRC32 an S3 server sends with an object's
    body (its default since 1.36); only for reads whose caller checks a stronger digest of its own. Otherwise
    botocore's own settings apply (AWS_RESPONSE_CHECKSUM_VALIDATION, AWS_REQUEST_CHECKSUM_CALCULATION)."""
    s = settings()
    cache_key = (os.getpid(), tuple(sorted(s.items())), response_crc,
                 *(os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", *CHECKSUM_ENV)))
    with _lock:
        found = _clients.get(cache_key)
        if found is None:
            config = Config(
                retries={"mode": "standard", "total_max_attempts": s["max_attempts"]},
                connect_timeout=s["connect_timeout"],
                read_timeout=s["read_timeout"],
                max_pool_connections=max(32, 4 * s["max_concurrency"]),
                # S3-compatible servers (MinIO, moto, Ceph) are reached by path, not by bucket subdomain.
                s3={"addressing_style": "path"} if s["endpoint"] else {},
                # None: botocore's setting (its variable, else `when_supported`), which `storage.checksums` sets.
                response_checksum_validation=None if response_crc else "when_required",
            )
            # A session per client: boto3's default session is not thread-safe to create clients from.
            found = boto3.session.Session().client(
                "s3", endpoint_url=s["endpoint"], region_name=s["region"], config=config
            )
            _clients[cache_key] = found
        return found


def transfer_config() -> TransferConfig:
    return TransferConfig(
        multipart_threshold=MULTIPART_BYTES,
        multipart_chunksize=MULTIPART_BYTES,
        max_concurrency=settings()["max_concurrency"],
        use_threads=True,
    )


def _url(bucket: str, key: str = "") -> str:
    return f"s3://{bucket}/{key}" if key else f"s3://{bucket}"


def translate(err: Exception, bucket: str, key: str = "") -> Exception:
    """The StoreError that explains a botocore failure, or `err` itself when it is not one we know."""
    url = _url(bucket, key)
    if isinstance(err, bx.ClientError):
        error = err.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = err.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        message = str(error.get("Message", ""))
        if code == "RequestTimeTooSkewed":
            # Signed requests carry the time; S3 refuses one more than 15 minutes off its own clock. Transient
            # (a StoreError): the clock can be set right while the process runs.
            return StoreError(
                f"this machine's clock is more than 15 minutes off the S3 server's (RequestTimeTooSkewed) at "
                f"{where()}",
                url,
                "set the node's clock right (NTP or chrony: compare `date -u` with the server's time); the "
                "credentials are fine",
            )
        if code == "InvalidAccessKeyId":
            return AccessError(
                f"S3 does not know the access key of these credentials (InvalidAccessKeyId) at {where()}",
                url,
                "check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (the Secret's values) and that the key exists "
                "at this endpoint",
            )
        if code == "SignatureDoesNotMatch":
            return AccessError(
                f"S3 rejected the signature of these credentials (SignatureDoesNotMatch) at {where()}",
                url,
                "AWS_SECRET_ACCESS_KEY is not the secret of AWS_ACCESS_KEY_ID: check the Secret's values (a stray "
                "space or newline counts)",
            )
        if code.startswith("KMS.") or (code in _DENIED_CODES and "kms:" in message.lower()):
            # SSE-KMS: S3 needs the caller's own rights on the bucket's key (AWS answers AccessDenied naming
            # the kms: action, or a KMS.* code for a disabled or missing key).
            return StoreError(
                f"S3 could not use the bucket's KMS key for these credentials ({code}: {message}) at {where()}",
                url,
                "allow the role kms:Decrypt and kms:GenerateDataKey on the bucket's key (in the role's policy "
                "or the key policy), and check that the key is enabled",
            )
        if code in _CREDENTIAL_CODES:
            return AccessError(
                f"S3 rejected the credentials ({code}) at {where()}",
                url,
                "check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or the pod's IAM role) for this endpoint",
            )
        if code == "NoSuchBucket" or (code in ("404", "NotFound") and not key):
            return StoreError(
                f"S3 bucket {bucket!r} does not exist at {where()}",
                url,
                "create the bucket or fix the bucket name in the URL",
            )
        if code in _MISSING_KEY_CODES:
            return NotFound("S3 object not found", url, "check the URL, or write it first")
        if code in _DENIED_CODES or status == 403:
            return StoreError(
                f"S3 denied access ({code or status}) at {where()}",
                url,
                "the credentials were accepted but may not do this here: check the role's policy (or the "
                "bucket policy) for this bucket and prefix",
            )
        if any(word in message.lower() for word in ("checksum", "x-amz-trailer", "aws-chunked")):
            # An S3-compatible server that predates the CRC32 headers botocore sends on uploads since 1.36.
            return StoreError(f"S3 request failed ({code or status}: {message})", url,
                              f"the S3 server at {where()} refuses botocore's checksum headers: set the stack's "
                              "storage.checksums to when_required (AWS_REQUEST_CHECKSUM_CALCULATION=when_required)")
        return StoreError(f"S3 request failed ({code or status}: {message})", url,
                          f"check the URL and the S3 server at {where()}")
    if isinstance(err, (bx.EndpointConnectionError, bx.ConnectTimeoutError, bx.ConnectionError,
                        bx.ReadTimeoutError, bx.ConnectionClosedError, bx.HTTPClientError)):
        return StoreError(
            f"cannot reach the S3 endpoint {where()}",
            url,
            "check S3_ENDPOINT (a full URL such as http://minio.minio:9000) and that the server is up "
            f"({type(err).__name__})",
        )
    if isinstance(err, (bx.NoCredentialsError, bx.PartialCredentialsError, bx.CredentialRetrievalError)):
        return AccessError(
            "no usable AWS credentials",
            url,
            "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or give the pod an IAM role (IRSA)",
        )
    if isinstance(err, bx.BotoCoreError):
        return StoreError(f"S3 request failed at {where()}: {err}", url, "check S3_ENDPOINT and credentials")
    return err


def _call(bucket: str, key: str, fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except (bx.BotoCoreError, bx.ClientError) as e:
        raise translate(e, bucket, key) from e
    except Exception as e:  # s3transfer wraps failures of its worker threads
        cause = e.__cause__ or e.__context__
        if isinstance(cause, (bx.BotoCoreError, bx.ClientError)):
            raise translate(cause, bucket, key) from e
        raise


def put_bytes(bucket: str, key: str, data: bytes) -> None:
    _call(bucket, key, client().put_object, Bucket=bucket, Key=key, Body=data)


def create_bytes(bucket: str, key: str, data: bytes) -> bool:
    """PutObject with `If-None-Match: *`: writes only if no object has that key. False when one has: 412
    PreconditionFailed, or 409 ConditionalRequestConflict (AWS, while another conditional write to the key
    is in flight). AWS S3 honours the header since 2024-08; so do MinIO (RELEASE.2025-09-07T16-13-09Z:
    `cmd/object-handlers.go` PutObjectHandler checks it under the object's namespace lock in
    `cmd/erasure-object.go`) and moto 5.2.5 (`moto/s3/responses.py` put_object). A server that ignores the
    header just writes, and this returns True."""

    def put():
        try:
            client().put_object(Bucket=bucket, Key=key, Body=data, IfNoneMatch="*")
        except bx.ClientError as e:
            code = str(e.response.get("Error", {}).get("Code", ""))
            status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code in ("PreconditionFailed", "ConditionalRequestConflict") or status in (409, 412):
                return False
            raise
        return True

    return _call(bucket, key, put)


def get_bytes(bucket: str, key: str) -> bytes:
    def get():
        return client().get_object(Bucket=bucket, Key=key)["Body"].read()

    return _call(bucket, key, get)


def put_file(bucket: str, key: str, path: Path) -> None:
    _call(bucket, key, client().upload_file, str(path), bucket, key, Config=transfer_config())


def get_file(bucket: str, key: str, path: Path, checked: bool = False) -> str | None:
    """Downloads to `path`; returns the sha256 of what was written (None for a large file fetched in ranges).

    One streaming GET, hashed on the fly, beats s3transfer's HEAD + GET + writer thread for shard-sized files
    (callers run several in parallel). Files above RANGED_BYTES go through s3transfer's parallel ranged GETs.
    Botocore retries a failed request, but not a body that breaks off mid-stream: that is retried here.
    `checked=True`: the caller compares the result with a sha256 it already knows (a dataset manifest, a
    published folder's _COMPLETE), so botocore's CRC32 of the same bytes is skipped (a fifth of the client's
    CPU per byte here: docs/performance.md, "Cold reads").
    """
    attempts = settings()["max_attempts"]
    for attempt in range(1, attempts + 1):
        try:
            return _call(bucket, key, _stream_to_file, bucket, key, path, checked)
        except StoreError as e:
            broken = isinstance(e.__cause__, _BROKEN_STREAM)
            if not broken or attempt == attempts:
                raise
            time.sleep(random.random() * min(0.05 * 2 ** (attempt - 1), 20))  # as botocore's "standard"
    raise AssertionError("unreachable")


_BROKEN_STREAM = (
    bx.ResponseStreamingError, bx.ReadTimeoutError, bx.ConnectionClosedError, bx.IncompleteReadError
)


def _stream_to_file(bucket: str, key: str, path: Path, checked: bool) -> str | None:
    s3 = client(response_crc=not checked)
    response = s3.get_object(Bucket=bucket, Key=key)
    body = response["Body"]
    if response["ContentLength"] > RANGED_BYTES:
        body.close()
        s3.download_file(bucket, key, str(path), Config=transfer_config())
        return None
    digest = hashlib.sha256()
    with open(path, "wb") as out:
        # 256 KiB pieces stay in the CPU's cache from the socket through the hash to the file; with 1 MiB ones
        # a cold pass beside tf.data's parsing took more CPU (docs/performance.md, "Cold reads").
        for chunk in body.iter_chunks(STREAM_CHUNK):
            digest.update(chunk)
            out.write(chunk)
    return digest.hexdigest()


def exists(bucket: str, key: str) -> bool:
    try:
        _call(bucket, key, client().head_object, Bucket=bucket, Key=key)
        return True
    except NotFound:
        return False


def list_sizes(bucket: str, base: str, prefix: str = "") -> dict[str, int]:
    """Keys below `base` (which ends with '/' or is empty) that start with `prefix`: relative key -> size."""
    out: dict[str, int] = {}

    def walk():
        pages = client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=base + prefix)
        for page in pages:
            for obj in page.get("Contents", []):
                rel = obj["Key"][len(base):]
                if rel and not rel.endswith("/"):  # skip "folder" marker objects
                    out[rel] = obj["Size"]

    _call(bucket, "", walk)
    return dict(sorted(out.items()))


def delete(bucket: str, keys: list[str]) -> None:
    for i in range(0, len(keys), 1000):
        batch = [{"Key": k} for k in keys[i:i + 1000]]
        result = _call(bucket, "", client().delete_objects, Bucket=bucket,
                       Delete={"Objects": batch, "Quiet": True})
        errors = result.get("Errors") or []
        if errors:
            first = errors[0]
            raise StoreError(f"S3 could not delete {len(errors)} object(s) ({first.get('Code')})",
                             _url(bucket, first.get("Key", "")), "check that the credentials may delete here")


def check_bucket(bucket: str, prefix: str = "") -> None:
    """Endpoint reachable, credentials accepted, bucket present: one small LIST (unlike HEAD, its error has a
    body, so a wrong key reads as InvalidAccessKeyId rather than a bare 403). Listed under `prefix`, so a role
    that may list only its own prefixes (the stack's per-role policies) passes."""
    _call(bucket, "", client().list_objects_v2, Bucket=bucket, Prefix=prefix, MaxKeys=1)
