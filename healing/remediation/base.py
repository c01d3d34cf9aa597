"""What every remediation action is: a name, a risk level, a pydantic schema for its params, and
`run` / `undo`. The built-ins register themselves here when the package is imported."""

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from healing.audit import AUTOMATIC
from healing.models import Change, Issue, Project, RiskLevel


class RemediationError(Exception):
    """The action could not do its work. The message says why; `result` keeps what was observed
    (an HTTP status, a response excerpt) for the run's record."""

    def __init__(self, message: str, *, result: Mapping[str, Any] | None = None) -> None:
        self.result = dict(result or {})
        super().__init__(message)


@dataclass(frozen=True)
class Outcome:
    ok: bool
    detail: str
    undo_data: dict[str, Any] | None = None  # None: nothing to undo
    result: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RemediationContext:
    """Whom and what a step acts for. The project comes from the issue or the change when not given."""

    project: Project | None = None
    issue: Issue | None = None
    change: Change | None = None
    user_id: str = ""
    actor: str = AUTOMATIC

    @property
    def target_project(self) -> Project | None:
        if self.project is not None:
            return self.project
        if self.issue is not None:
            return self.issue.project
        if self.change is not None and self.change.issue is not None:
            return self.change.issue.project
        return None

    @property
    def why(self) -> str:
        """The reason written on the rows an action changes (flag history, overrides)."""
        parts = [self.change.key if self.change is not None else "", f"issue {self.issue.pk}" if self.issue else ""]
        source = ", ".join(part for part in parts if part)
        return f"Kaizen remediation ({source})" if source else "Kaizen remediation"


class Params(BaseModel):
    # A misspelt param is an error, not a silently ignored key.
    model_config = ConfigDict(extra="forbid", frozen=True)


class Action:
    """One kind of remediation step. Subclasses set the class attributes and implement `run`
    (and `undo` when `no_undo` is empty). Both raise RemediationError when they cannot do it."""

    name: ClassVar[str]
    risk: ClassVar[RiskLevel]
    summary: ClassVar[str]
    Params: ClassVar[type[Params]] = Params
    # Why this action is never undone (empty: it can be). A plan rollback reports it.
    no_undo: ClassVar[str] = ""
    # True when it acts for one user (the affected one) only: a plan made of such steps fixes that
    # user's case (the issue is mitigated), not the cause for everyone.
    per_user: ClassVar[bool] = False

    def exposure(self, params: Params) -> int:
        """The share of all users (0–100 %) whose product changes when it runs; 0 for a step that
        acts for the affected user only (like a canary, it reaches no one the bug spared)."""
        return 0

    def check(self, params: Params, *, project: Project | None) -> list[str]:
        """Problems only the project can reveal (a hook that does not exist); none by default."""
        return []

    def run(self, params: Params, context: RemediationContext) -> Outcome:
        raise NotImplementedError

    def undo(self, undo_data: Mapping[str, Any], context: RemediationContext) -> Outcome:
        raise RemediationError(f"{self.name} cannot be undone: {self.no_undo or 'no undo defined'}.")


ACTIONS: dict[str, Action] = {}


def register(cls: type[Action]) -> type[Action]:
    if cls.name in ACTIONS:
        raise ValueError(f"Remediation action {cls.name} is registered twice.")
    ACTIONS[cls.name] = cls()
    return cls
