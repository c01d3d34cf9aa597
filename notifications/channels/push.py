"""Pusher Beams: publish to the owner's users (every browser or phone they subscribed).

https://pusher.com/docs/beams/reference/publish-api/ — POST /publish_api/v1/instances/<id>/publishes/users
answers {"publishId": ...}. The SDK sends through a requests Session with no timeout and maps 429 to
PusherValidationError, like any 4xx; both are corrected here.
"""

import threading
from functools import lru_cache

import requests
from django.conf import settings
from pusher_push_notifications import (
    PusherAuthError,
    PusherBadResponseError,
    PusherError,
    PusherMissingInstanceError,
    PusherServerError,
    PusherValidationError,
    PushNotifications,
)
from requests.adapters import HTTPAdapter

from ..models import Device
from .base import ChannelBase, DeliveryError, DeliveryResult, Message

USER_PREFIX = "kaizen-user-"  # Beams user ids: one per owner account, what the token endpoint signs


class _BoundedAdapter(HTTPAdapter):
    """Gives every request the timeout the SDK never passes, and remembers, per thread, the last
    answer's status (the SDK turns a 429 into the same PusherValidationError as a malformed body)."""

    def __init__(self, *, timeout: float) -> None:
        super().__init__()
        self.timeout = timeout
        self.last = threading.local()

    def send(self, request, **kwargs):  # noqa: ANN001 - requests' signature
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self.timeout
        self.last.status, self.last.retry_after = None, None
        response = super().send(request, **kwargs)
        self.last.status, self.last.retry_after = response.status_code, response.headers.get("Retry-After")
        return response


def beams_user_id(user_pk: int) -> str:
    return f"{USER_PREFIX}{user_pk}"


def beams_client() -> tuple[PushNotifications, _BoundedAdapter]:
    """One client per process and configuration: its session keeps the TLS connection to Beams open."""
    return _beams_client(
        settings.KAIZEN_BEAMS_INSTANCE_ID, settings.KAIZEN_BEAMS_SECRET_KEY, settings.KAIZEN_BEAMS_ENDPOINT,
        settings.KAIZEN_BEAMS_CA_BUNDLE, settings.KAIZEN_NOTIFY_TIMEOUT,
    )  # fmt: skip


@lru_cache(maxsize=4)
def _beams_client(
    instance_id: str, secret_key: str, endpoint: str, ca_bundle: str, timeout: float
) -> tuple[PushNotifications, _BoundedAdapter]:
    client = PushNotifications(instance_id=instance_id, secret_key=secret_key, endpoint=endpoint or None)
    adapter = _BoundedAdapter(timeout=timeout)
    client.session.mount("https://", adapter)
    if ca_bundle:
        client.session.verify = ca_bundle
    return client, adapter


def beams_token(*, user_pk: int) -> dict[str, str]:
    """The token the owner's browser hands Beams to subscribe as this user (Beams' TokenProvider)."""
    client, _ = beams_client()
    return client.generate_token(beams_user_id(user_pk))


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None


class PushChannel(ChannelBase):
    name = "push"

    def configured(self) -> bool:
        return not self.missing()

    def missing(self) -> list[str]:
        return [n for n in ("KAIZEN_BEAMS_INSTANCE_ID", "KAIZEN_BEAMS_SECRET_KEY") if not getattr(settings, n)]

    def send(self, *, message: Message) -> DeliveryResult:
        users = sorted({beams_user_id(pk) for pk in Device.objects.values_list("user_id", flat=True)})
        if not users:
            raise DeliveryError("no device subscribed to push", transient=False)
        client, adapter = beams_client()
        notification = {"title": message.title, "body": message.body, "deep_link": message.url}
        body = {
            "web": {"notification": notification, "data": {"severity": message.severity, "kind": message.kind}},
            "apns": {"aps": {"alert": {"title": message.title, "body": message.body}}},
            "fcm": {"notification": {"title": message.title, "body": message.body}},
        }
        try:
            answer = client.publish_to_users(user_ids=users, publish_body=body)
        except PusherValidationError as exc:
            if getattr(adapter.last, "status", None) == 429:
                raise DeliveryError(f"Beams rate limit: {exc}", transient=True,
                                    retry_after=_retry_after(adapter.last.retry_after)) from exc  # fmt: skip
            raise DeliveryError(f"Beams refused the publish: {exc}", transient=False) from exc
        except (PusherAuthError, PusherMissingInstanceError) as exc:
            raise DeliveryError(f"Beams credentials refused: {exc}", transient=False) from exc
        except (PusherServerError, PusherBadResponseError) as exc:
            raise DeliveryError(f"Beams server error: {exc}", transient=True) from exc
        except PusherError as exc:
            raise DeliveryError(f"Beams: {exc}", transient=False) from exc
        except requests.RequestException as exc:
            raise DeliveryError(f"could not reach Beams: {exc}", transient=True) from exc
        return DeliveryResult(provider_id=str(answer.get("publishId", "")))
