"""Slack and Discord incoming webhooks, through the project's one webhook client.

Slack: https://api.slack.com/messaging/webhooks (body {"text": ...}, answers "ok").
Discord: https://discord.com/developers/docs/resources/webhook#execute-webhook (body {"content": ...};
`?wait=true` makes it answer the created message, whose id is kept).
"""

import json
from typing import ClassVar

from django.conf import settings

from kaizen_site.webhooks import WebhookError, webhook_post

from .base import ChannelBase, DeliveryError, DeliveryResult, Message

SEVERITY_MARK = {"P0": "🔴", "P1": "🟠", "P2": "🟡", "P3": "⚪"}


class _WebhookChannel(ChannelBase):
    setting: ClassVar[str]
    label: ClassVar[str]

    def url(self) -> str:
        return getattr(settings, self.setting)

    def configured(self) -> bool:
        return bool(self.url())

    def missing(self) -> list[str]:
        return [] if self.url() else [self.setting]

    def payload(self, *, message: Message) -> dict:
        raise NotImplementedError

    def target(self) -> str:
        return self.url()

    def send(self, *, message: Message) -> DeliveryResult:
        body = json.dumps(self.payload(message=message)).encode()
        try:
            answer = webhook_post(url=self.target(), body=body, read_timeout=settings.KAIZEN_NOTIFY_TIMEOUT,
                                  name=self.label)  # fmt: skip
        except WebhookError as exc:
            raise DeliveryError(str(exc), transient=exc.transient, retry_after=exc.retry_after) from exc
        return DeliveryResult(provider_id=self.provider_id(text=answer.text))

    def provider_id(self, *, text: str) -> str:
        return ""


class SlackChannel(_WebhookChannel):
    name = "slack"
    setting = "KAIZEN_SLACK_WEBHOOK_URL"
    label = "Slack"

    def payload(self, *, message: Message) -> dict:
        headline = f"{SEVERITY_MARK.get(message.severity, '')} *{message.title}*"
        return {"text": f"{headline}\n{message.body}\n<{message.url}|Open in Kaizen>"}


class DiscordChannel(_WebhookChannel):
    name = "discord"
    setting = "KAIZEN_DISCORD_WEBHOOK_URL"
    label = "Discord"

    def target(self) -> str:
        url = self.url()
        return url + ("&" if "?" in url else "?") + "wait=true"

    def payload(self, *, message: Message) -> dict:
        # allowed_mentions: an alert quoting user text must never ping @everyone.
        content = f"{SEVERITY_MARK.get(message.severity, '')} **{message.title}**\n{message.body}\n{message.url}"
        return {"content": content[:2000], "allowed_mentions": {"parse": []}}

    def provider_id(self, *, text: str) -> str:
        try:
            return str(json.loads(text).get("id", ""))
        except (ValueError, AttributeError):
            return ""
