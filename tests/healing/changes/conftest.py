"""The Change tests' shared fixtures (defined with their helpers in the folder's support module)."""

from tests.healing.changes.support import component, executor, in_review, no_executor  # noqa: F401 - fixtures of this folder
