"""Kaizen's data, one module per concern, re-exported here so `from healing.models import X` keeps
working for every caller and the app's models are registered on import."""

from healing.models.audit import (
    AuditEntry,
)
from healing.models.changes import (
    CHANGE_KEY_PREFIX,
    Change,
    ChangeStatus,
    Component,
    PatchState,
    PromotionLogEntry,
    change_key,
)
from healing.models.ingest import (
    IngestDeadLetter,
)
from healing.models.issues import (
    ClassificationRule,
    EnqueueState,
    Issue,
    IssueEvent,
    IssueType,
    IssueUser,
    Occurrence,
    Severity,
    Stage,
    issue_id_for,
)
from healing.models.learning import (
    ErrorPattern,
    Incident,
    IncidentOutcome,
)

# `_new_public_key` too: migration 0001 names the default by this path.
from healing.models.projects import (
    Project,
    ProjectKey,
    _new_public_key,
    hash_secret,
    regexes_check,
)
from healing.models.rca import (
    RcaSource,
    RcaStatus,
    RootCauseAnalysis,
)
from healing.models.remediation import (
    RISK_ORDER,
    RemediationHook,
    RemediationOutcome,
    RemediationRun,
    RiskLevel,
)
from healing.models.sessions import (
    ACTIVE_WINDOW,
    MessageStage,
    MessageTemplate,
    SessionEvent,
    SessionEventKind,
    SessionRecording,
    UserSession,
)

__all__ = [
    "ACTIVE_WINDOW",
    "_new_public_key",
    "AuditEntry",
    "CHANGE_KEY_PREFIX",
    "Change",
    "ChangeStatus",
    "ClassificationRule",
    "Component",
    "EnqueueState",
    "ErrorPattern",
    "Incident",
    "IncidentOutcome",
    "IngestDeadLetter",
    "Issue",
    "IssueEvent",
    "IssueType",
    "IssueUser",
    "MessageStage",
    "MessageTemplate",
    "Occurrence",
    "PatchState",
    "Project",
    "ProjectKey",
    "PromotionLogEntry",
    "RISK_ORDER",
    "RcaSource",
    "RcaStatus",
    "RemediationHook",
    "RemediationOutcome",
    "RemediationRun",
    "RiskLevel",
    "RootCauseAnalysis",
    "SessionEvent",
    "SessionEventKind",
    "SessionRecording",
    "Severity",
    "Stage",
    "UserSession",
    "change_key",
    "hash_secret",
    "issue_id_for",
    "regexes_check",
]
