"""What every channel shares: the message it sends, the result it returns, the one error it raises.

Modelled on Healthchecks' transports: one small class per channel, told apart only by `send`.
"""

from dataclasses import dataclass
from typing import ClassVar


@dataclass(frozen=True)
class Message:
    """A notification rendered for every channel at once (rendering.message_for)."""

    severity: str
    kind: str
    title: str  # push title, email subject, chat headline
    body: str  # push body, chat text
    sms: str  # ≤ 160 characters: one GSM-7 segment
    text: str  # email, plain (rendered for the email channel only)
    html: str  # email, HTML (likewise)
    url: str  # where the owner acts on it


@dataclass(frozen=True)
class DeliveryResult:
    provider_id: str  # Beams publishId, Twilio sid, email Message-ID; "" when the provider gives none


class DeliveryError(Exception):
    """A send that did not succeed. Transient (timeout, 5xx, 429) is retried, honouring `retry_after`
    seconds when the provider gave one; permanent (bad credentials, invalid number) is not."""

    def __init__(self, message: str, *, transient: bool, retry_after: float | None = None) -> None:
        self.transient, self.retry_after = transient, retry_after
        super().__init__(message)


class ChannelBase:
    name: ClassVar[str]

    def configured(self) -> bool:
        """Whether the credentials this channel needs are set; an unconfigured channel is skipped, not an error."""
        raise NotImplementedError

    def missing(self) -> list[str]:
        """The settings still to set, for the admin's "not configured" line."""
        raise NotImplementedError

    def send(self, *, message: Message) -> DeliveryResult:
        raise NotImplementedError
