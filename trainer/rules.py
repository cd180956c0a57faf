"""`common.rules` under the name e2e/test_stack.py still imports; new code imports `common.rules`."""

from common.rules import *  # noqa: F403
from common.rules import shards_for, train_problems  # noqa: F401
