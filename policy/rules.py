"""The stack's guardrails as plain functions over the resources a Pulumi program registers.

A resource is a mapping {"type": <Pulumi type token>, "name": str, "inputs": mapping}, the shape that
`render.render` collects under mocks and that CrossGuard hands the policy pack (`args.props`). A stack rule
may also read "refs": {property: [names of the resources that property came from]}, which the pack fills
from Pulumi's property dependencies (during a real preview, ids are not known yet).

Here: the rule set and `evaluate`. The checks are in k8s_rules.py (containers, Services, the TFJob) and
bucket_rules.py (the bucket), reading resources through manifests.py. They need only the standard library
and PyYAML (which Pulumi's SDK brings) for manifests embedded as text: the tests and `python -m policy.check`
run them in the program's environment, the policy pack in its own (policy/requirements.txt). They only read
through the Mapping/Sequence interfaces and never copy the inputs, so CrossGuard's unknown-value proxies
still raise when a rule touches a value that is not known during preview; the pack then skips that rule for
now instead of judging a placeholder.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

if __package__:  # policy.rules: the program's environment (the tests, python -m policy.check)
    from policy import bucket_rules as bucket
    from policy import k8s_rules as k8s
    from policy import manifests
else:  # rules: the pack's own environment, where policy/ is the first sys.path entry (pack.py)
    import bucket_rules as bucket
    import k8s_rules as k8s
    import manifests

RESOURCE = "resource"
STACK = "stack"
KUBERNETES = manifests.KUBERNETES


class Violation(NamedTuple):
    rule: str
    resource: str  # the resource's name; "" for the stack as a whole
    message: str

    def __str__(self) -> str:
        return f"[{self.rule}] {self.resource or '<stack>'}: {self.message}"


@dataclass(frozen=True)
class Rule:
    name: str
    description: str
    # RESOURCE: check(resource, config) -> [message]
    # STACK: check(resources, config) -> [(the resource at fault, message)]
    scope: str
    check: Callable[..., list]
    types: tuple[str, ...] = ("*",)  # type tokens (fnmatch patterns) a resource rule looks at
    config: dict[str, dict[str, Any]] = field(default_factory=dict)  # JSON schema properties with defaults

    def applies(self, type_token: str) -> bool:
        return any(fnmatch.fnmatchcase(type_token, pattern) for pattern in self.types)

    def settings(self, given: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The rule's config: schema defaults overlaid with what the pack's config gave."""
        values = {key: schema.get("default") for key, schema in self.config.items()}
        values.update({key: value for key, value in (given or {}).items() if key in self.config})
        return values


# --- the rule set ---------------------------------------------------------------------------------------

RULES: tuple[Rule, ...] = (
    Rule("s3-bucket-private-encrypted-tls",
         "The data bucket is private, encrypted at rest and reachable over TLS only.", STACK, bucket.check_buckets),
    Rule("k8s-no-public-services", "No Service of type LoadBalancer or NodePort unless the policy config "
         "allows it.", RESOURCE, k8s.check_services,
         types=("kubernetes:core/v1:Service", "kubernetes:helm.sh/*"),
         config={"allowLoadBalancer": {"type": "boolean", "default": False},
                 "allowNodePort": {"type": "boolean", "default": False}}),
    Rule("k8s-container-limits", "Every container has CPU and memory limits.", RESOURCE, k8s.check_limits,
         types=KUBERNETES, config=k8s.EXEMPT),
    Rule("k8s-container-non-root", "Every container runs as a non-root user.", RESOURCE, k8s.check_non_root,
         types=KUBERNETES, config=k8s.EXEMPT),
    Rule("k8s-container-drop-capabilities", "Every container drops all Linux capabilities and is not "
         "privileged.", RESOURCE, k8s.check_capabilities, types=KUBERNETES, config=k8s.EXEMPT),
    Rule("k8s-image-pinned",
         "Every image is pinned to a version tag or a digest (no :latest, no missing tag).", RESOURCE,
         k8s.check_images, types=KUBERNETES),
    Rule("k8s-tfjob-replica-bound", "The TFJob's total replica count stays within a bound.", RESOURCE,
         k8s.check_tfjob_replicas, types=(k8s.TFJOB, "kubernetes:argoproj.io/*"),
         config={"maxReplicas": {"type": "integer", "minimum": 1, "default": 16}}),
    Rule("k8s-no-literal-secrets", "Secrets never appear as literal container env values.", RESOURCE,
         k8s.check_literal_secrets, types=KUBERNETES),
)

BY_NAME = {rule.name: rule for rule in RULES}


def evaluate(resources: Sequence[Mapping], config: Mapping[str, Mapping] | None = None) -> list[Violation]:
    """Runs every rule over a stack's resources; config maps a rule name to its settings."""
    config = config or {}
    found: list[Violation] = []
    for rule in RULES:
        settings = rule.settings(config.get(rule.name))
        if rule.scope == STACK:
            found += [Violation(rule.name, str(at.get("name", "")), text)
                      for at, text in rule.check(resources, settings)]
            continue
        for resource in resources:
            if rule.applies(str(resource.get("type", ""))):
                name = str(resource.get("name", ""))
                found += [Violation(rule.name, name, message) for message in rule.check(resource, settings)]
    return found
