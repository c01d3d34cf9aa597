"""Stream tokens: short-lived, signed, bound to one project and one server-minted session.

Signed with Django's SECRET_KEY under a salt of their own (a token is good for nothing else
signed with that key), timestamped by the signer, so checking one needs no database read: the
stream process checks a reconnecting browser's token for free.
"""

from django.conf import settings
from django.core import signing

SALT = "kaizen.stream.session-token"


class TokenError(Exception):
    """A token refused: `code` for the JSON body, `status` 401 (get a new one) or 403 (never yours)."""

    def __init__(self, code: str, detail: str, status: int = 401):
        super().__init__(detail)
        self.code, self.detail, self.status = code, detail, status


def token_issue(*, project_id: int, session_id: str) -> str:
    return signing.dumps({"p": project_id, "s": session_id}, salt=SALT)


def token_check(*, token: str, session_id: str, max_age: float | None = None) -> int:
    """The project id the token was issued for. Raises TokenError when it is missing, forged,
    older than `max_age` (default: KAIZEN_SESSION_TOKEN_SECONDS) or for another session."""
    if not token or len(token) > 500:
        raise TokenError("missing_token", "Send the session's stream token (`token`).")
    limit = settings.KAIZEN_SESSION_TOKEN_SECONDS if max_age is None else max_age
    try:
        data = signing.loads(token, salt=SALT, max_age=limit)
    except signing.SignatureExpired:
        raise TokenError("token_expired", "The stream token expired; refresh it (POST .../token).") from None
    except signing.BadSignature:
        raise TokenError("invalid_token", "The stream token is not valid.") from None
    if not isinstance(data, dict) or data.get("s") != session_id or not isinstance(data.get("p"), int):
        raise TokenError("wrong_session", "This token is for another session.", status=403)
    return data["p"]
