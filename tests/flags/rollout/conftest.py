"""The rollout tests' fixtures (defined with their helpers in support.py)."""

from tests.flags.rollout.support import allow_all, issue, start  # noqa: F401 - fixtures of this folder
