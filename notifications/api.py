"""The owner's notification API (history, read marks, push devices, the Beams token) and the
product's metrics endpoint. Thin: validate, call one function, answer.

Owner endpoints use the console session of a staff user (the project's default API auth);
metrics use the project's public key, as ingest does. Errors are `{"error", "detail"}` (kaizen_site.api).
"""

import logging

from django.conf import settings
from django.db import transaction
from django.db.models import Prefetch
from django.utils import timezone
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.exceptions import APIException, NotFound, ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from healing.authentication import ProjectKeyAuthentication
from kaizen_site.api import ErrorBody

from .channels import CHANNELS
from .channels.push import beams_token, beams_user_id
from .models import Delivery, Device, Notification
from .preferences import preferences_table, preferences_update, quiet_hours_get
from .product_metrics import MetricKindConflict, MetricPoint, metrics_record
from .serializers import (
    BeamsTokenOut,
    DeviceBody,
    DeviceDeleteBody,
    MarkReadBody,
    MarkReadOut,
    MetricsBody,
    MetricsOut,
    NotificationOut,
    NotificationQuery,
    PreferencesBody,
    PreferencesOut,
)

logger = logging.getLogger("kaizen.notifications")
ERRORS = {400: OpenApiResponse(ErrorBody), 401: OpenApiResponse(ErrorBody), 403: OpenApiResponse(ErrorBody)}


class ChannelNotConfigured(APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    error_code = "not_configured"


def _valid(serializer_class, data) -> dict:
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


class NotificationListView(APIView):
    @extend_schema(parameters=[NotificationQuery], responses={200: NotificationOut(many=True), **ERRORS},
                   summary="The owner's notifications, newest first")  # fmt: skip
    def get(self, request):
        query = _valid(NotificationQuery, request.query_params)
        rows = Notification.objects.prefetch_related(Prefetch("deliveries", queryset=Delivery.objects.order_by("id")))
        if query["unread"]:
            rows = rows.filter(read_at__isnull=True)
        if query.get("before"):
            rows = rows.filter(pk__lt=query["before"])
        rows = rows.order_by("-id")[: query["limit"]]
        return Response(NotificationOut(rows, many=True).data)


class NotificationReadView(APIView):
    @extend_schema(request=MarkReadBody, responses={200: MarkReadOut, **ERRORS}, summary="Mark notifications read")
    def post(self, request):
        body = _valid(MarkReadBody, request.data)
        rows = Notification.objects.filter(read_at__isnull=True)
        if not body["all"]:
            unknown = set(body["ids"]) - set(
                Notification.objects.filter(pk__in=body["ids"]).values_list("pk", flat=True)
            )
            if unknown:
                raise NotFound(f"Unknown notification ids: {sorted(unknown)}.")
            rows = rows.filter(pk__in=body["ids"])
        return Response({"marked": rows.update(read_at=timezone.now())})


class DeviceView(APIView):
    @extend_schema(request=DeviceBody, responses={201: DeviceBody, 200: DeviceBody, **ERRORS},
                   summary="Subscribe this phone or browser to push")  # fmt: skip
    def post(self, request):
        body = _valid(DeviceBody, request.data)
        with transaction.atomic():
            device, created = Device.objects.update_or_create(
                user=request.user, device_id=body["device_id"],
                defaults={"platform": body["platform"], "name": body.get("name", "")},
            )  # fmt: skip
        return Response(DeviceBody(device).data, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)

    @extend_schema(request=DeviceDeleteBody, responses={204: None, 404: OpenApiResponse(ErrorBody), **ERRORS},
                   summary="Unsubscribe a device")  # fmt: skip
    def delete(self, request):
        body = _valid(DeviceDeleteBody, request.data)
        deleted, _ = Device.objects.filter(user=request.user, device_id=body["device_id"]).delete()
        if not deleted:
            raise NotFound("No such device for this owner.")
        return Response(status=status.HTTP_204_NO_CONTENT)


def _preferences_answer() -> dict:
    quiet = quiet_hours_get()
    return {
        "preferences": preferences_table(),
        "quiet_hours": {"enabled": quiet.enabled, "start": quiet.start, "end": quiet.end,
                        "p0_breaks_through": quiet.p0_breaks_through},
        "timezone": settings.KAIZEN_OWNER_TIMEZONE,
        "configured": {name: channel.configured() for name, channel in CHANNELS.items()},
    }  # fmt: skip


class PreferencesView(APIView):
    @extend_schema(responses={200: PreferencesOut, **ERRORS}, summary="Event types × channels, and quiet hours")
    def get(self, request):
        return Response(PreferencesOut(_preferences_answer()).data)

    @extend_schema(request=PreferencesBody, responses={200: PreferencesOut, **ERRORS},
                   summary="Turn event types on or off per channel; set quiet hours")  # fmt: skip
    def patch(self, request):
        body = _valid(PreferencesBody, request.data)
        preferences_update(changes=body.get("preferences", []), quiet=body.get("quiet_hours"),
                           actor=request.user.get_username())  # fmt: skip
        return Response(PreferencesOut(_preferences_answer()).data)


class BeamsTokenView(APIView):
    """Beams' TokenProvider calls this (GET, with `user_id`) from the owner's browser to subscribe."""

    @extend_schema(responses={200: BeamsTokenOut, 503: OpenApiResponse(ErrorBody), **ERRORS},
                   summary="A Beams auth token for the signed-in owner")  # fmt: skip
    def get(self, request):
        if not CHANNELS["push"].configured():
            raise ChannelNotConfigured("Push (Pusher Beams) is not configured.")
        asked = request.query_params.get("user_id")
        if asked and asked != beams_user_id(request.user.pk):
            # Beams asks for the id the browser was told to use; a token for anyone else is refused.
            raise ValidationError({"user_id": "Not the signed-in owner's Beams user id."})
        return Response(beams_token(user_pk=request.user.pk))


class MetricsView(APIView):
    authentication_classes = [ProjectKeyAuthentication]
    permission_classes: list = []

    @extend_schema(request=MetricsBody, responses={201: MetricsOut, **ERRORS},
                   summary="Record the product's counters and gauges (revenue, builds, active users)")  # fmt: skip
    def post(self, request):
        body = _valid(MetricsBody, request.data)
        points = [MetricPoint(name=m["name"], kind=m["kind"], value=m["value"], at=m.get("timestamp"))
                  for m in body["metrics"]]  # fmt: skip
        try:
            answer = metrics_record(project_id=request.auth.project_id, points=points)
        except MetricKindConflict as exc:
            error = ValidationError(str(exc))
            error.error_code = "metric_kind_conflict"
            raise error from exc
        return Response(answer, status=status.HTTP_201_CREATED)
