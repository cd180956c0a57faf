"""TF_CONFIG as the TFJob operator writes it, and every malformed variant: parsed natively, clear errors."""

from __future__ import annotations

import json

import pytest

from common.errors import UserError
from demo.supervisor import tf_config
from trainer.tfconfig import TFConfig, load, parse

CLUSTER = {"chief": ["job-chief-0.ns.svc:2222"],
           "worker": ["job-worker-0.ns.svc:2222", "job-worker-1.ns.svc:2222"]}


def operator(task_type: str, index: int, cluster=CLUSTER) -> str:
    """Exactly the operator's shape, including its `environment` key."""
    task = {"type": task_type, "index": index}
    return json.dumps({"cluster": cluster, "task": task, "environment": "cloud"})


def test_absent_or_blank_means_one_process():
    for raw in (None, "", "   "):
        config = parse(raw)
        assert (config.num_workers, config.rank, config.is_chief, config.distributed) == (1, 0, True, False)
    assert load({}) == TFConfig()
    assert load({"TF_CONFIG": operator("worker", 1)}).rank == 2


def test_chief_and_workers_get_ranks_in_operator_order():
    chief, w0, w1 = parse(operator("chief", 0)), parse(operator("worker", 0)), parse(operator("worker", 1))
    assert [c.rank for c in (chief, w0, w1)] == [0, 1, 2]
    assert [c.is_chief for c in (chief, w0, w1)] == [True, False, False]
    assert {c.num_workers for c in (chief, w0, w1)} == {3}
    assert all(c.distributed for c in (chief, w0, w1))
    assert w1.task_name == "worker-1" and w1.address == "job-worker-1.ns.svc:2222"
    assert chief.cluster == CLUSTER


def test_demo_supervisor_tf_config_parses_the_same_way():
    # demo.supervisor starts the local processes with this: it must agree with the parser.
    config = parse(tf_config([2222, 2223, 2224], "worker", 1))
    assert (config.rank, config.num_workers, config.task_name) == (2, 3, "worker-1")


def test_single_worker_without_chief_is_the_chief():
    config = parse(operator("worker", 0, {"worker": ["w0:2222"]}))
    assert (config.is_chief, config.rank, config.num_workers, config.distributed) == (True, 0, 1, False)


def test_chief_only_is_one_process():
    config = parse(operator("chief", 0, {"chief": ["c:2222"]}))
    assert (config.is_chief, config.num_workers, config.distributed) == (True, 1, False)


@pytest.mark.parametrize(
    "raw, what",
    [
        ("{not json", "is not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
        (json.dumps({"task": {"type": "chief", "index": 0}}), "has no 'cluster'"),
        (json.dumps({"cluster": {}, "task": {"type": "chief", "index": 0}}), "has no 'cluster'"),
        (json.dumps({"cluster": CLUSTER}), "has no 'task'"),
        (json.dumps({"cluster": CLUSTER, "task": {"index": 0}}), "has no 'task'"),
        (operator("worker", 2), "task.index is out of range"),
        (operator("worker", -1), "task.index is out of range"),
        (operator("chief", 1), "task.index is out of range"),
        (json.dumps({"cluster": CLUSTER, "task": {"type": "worker", "index": "0"}}), "must be an integer"),
        (operator("worker", 0, {"worker": ["a:1", "b:2"]}), "several workers but no chief"),
        (operator("chief", 0, {"chief": ["a:1", "b:2"]}), "more than one chief"),
        (operator("chief", 0, {"chief": ["a:1"], "worker": []}), "non-empty list"),
        (operator("chief", 0, {"chief": ["no-port"]}), "not host:port"),
        (operator("chief", 0, {"chief": ["a:1"], "worker": ["b:x"]}), "not host:port"),
        (operator("chief", 0, {"chief": ["a:1"], "worker": ["b:2", "b:2"]}), "address twice"),
        (operator("chief", 0, {"worker": ["a:1"]}), "not in the cluster"),
    ],
)
def test_malformed(raw, what):
    with pytest.raises(UserError) as err:
        parse(raw)
    assert err.value.what.startswith("TF_CONFIG") and what in err.value.what, err.value
    assert err.value.fix


@pytest.mark.parametrize("task_type, hint", [("ps", "ParameterServerStrategy"), ("evaluator", "evaluate"),
                                             ("master", "Chief")])
def test_other_operator_task_types_are_refused_with_the_reason(task_type, hint):
    cluster = {**CLUSTER, task_type: ["x-0:2222"]}
    for raw in (operator(task_type, 0, cluster), operator("worker", 0, cluster)):
        with pytest.raises(UserError) as err:
            parse(raw)
        assert repr(task_type) in err.value.what and hint in err.value.fix


@pytest.mark.parametrize("task_type", ["Chief", "WORKER", "trainer", ""])
def test_unknown_task_type(task_type):
    with pytest.raises(UserError) as err:
        parse(operator(task_type, 0, {"chief": ["a:1"], "worker": ["b:2"]}))
    assert "unknown task type" in err.value.what and "'chief' and 'worker'" in err.value.fix


@pytest.mark.parametrize("raw, message", [
    ("{oops", "error: TF_CONFIG is not valid JSON"),
    (operator("ps", 0, {**CLUSTER, "ps": ["p:1"]}), "error: TF_CONFIG cluster has task type 'ps'"),
    (operator("worker", 5), "error: TF_CONFIG task.index is out of range for 'worker' (5)"),
])
def test_train_refuses_a_bad_tf_config_before_starting(run_trainer, bucket, raw, message):
    proc = run_trainer("train", env={"TF_CONFIG": raw, "DATA_URL": f"s3://{bucket}/data",
                                     "RUN_URL": f"s3://{bucket}/run", "MODEL_URL": f"s3://{bucket}/models"},
                       timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
