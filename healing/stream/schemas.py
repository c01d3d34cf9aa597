"""The session API's bodies, validated with pydantic (the same models document the endpoints)."""

from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, JsonValue, ValidationError

from healing.ingest.errors import IngestError

Short = Annotated[str, Field(max_length=200)]
Token = Annotated[str, Field(min_length=1, max_length=500)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SessionUser(Strict):
    id: Short | None = None
    name: Short | None = None
    email: Annotated[str, Field(max_length=254)] | None = None


class SessionCreate(Strict):
    user: SessionUser | None = None


class SessionTokenRefresh(Strict):
    token: Token
    user: SessionUser | None = None


class SessionGranted(BaseModel):
    session_id: str
    token: str
    expires_in: int
    stream_url: str


class SessionReply(Strict):
    token: Token
    issue_id: UUID
    text: Annotated[str, Field(min_length=1, max_length=4000)]


class SessionRecordingUpload(Strict):
    token: Token
    issue_id: UUID
    events: Annotated[list[JsonValue], Field(min_length=1)]


class PageCommand(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: Annotated[str, Field(max_length=50)] | None = None
    target: Annotated[str, Field(max_length=500)] | None = None


class SessionCommandOutcome(Strict):
    token: Token
    command: dict[str, JsonValue]
    outcome: Literal["ignored", "done", "failed"]
    reason: Annotated[str, Field(max_length=500)] = ""


class Accepted(BaseModel):
    status: Literal["accepted"] = "accepted"


def body_validate(model: type[BaseModel], data: Any) -> BaseModel:
    """A 400 that names each bad field, as ingest answers."""
    if not isinstance(data, dict):
        raise IngestError("invalid_body", "The body is a JSON object.")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = [
            {"field": ".".join(str(p) for p in err["loc"]), "message": err["msg"]}
            for err in exc.errors(include_url=False, include_input=False)
        ]
        raise IngestError("invalid_body", errors) from None
