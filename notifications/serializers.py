"""Request and answer shapes of the notification and metrics APIs."""

from decimal import Decimal

from rest_framework import serializers

from .models import Delivery, Device, Notification


class DeliveryOut(serializers.ModelSerializer):
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
