"""The stage runner and process supervisor behind `make demo`, the bench and the drills, with real processes."""

import io
import json
import sys
import time

import pytest

from demo.supervisor import Progress, StageFailed, Supervisor, last_json, tf_config

SLEEP = [sys.executable, "-c", "import time; print('up', flush=True); time.sleep(600)"]


def test_first_failure_stops_the_others_and_names_stage_and_log(tmp_path):
    sup = Supervisor(tmp_path)
    sleeper = sup.start("sleeper", SLEEP, {})
    failing = sup.start("failing", [sys.executable, "-c",
                                    "import sys; print('error: bad thing (x): fix it'); sys.exit(3)"], {})
    start = time.monotonic()
    with pytest.raises(StageFailed) as err:
        sup.wait_all("train", [sleeper, failing], timeout=60)
    assert time.monotonic() - start < 30  # did not wait for the sleeper
    assert err.value.stage == "train"
    assert err.value.logs == [tmp_path / "failing.log"]
    assert "exited with code 3" in err.value.reason and "error: bad thing (x): fix it" in err.value.reason
    assert sleeper.returncode is not None, "the other process was left running"
    assert "error: bad thing" in (tmp_path / "failing.log").read_text()


def test_timeout_stops_the_process(tmp_path):
    sup = Supervisor(tmp_path)
    sleeper = sup.start("sleeper", SLEEP, {})
    with pytest.raises(StageFailed, match="still running after 1 s"):
        sup.wait_all("serve", [sleeper], timeout=1)
    assert sleeper.returncode is not None


def test_stop_all_ends_children_of_children(tmp_path):
    """A process's own children (TensorBoard's, a shell's) go too: the whole process group is signalled."""
    sup = Supervisor(tmp_path)
    parent = sup.start("parent", ["sh", "-c", f"{sys.executable} -c 'import time; time.sleep(600)' & "
                                              "echo child $!; wait"], {})
    deadline = time.monotonic() + 10
    while not any(line.startswith("child ") for line in parent.tail):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    child = int(next(line for line in parent.tail if line.startswith("child ")).split()[1])
    sup.stop_all()
    assert parent.returncode is not None
    deadline = time.monotonic() + 10
    while _alive(child):
        assert time.monotonic() < deadline, "the grandchild survived stop_all()"
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_progress_prints_one_line_per_stage_and_wraps_errors():
    out = io.StringIO()
    progress = Progress(2, out=out)
    with progress.stage("one") as info:
        info["detail"] = "fine"
    with pytest.raises(StageFailed) as err, progress.stage("two"):
        raise ValueError("boom")
    lines = out.getvalue().splitlines()
    assert len(lines) == 1 and lines[0].startswith("[1/2] one") and lines[0].endswith("fine") and " s " in lines[0]
    assert err.value.stage == "two" and "boom" in err.value.reason


def test_tf_config_is_what_the_operator_writes():
    assert json.loads(tf_config([1000, 1001, 1002], "worker", 1)) == {
        "cluster": {"chief": ["127.0.0.1:1000"], "worker": ["127.0.0.1:1001", "127.0.0.1:1002"]},
        "task": {"type": "worker", "index": 1}, "environment": "cloud"}
    assert json.loads(tf_config([1000], "chief", 0))["cluster"] == {"chief": ["127.0.0.1:1000"]}


def test_last_json_is_the_last_object_line():
    assert last_json(["epoch 1", '{"a": 1}', "noise", '{"b": 2}', "{not json"]) == {"b": 2}
    assert last_json(["[1, 2]", "text"]) is None
