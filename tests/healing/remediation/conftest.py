"""The remediation tests' shared fixtures (defined with their helpers in the folder's support module)."""

from tests.healing.remediation.support import context, flag, issue  # noqa: F401 - fixtures of this folder
