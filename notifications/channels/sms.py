"""Twilio SMS to the owner's phone.

https://www.twilio.com/docs/messaging/api/message-resource#create-a-message-resource — POST
/2010-04-01/Accounts/<sid>/Messages.json answers {"sid": ...}. Error codes that mean the number or the
sender is wrong (https://www.twilio.com/docs/api/errors) are permanent; so is any 4xx but 429.
"""

from functools import lru_cache

import requests
from django.conf import settings
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from .base import ChannelBase, DeliveryError, DeliveryResult, Message

SETTINGS = ("KAIZEN_TWILIO_ACCOUNT_SID", "KAIZEN_TWILIO_AUTH_TOKEN", "KAIZEN_TWILIO_FROM", "KAIZEN_OWNER_PHONE")


def twilio_client() -> Client:
    """One client per process and configuration: its session keeps the connection to Twilio open."""
    return _twilio_client(
        settings.KAIZEN_TWILIO_ACCOUNT_SID, settings.KAIZEN_TWILIO_AUTH_TOKEN, settings.KAIZEN_TWILIO_BASE_URL,
        settings.KAIZEN_NOTIFY_TIMEOUT,
    )  # fmt: skip


@lru_cache(maxsize=4)
def _twilio_client(account_sid: str, auth_token: str, base_url: str, timeout: float) -> Client:
    # TwilioHttpClient's default timeout is None: a hung connection would hold a notify worker forever.
    client = Client(account_sid, auth_token, http_client=TwilioHttpClient(timeout=timeout))
    if base_url:
        client.api.base_url = base_url
    return client


class SmsChannel(ChannelBase):
    name = "sms"

    def configured(self) -> bool:
        return not self.missing()

    def missing(self) -> list[str]:
        return [n for n in SETTINGS if not getattr(settings, n)]

    def send(self, *, message: Message) -> DeliveryResult:
        client = twilio_client()
        try:
            sent = client.messages.create(to=settings.KAIZEN_OWNER_PHONE, from_=settings.KAIZEN_TWILIO_FROM,
                                          body=message.sms)  # fmt: skip
        except TwilioRestException as exc:
            transient = exc.status >= 500 or exc.status == 429
            raise DeliveryError(
                f"Twilio answered {exc.status} (code {exc.code}): {exc.msg}", transient=transient
            ) from exc
        except (requests.RequestException, TwilioException) as exc:
            # The SDK wraps a timeout or a refused connection; either may succeed on a later try.
            raise DeliveryError(f"could not reach Twilio: {exc}", transient=True) from exc
        return DeliveryResult(provider_id=sent.sid or "")
