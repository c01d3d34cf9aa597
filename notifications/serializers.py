"""Request and answer shapes of the notification and metrics APIs."""

from decimal import Decimal

from rest_framework import serializers

from .models import Channel, Delivery, Device, EventType, Notification


class DeliveryOut(serializers.ModelSerializer):
    # A string, not a schema enum: other APIs name an enum "status" too, and the schema would collide.
    status = serializers.CharField(help_text="queued, sending, sent, failed, suppressed, held or summarised")

    class Meta:
        model = Delivery
        fields = ["channel", "status", "attempts", "sent_at", "error"]


class NotificationOut(serializers.ModelSerializer):
    deliveries = DeliveryOut(many=True, read_only=True)
    read = serializers.SerializerMethodField()

    class Meta:
        model = Notification
        fields = ["id", "kind", "severity", "title", "body", "target", "created_at", "read", "read_at", "deliveries"]

    def get_read(self, obj: Notification) -> bool:
        return obj.read_at is not None


class NotificationQuery(serializers.Serializer):
    unread = serializers.BooleanField(required=False, default=False)
    before = serializers.IntegerField(required=False, min_value=1, help_text="Page: notifications older than this id.")
    limit = serializers.IntegerField(required=False, min_value=1, max_value=200, default=50)


class MarkReadBody(serializers.Serializer):
    ids = serializers.ListField(child=serializers.IntegerField(min_value=1), required=False, max_length=1000)
    all = serializers.BooleanField(required=False, default=False)

    def validate(self, attrs: dict) -> dict:
        if not attrs.get("all") and not attrs.get("ids"):
            raise serializers.ValidationError("Give `ids` or `all: true`.")
        return attrs


class MarkReadOut(serializers.Serializer):
    marked = serializers.IntegerField()


class DeviceBody(serializers.ModelSerializer):
    class Meta:
        model = Device
        fields = ["device_id", "platform", "name"]
        extra_kwargs = {"device_id": {"validators": []}}


class DeviceDeleteBody(serializers.Serializer):
    device_id = serializers.CharField(max_length=200)


class BeamsTokenOut(serializers.Serializer):
    token = serializers.CharField()


class MetricIn(serializers.Serializer):
    name = serializers.RegexField(r"^[a-z][a-z0-9_.]{0,63}$", help_text="e.g. revenue, builds, active_users")
    kind = serializers.ChoiceField(choices=["counter", "gauge"])
    value = serializers.DecimalField(max_digits=20, decimal_places=4, min_value=Decimal("-1e15"))
    timestamp = serializers.DateTimeField(required=False)

    def validate(self, attrs: dict) -> dict:
        if attrs["kind"] == "counter" and attrs["value"] < 0:
            raise serializers.ValidationError({"value": "A counter only grows: send a gauge for a value that falls."})
        return attrs


class MetricsBody(serializers.Serializer):
    metrics = MetricIn(many=True, allow_empty=False, max_length=500)


class MetricsOut(serializers.Serializer):
    recorded = serializers.IntegerField()
    milestones = serializers.ListField(child=serializers.CharField())


class PreferenceItem(serializers.Serializer):
    kind = serializers.ChoiceField(choices=[k for k in EventType.values if k != EventType.SUMMARY])
    channel = serializers.ChoiceField(choices=Channel.values)
    enabled = serializers.BooleanField()


class QuietHoursBody(serializers.Serializer):
    enabled = serializers.BooleanField(required=False)
    start = serializers.TimeField(required=False)
    end = serializers.TimeField(required=False)
    p0_breaks_through = serializers.BooleanField(required=False)


class PreferencesBody(serializers.Serializer):
    preferences = PreferenceItem(many=True, required=False, max_length=200)
    quiet_hours = QuietHoursBody(required=False)

    def validate(self, attrs: dict) -> dict:
        if not attrs.get("preferences") and not attrs.get("quiet_hours"):
            raise serializers.ValidationError("Give `preferences` and/or `quiet_hours`.")
        return attrs


class PreferencesOut(serializers.Serializer):
    preferences = PreferenceItem(many=True)
    quiet_hours = QuietHoursBody()
    timezone = serializers.CharField()
    configured = serializers.DictField(child=serializers.BooleanField())
