"""What Argo makes of a template's text before it runs it, for the two tag forms the stack's templates use
(argo-workflows v4.0.7 `util/template`): a simple tag, `{{workflow.parameters.NAME}}`, becomes the value as it
is; an expression tag, ``{{=asInt(workflow.parameters[`NAME`])}}`` (or `asFloat`, or `.NAME`), becomes the number
the value converts to, JSON-marshalled, and a value that does not convert fails the step (`asInt` is expr's
`int`, Go's strconv.Atoi; `asFloat` its `float`, strconv.ParseFloat, whose NaN and Inf JSON cannot write).
A name in quotes is refused: in a resource manifest with `setOwnerReference` the controller re-marshals the YAML
and reads a quote escaped or doubled (seen on the real node), so the template names it in backticks (expr's
raw string)."""

from __future__ import annotations

import json
import math
import re

TAG = re.compile(r"\{\{(=?)\s*(.+?)\s*\}\}")
EXPRESSION = re.compile(r"(asInt|asFloat)\(workflow\.parameters(?:\.(\w+)|\[`([\w-]+)`\])\)")
GO_INT = re.compile(r"[+-]?[0-9]+")
GO_FLOAT = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?|[+-]?(inf|infinity|nan)", re.IGNORECASE)


class ExpressionError(ValueError):
    """The step fails: Argo could not evaluate the expression."""


def substitute(text: str, values: dict[str, str]) -> str:
    """`text` with every tag replaced; `values` maps a variable (`workflow.parameters.epochs`, `workflow.name`) to
    its value. Raises KeyError for a variable with no value, ExpressionError for an expression that fails."""

    def one(m: re.Match) -> str:
        if not m.group(1):
            return values[m.group(2)]
        e = EXPRESSION.fullmatch(m.group(2))
        if not e:
            raise ExpressionError(f"not an expression this helper knows: {m.group(2)}")
        function, name = e.group(1), e.group(2) or e.group(3)
        raw = values[f"workflow.parameters.{name}"]
        if function == "asInt":
            if not GO_INT.fullmatch(raw):
                raise ExpressionError(f"asInt({raw!r}): invalid syntax")
            return json.dumps(int(raw))
        if not GO_FLOAT.fullmatch(raw):
            raise ExpressionError(f"asFloat({raw!r}): invalid syntax")
        number = float(raw)
        if not math.isfinite(number):
            raise ExpressionError(f"json: unsupported value: {raw}")
        return json.dumps(number)

    return TAG.sub(one, text)
