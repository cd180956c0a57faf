"""How Argo Workflows v4.0.6 decides a `resource` step's outcome from the object's JSON, rebuilt for the tests
from its source (`workflow/executor/resource.go`: `labels.Parse` of the condition, then `gjsonLabels`, which
reads each key as a gjson path; `matchConditions`: any failure requirement fails the step, every success
requirement must hold, failure first). The selector grammar and key rule are Kubernetes' (apimachinery
`labels/selector.go`: requirements separated by commas; `=`, `==`, `!=`, `>`, `<`, a bare key for "exists",
`!key`; `NewRequirement` rejects a key that is not a qualified name). Only plain dotted paths are walked
(object fields and list indices), which is all a valid key can express.
"""

from __future__ import annotations

import json
import re

_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_OPS = ("==", "!=", "=", ">", "<")


class SelectorError(ValueError):
    pass


def _check_key(key: str) -> None:
    prefix, _, name = key.rpartition("/")
    if not name or len(name) > 63 or not _NAME.match(name) or (prefix and len(prefix) > 253):
        raise SelectorError(f"invalid label key {key!r}: Argo cannot parse this condition")


def parse(selector: str) -> list[tuple[str, str, str | None]]:
    """`a.b == x,c` -> [(key, op, value)]; op is one of == != > < exists !exists."""
    out = []
    for part in selector.split(","):
        part = part.strip()
        if not part:
            raise SelectorError(f"empty requirement in {selector!r}")
        for op in _OPS:
            if op in part:
                key, value = (s.strip() for s in part.split(op, 1))
                op = "==" if op == "=" else op
                break
        else:
            key, op, value = part.lstrip("!").strip(), "!exists" if part.startswith("!") else "exists", None
        _check_key(key)
        if op in (">", "<") and not re.fullmatch(r"-?\d+", value or ""):
            raise SelectorError(f"{op} needs an integer, not {value!r}")
        out.append((key, op, value))
    return out


def _get(doc, path: str):
    node = doc
    for part in path.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    return node


def _text(value) -> str:
    """gjson's `Result.String()`: strings as they are, other JSON as written, missing as ''."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value, separators=(",", ":"))


def _matches(doc, requirement) -> bool:
    key, op, value = requirement
    found = _get(doc, key)
    if op == "exists":
        return found is not None
    if op == "!exists":
        return found is None
    text = _text(found)
    if op == "==":
        return found is not None and text == value
    if op == "!=":
        return found is None or text != value
    try:
        number = int(text)
    except ValueError:
        return False
    return number > int(value) if op == ">" else number < int(value)


def outcome(resource: dict, obj: dict) -> str:
    """'failed', 'succeeded' or 'waiting' for the Argo `resource` spec and the object's JSON."""
    failure = parse(resource["failureCondition"]) if resource.get("failureCondition") else []
    success = parse(resource["successCondition"]) if resource.get("successCondition") else []
    if any(_matches(obj, r) for r in failure):
        return "failed"
    if all(_matches(obj, r) for r in success):
        return "succeeded"
    return "waiting"
