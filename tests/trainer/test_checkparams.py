"""`python -m trainer check-parameters`: a value outside its choices (a newline included) fails with one line
and exit 2; values inside them pass through unchanged."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from common.errors import UserError
from trainer.checkparams import check


def test_values_among_their_choices_pass_through():
    assert check([("epochs", "10", "1,5,10"), ("learning-rate", "0.001", "0.001,0.01")]) == {
        "epochs": "10", "learning-rate": "0.001"}  # fmt: skip


@pytest.mark.parametrize("value", ["1\n      image: evil/trainer:latest", "1 ", " 1", "01", "1.0", "", "1,5"])
def test_a_value_outside_its_choices_is_refused_and_named(value):
    with pytest.raises(UserError) as err:
        check([("epochs", value, "1,5,10")])
    assert repr(value) in str(err.value) and "-p epochs=<one of 1, 5, 10>" in str(err.value)
    assert "\n" not in str(err.value)


def test_a_parameter_given_twice_is_refused():
    with pytest.raises(UserError, match="given twice"):
        check([("epochs", "1", "1,5"), ("epochs", "5", "1,5")])


def test_the_command_exits_2_with_one_line_and_0_with_the_values(tmp_path):
    def cli(*args):
        return subprocess.run([sys.executable, "-m", "trainer", "check-parameters", *args], capture_output=True,
                              text=True, env={"TMPDIR": str(tmp_path), "PATH": "/usr/bin:/bin"}, timeout=60)

    bad = cli("--param", "epochs", "1\n  image: x", "1,2", "--param", "batch-size", "64", "64")
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.strip() == ("error: parameter epochs is '1\\n  image: x' (not one of its choices): "
                                  "submit with `-p epochs=<one of 1, 2>`")
    good = cli("--param", "epochs", "2", "1,2", "--param", "batch-size", "64", "64")
    assert good.returncode == 0, good.stderr
    assert json.loads(good.stdout.splitlines()[-1]) == {"parameters": {"epochs": "2", "batch-size": "64"}}
    assert cli().returncode == 2
