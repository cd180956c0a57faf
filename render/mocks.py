"""Pulumi mocks that record what the program declares: the engine for `python -m render` and for the
component tests. No provider runs, so nothing here reaches a cluster or a cloud.

Facts the mocks work around (pulumi 3.272 / pulumi-kubernetes 4.34): names get no auto-suffix, so
`new_resource` supplies `metadata.name`; numbers come back as floats (turned back into ints when integral);
secret inputs arrive wrapped, and are recorded as "[secret]"; only those: a render shows what the program
marks secret, and nothing more, so a credential left unmarked shows in it.

Each record also holds `state`: the outputs the engine would store for the resource beyond its inputs, with
those the program marks secret (`additional_secret_outputs`, which the mock monitor itself ignores) shown as
"[secret]", as the engine encrypts them. The mocks' own made-up outputs (an access key's secret) are plain
placeholders, so a secret output nobody marks shows in the render as it is.
"""

from __future__ import annotations

import json
from typing import Any

from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import rpc

REDACTED = "[secret]"
API_SERVER_IP = "172.18.0.2"  # the `kubernetes` Service endpoint the mocks answer with
ACCOUNT = "000000000000"  # a role's account comes from its trust policy; this is for everything else


def is_secret(value: Any) -> bool:
    return isinstance(value, dict) and value.get(rpc._special_sig_key) == rpc._special_secret_sig


def clean(value: Any) -> Any:
    """Plain JSON: what the program marks secret redacted (keeping a map's keys, so a Secret still shows what it
    holds), integral floats back to ints. Nothing else is redacted: a credential the program forgot to mark
    shows in the render, where the tests look for it."""
    if is_secret(value):
        inner = value.get("value")
        if isinstance(inner, dict):
            return {k: REDACTED for k in inner}
        return REDACTED
    if isinstance(value, dict):
        return {k: clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [clean(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def unwrap(value: Any) -> Any:
    """The plain value behind secret wrappers (the mocks' returned state must stay usable downstream)."""
    if is_secret(value):
        return unwrap(value.get("value"))
    if isinstance(value, dict):
        return {k: unwrap(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unwrap(v) for v in value]
    return value


def _role_account(inputs: dict) -> str:
    try:
        policy = json.loads(unwrap(inputs.get("assumeRolePolicy") or "{}"))
        arn = policy["Statement"][0]["Principal"]["Federated"]
        return arn.split(":")[4]
    except (ValueError, KeyError, IndexError, TypeError):
        return ACCOUNT


class StackMocks(pulumi_mocks.Mocks):
    """Plausible outputs for each resource type the program uses."""

    def new_resource(self, args: pulumi_mocks.MockResourceArgs):
        inputs = unwrap(dict(args.inputs))
        typ, name = args.typ, args.name
        if typ == "kubernetes:core/v1:Endpoints" and args.resource_id == "default/kubernetes":
            # The API server's addresses, as a kind cluster's `kubernetes` Service lists them.
            return args.resource_id, {"metadata": {"name": "kubernetes", "namespace": "default"}, "subsets": [
                {"addresses": [{"ip": API_SERVER_IP}], "ports": [{"name": "https", "port": 6443, "protocol": "TCP"}]}
            ]}
        if typ.startswith("kubernetes:"):
            meta = dict(inputs.get("metadata") or {})
            meta.setdefault("name", args.resource_id or name)  # a read (`.get`) is named by its id
            inputs["metadata"] = meta
            return f"{meta.get('namespace', '')}/{meta['name']}".lstrip("/"), inputs
        if typ == "aws:s3/bucket:Bucket":
            bucket = inputs.get("bucket") or name
            return bucket, {
                **inputs,
                "bucket": bucket,
                "arn": f"arn:aws:s3:::{bucket}",
                "bucketRegionalDomainName": f"{bucket}.s3.amazonaws.com",
            }
        if typ.startswith("aws:iam/"):
            kind = typ.rsplit(":", 1)[1]
            rname = inputs.get("name") or name
            if kind == "Role":
                return rname, {
                    **inputs,
                    "name": rname,
                    "arn": f"arn:aws:iam::{_role_account(inputs)}:role/{rname}",
                }
            if kind in ("Policy", "User"):
                return rname, {
                    **inputs,
                    "name": rname,
                    "arn": f"arn:aws:iam::{ACCOUNT}:{kind.lower()}/{rname}",
                }
            if kind == "AccessKey":
                # Plain: the record shows "[secret]" only where the secret output is marked secret.
                return "AKIA-RENDER-PLACEHOLDER", {**inputs, "secret": "render-placeholder-secret-key"}
        return f"{name}-id", inputs

    def call(self, args: pulumi_mocks.MockCallArgs):
        return {}


class RecordingMonitor(pulumi_mocks.MockMonitor):
    """The stock mock monitor, plus a record of each registration's inputs, parent, dependencies and options
    (the stock one keeps only outputs)."""

    def __init__(self, mocks: pulumi_mocks.Mocks):
        super().__init__(mocks)
        self.records: list[dict] = []

    def RegisterResource(self, request):
        response = super().RegisterResource(request)
        if request.type == "pulumi:pulumi:Stack":
            return response
        inputs = rpc.deserialize_properties(request.object)
        outputs = rpc.deserialize_properties(response.object) if response.object else {}
        secret_outputs = set(request.additionalSecretOutputs)
        state = {
            k: REDACTED if k in secret_outputs else clean(v)
            for k, v in outputs.items()
            if k not in inputs and not request.type.startswith("kubernetes:")
        }
        self.records.append(
            {
                "urn": response.urn,
                "type": request.type,
                "name": request.name,
                "custom": bool(request.custom),
                "parent": request.parent or None,
                "provider": request.provider or None,
                "dependencies": sorted(set(request.dependencies)),
                "options": {
                    "protect": bool(request.protect),
                    "retainOnDelete": bool(request.retainOnDelete),
                    "deleteBeforeReplace": bool(request.deleteBeforeReplace),
                    "replaceOnChanges": sorted(request.replaceOnChanges),
                    "ignoreChanges": sorted(request.ignoreChanges),
                    "additionalSecretOutputs": sorted(secret_outputs),
                },
                "state": state,
                # A dynamic resource's `__provider` is its pickled provider code: not an input worth showing.
                "inputs": {k: clean(v) for k, v in inputs.items() if k != "__provider"},
            }
        )
        return response

    def ReadResource(self, request):
        """A `.get` of an existing object: recorded with `read` set to the id it looks up."""
        response = super().ReadResource(request)
        self.records.append(
            {
                "urn": response.urn,
                "type": request.type,
                "name": request.name,
                "custom": True,
                "read": request.id,
                "parent": request.parent or None,
                "provider": request.provider or None,
                "dependencies": sorted(set(request.dependencies)),
                "options": {},
                "inputs": {},
            }
        )
        return response


def install(project: str, stack: str) -> RecordingMonitor:
    """Points this process's pulumi runtime at the mocks; do it before the program is imported."""
    mocks = StackMocks()
    monitor = RecordingMonitor(mocks)
    pulumi_mocks.set_mocks(mocks, project=project, stack=stack, preview=False, monitor=monitor)
    return monitor
