"""CrossGuard wrappers around the plain rules in rules.py.

Kept apart from __main__.py (which only constructs the PolicyPack, and so starts a gRPC server and blocks)
so that the tests can build these policies and call them with pulumi_policy's own argument classes.
Runs in the pack's environment (policy/requirements.txt), where this folder is the first sys.path entry.
"""

from __future__ import annotations

import rules
from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

NAME = "kubeflow-e2e-guardrails"
ENFORCEMENT = EnforcementLevel.MANDATORY


def _schema(rule: rules.Rule) -> PolicyConfigSchema | None:
    return PolicyConfigSchema(properties=dict(rule.config)) if rule.config else None


def _resource_policy(rule: rules.Rule) -> ResourceValidationPolicy:
    def validate(args: ResourceValidationArgs, report_violation) -> None:
        if not rule.applies(args.resource_type):
            return
        resource = {"type": args.resource_type, "name": args.name, "inputs": args.props}
        for message in rule.check(resource, rule.settings(args.get_config())):
            report_violation(message, None)

    return ResourceValidationPolicy(name=rule.name, description=rule.description, validate=validate,
                                    config_schema=_schema(rule))


def _stack_policy(rule: rules.Rule) -> StackValidationPolicy:
    def validate(args: StackValidationArgs, report_violation) -> None:
        resources = []
        for resource in args.resources:
            # Which resource a property came from: during a preview the bucket's id is not known yet.
            refs = {prop: [dep.name for dep in deps] for prop, deps in resource.property_dependencies.items()}
            resources.append({"type": resource.resource_type, "name": resource.name, "urn": resource.urn,
                              "inputs": resource.props, "refs": refs})
        for at, message in rule.check(resources, rule.settings(args.get_config())):
            report_violation(message, at.get("urn"))

    return StackValidationPolicy(name=rule.name, description=rule.description, validate=validate,
                                 config_schema=_schema(rule))


def policies() -> list:
    wrap = {rules.STACK: _stack_policy, rules.RESOURCE: _resource_policy}
    return [wrap[rule.scope](rule) for rule in rules.RULES]

