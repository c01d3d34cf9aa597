"""The native problem report, as the browser detector and server hooks send it.

Validated with pydantic (the same model documents the endpoint in the OpenAPI schema). Every
free-text field has a cap so one report cannot bloat the database.
"""

import base64
import binascii
from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, JsonValue, field_validator

from healing.models import IssueType

Short = Annotated[str, Field(max_length=200)]
# Numbers must be numbers: "500" for a status is a client bug worth a 400, not a silent cast.
Status = Annotated[int, Field(ge=0, le=999, strict=True)]
Millis = Annotated[float, Field(ge=0)]
Text = Annotated[str, Field(max_length=8192)]
Url = Annotated[str, Field(max_length=2048)]

RECORDING_MAX_BYTES = 256 * 1024  # base64 text of a gzip'd snippet


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)


class User(Strict):
    id: Short | None = None
    email: Annotated[str, Field(max_length=254)] | None = None


class Frame(Strict):
    module: Short | None = None
    function: Short | None = None
    filename: Annotated[str, Field(max_length=500)] | None = None
    lineno: Annotated[int, Field(strict=True)] | None = None
    in_app: Annotated[bool, Field(strict=True)] | None = None


class ExceptionInfo(Strict):
    type: Short
    value: Text = ""
    stacktrace: Annotated[list[Frame], Field(max_length=200)] = []


class TimelineEntry(Strict):
    at: datetime | None = None
    action: Short
    target: Annotated[str, Field(max_length=500)] = ""
    detail: Annotated[str, Field(max_length=2000)] = ""


class ConsoleEntry(Strict):
    at: datetime | None = None
    level: Literal["debug", "info", "log", "warn", "warning", "error"] = "log"
    message: Text


class NetworkEntry(Strict):
    at: datetime | None = None
    method: Annotated[str, Field(max_length=10)]
    url: Url
    status: Status | None = None
    duration_ms: Millis | None = None


class FailingRequest(Strict):
    """The request that failed, captured so verification can replay it."""

    method: Annotated[str, Field(max_length=10, pattern=r"^[A-Za-z]+$")]
    path: Url
    query: dict[str, Short] | None = None
    headers: dict[Short, Annotated[str, Field(max_length=2000)]] | None = None
    body: JsonValue = None
    status: Status | None = None
    duration_ms: Millis | None = None


class IssueReport(Strict):
    event_id: UUID | None = Field(None, description="Client-made id; a resend with the same id is stored once.")
    type: IssueType = IssueType.ERROR
    message: Text
    fingerprint: Annotated[list[Short], Field(min_length=1, max_length=10)] | None = Field(
        None, description="Overrides grouping: reports with the same fingerprint form one issue."
    )
    user: User | None = None
    session_id: Short | None = None
    url: Url | None = None
    route: Annotated[str, Field(max_length=500)] | None = None
    exception: ExceptionInfo | None = None
    timeline: Annotated[list[TimelineEntry], Field(max_length=200)] = []
    console: Annotated[list[ConsoleEntry], Field(max_length=200)] = []
    network: Annotated[list[NetworkEntry], Field(max_length=200)] = []
    request: FailingRequest | None = None
    state: dict[str, JsonValue] | None = Field(None, description="A snapshot of the relevant client state.")
    description: Annotated[str, Field(max_length=5000)] | None = Field(None, description="The user's own words.")
    recording: Annotated[str, Field(max_length=RECORDING_MAX_BYTES)] | None = Field(
        None, description="Base64 of a gzip-compressed session-recording snippet (≤ 256 KiB encoded)."
    )
    timestamp: datetime | None = None
    release: Short | None = None
    environment: Annotated[str, Field(max_length=64)] | None = None
    tags: dict[Short, Short] | None = None

    @field_validator("recording")
    @classmethod
    def _gzip_base64(cls, value: str | None) -> str | None:
        if value is None:
            return value
        try:
            head = base64.b64decode(value[:8], validate=True)
            base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ValueError("recording must be base64") from exc
        if not head.startswith(b"\x1f\x8b"):
            raise ValueError("recording must be gzip-compressed")
        return value


class IssueAccepted(BaseModel):
    event_id: UUID
    issue_id: UUID
    stage: str = Field(description='"received" while queued for grouping, then the issue\'s stage.')
