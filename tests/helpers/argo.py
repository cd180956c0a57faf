"""What Argo makes of a template's text before it runs it, for the two tag forms the stack's templates use
(argo-workflows v4.0.7 `util/template`): a simple tag, `{{workflow.parameters.NAME}}`, becomes the value as it
is; an expression tag, ``{{=asInt(workflow.parameters[`NAME`])}}`` (or `asFloat`, or `.NAME`), becomes the number
the value converts to, JSON-marshalled (`asInt` is expr's `int`, Go's strconv.Atoi; `asFloat` its `float`,
strconv.ParseFloat, whose NaN and Inf JSON cannot write). An expression that fails is left as it stands:
`common.SubstituteParams` replaces with unresolved tags allowed, and the TFJob step then sends the tag's own
text (seen on the real node). A name in quotes is refused: with `setOwnerReference` the controller re-marshals
a resource manifest as YAML and then reads a quote escaped or doubled, so the template uses backticks (expr's
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
    """An expression of a form this helper does not model (Argo's outcome for it is not known here)."""


def substitute(text: str, values: dict[str, str]) -> str:
    """`text` with every tag replaced, or kept where its expression fails; `values` maps a variable
    (`workflow.parameters.epochs`, `workflow.name`) to its value. Raises KeyError for a variable with no value,
    ExpressionError for an expression of another form."""

    def one(m: re.Match) -> str:
        if not m.group(1):
            return values[m.group(2)]
        e = EXPRESSION.fullmatch(m.group(2))
        if not e:
            raise ExpressionError(f"not an expression this helper knows: {m.group(2)}")
        function, name = e.group(1), e.group(2) or e.group(3)
        raw = values[f"workflow.parameters.{name}"]
        if function == "asInt":
            return json.dumps(int(raw)) if GO_INT.fullmatch(raw) else m.group(0)
        number = float(raw) if GO_FLOAT.fullmatch(raw) else math.nan
        return json.dumps(number) if math.isfinite(number) else m.group(0)

    return TAG.sub(one, text)
