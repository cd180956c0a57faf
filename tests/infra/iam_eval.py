"""Whether an identity policy of ours allows a request, by AWS's documented rules for Allow statements
(IAM User Guide, "Policy evaluation logic" and "IAM JSON policy elements: Condition operators"): an action and
a resource match when a pattern matches with `*` and `?` wildcards; every condition operator in a statement must
hold; StringLike matches any of its values with wildcards; a condition on a key the request does not carry is
false. Our policies hold only Allow statements, so a request is allowed when one statement matches, and
implicitly denied otherwise. Only the operators our policies use are implemented; any other is an error."""

from __future__ import annotations

import fnmatch


def _like(pattern: str, value: str) -> bool:
    return fnmatch.fnmatchcase(value, pattern.replace("[", "[[]"))


def _listed(x) -> list:
    return x if isinstance(x, list) else [x]


def allowed(policy: dict, action: str, resource: str, context: dict[str, str] | None = None) -> bool:
    context = context or {}
    for st in policy["Statement"]:
        if st["Effect"] != "Allow":
            raise ValueError("only Allow statements are modelled")
        if not any(_like(a, action) for a in _listed(st["Action"])):
            continue
        if not any(_like(r, resource) for r in _listed(st["Resource"])):
            continue
        ok = True
        for operator, conditions in st.get("Condition", {}).items():
            if operator not in ("StringLike", "StringEquals"):
                raise ValueError(f"condition operator {operator} not modelled")
            for key, values in conditions.items():
                if key not in context:
                    ok = False
                elif operator == "StringLike":
                    ok = ok and any(_like(v, context[key]) for v in _listed(values))
                else:
                    ok = ok and context[key] in _listed(values)
        if ok:
            return True
    return False
