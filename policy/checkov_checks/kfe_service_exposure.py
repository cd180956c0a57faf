"""checkov has no check for a Service reachable from outside the cluster; the policy pack has one
(k8s-no-public-services), and this mirrors it so that the manifest scan flags the same thing."""

from __future__ import annotations

from typing import Any

from checkov.common.models.enums import CheckCategories, CheckResult
from checkov.kubernetes.checks.resource.base_spec_check import BaseK8Check

EXPOSED = ("LoadBalancer", "NodePort")


class ServiceNotExposed(BaseK8Check):
    def __init__(self) -> None:
        super().__init__(
            name="Service is not exposed outside the cluster (type LoadBalancer or NodePort)",
            id="CKV_KFE_1",
            categories=(CheckCategories.NETWORKING,),
            supported_entities=("Service",),
        )

    def scan_spec_conf(self, conf: dict[str, Any]) -> CheckResult:
        spec = conf.get("spec") or {}
        return CheckResult.FAILED if spec.get("type") in EXPOSED else CheckResult.PASSED


check = ServiceNotExposed()
