"""Retraining on a schedule: `retrain.schedule` declares an Argo CronWorkflow that submits the retrain
template; unset, none. A schedule Argo would refuse is a config error before anything is declared."""

from __future__ import annotations

import pytest

from infra.configcheck import ConfigError
from infra.retraining import CRON_NAME, NAME

from .conftest import make_config


def test_no_schedule_by_default(dev, prod):
    assert dev.find("CronWorkflow") == [] and prod.find("CronWorkflow") == []


def test_a_schedule_submits_the_retrain_template_one_at_a_time(renders):
    rendered = renders("dev", {"retrain.schedule": "30 2 * * MON-FRI"})
    cron = rendered.one("CronWorkflow", CRON_NAME)
    spec = cron["spec"]
    assert cron["metadata"]["namespace"] == "kubeflow-e2e"
    assert spec["schedules"] == ["30 2 * * MON-FRI"]
    assert spec["concurrencyPolicy"] == "Forbid"
    assert spec["successfulJobsHistoryLimit"] == 3 and spec["failedJobsHistoryLimit"] == 3
    # The template it names is the one the stack declares, with its defaults: a scheduled retrain is the same
    # prepare -> train -> evaluate run `argo submit --from workflowtemplate/retrain-mnist` makes.
    assert spec["workflowSpec"] == {"workflowTemplateRef": {"name": NAME}}
    rendered.one("WorkflowTemplate", NAME)
    [resource] = [r for r in rendered.resources if r["inputs"].get("kind") == "CronWorkflow"]
    [template] = [r for r in rendered.resources if r["inputs"].get("kind") == "WorkflowTemplate"
                  and r["inputs"]["metadata"]["name"] == NAME]
    assert template["urn"] in resource["dependencies"]


@pytest.mark.parametrize("schedule", ["0 3 * * *", "*/15 * * * *", "0 0 1,15 * ?", "5 4 * JAN-MAR 1-5", "@weekly",
                                      "  0   3 * * *  "])
def test_schedules_argo_takes(schedule):
    assert make_config(retrain__schedule=schedule).retrain.schedule == " ".join(schedule.split())


@pytest.mark.parametrize(
    ("schedule", "problem"),
    [
        ("0 3 * *", "must have 5 fields (minute hour day-of-month month day-of-week), not 4"),
        ("0 3 * * * *", "not 6"),
        ("60 3 * * *", "bad minute field '60'"),
        ("0 24 * * *", "bad hour field '24'"),
        ("0 3 0 * *", "bad day of month field '0'"),
        ("0 3 * 13 *", "bad month field '13'"),
        ("0 3 * * 7", "bad day of week field '7'"),
        ("0 3 * * FUNDAY", "bad day of week field 'FUNDAY'"),
        ("*/0 * * * *", "bad minute field '*/0'"),
        ("0 5-3 * * *", "bad hour field '5-3'"),
        ("daily", "not 1"),
        ("@fortnightly", "not 1"),
    ],
)
def test_a_bad_schedule_is_a_config_error_naming_the_key_and_the_fix(schedule, problem):
    with pytest.raises(ConfigError) as e:
        make_config(retrain__schedule=schedule)
    assert e.value.key == "retrain.schedule"
    text = str(e.value)
    assert text.startswith("config kubeflow-e2e:retrain.schedule is not a cron schedule: it ")
    assert problem in text and f"({schedule})" in text
    assert "pulumi config set --path kubeflow-e2e:retrain.schedule '0 3 * * *'" in text


def test_the_clusters_own_argo_must_serve_cron_workflows_when_a_schedule_is_set(renders):
    def reads(overrides):
        return {r["name"] for r in renders("dev", {"argo.install": False, **overrides}).reads()}

    needed = "crd-cronworkflows.argoproj.io-needed-as-argo.install-is-false"
    assert needed not in reads({})
    assert needed in reads({"retrain.schedule": "@daily"})
