"""CrossGuard policy pack (`pulumi preview --policy-pack policy`) and the checks CI runs without Pulumi."""
