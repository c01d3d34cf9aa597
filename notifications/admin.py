"""The console's notification pages: history with each delivery, preferences, quiet hours, devices,
and the channel page (configured or not, with "send a test notification" per channel)."""

from django.conf import settings
from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponseRedirect
from django.shortcuts import render
from django.urls import path, reverse
from django.views.decorators.http import require_POST

from .channels import CHANNELS
from .channels.push import beams_user_id
from .channels.push_browser import beams_installed
from .deliveries import test_notification_send
from .models import Channel, Delivery, DeliveryStatus, Device, Notification, Preference, QuietHours


class DeliveryInline(admin.TabularInline):
    model = Delivery
    fk_name = "notification"
    extra = 0
    can_delete = False
    fields = ["channel", "status", "hold", "attempts", "provider_id", "error", "sent_at", "fallback_from"]
    readonly_fields = fields


@admin.register(Notification)
class NotificationAdmin(admin.ModelAdmin):
    list_display = ["created_at", "severity", "kind", "title", "target", "read_at"]
    list_filter = ["severity", "kind", ("read_at", admin.EmptyFieldListFilter)]
    search_fields = ["title", "body", "target", "dedupe_key"]
    readonly_fields = ["kind", "severity", "target", "title", "body", "dedupe_key", "detail", "duplicate_of",
                       "created_at", "routed_at", "read_at"]  # fmt: skip
    inlines = [DeliveryInline]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # alerts come from Kaizen itself, through notifications.owner_alert

    def get_urls(self):
        own = [
            path("channels/", self.admin_site.admin_view(self.channels_view), name="notifications_channels"),
            path("phone/", self.admin_site.admin_view(self.phone_view), name="notifications_phone"),
            path(
                "channels/<str:channel>/test/",
                self.admin_site.admin_view(require_POST(self.channel_test_view)),
                name="notifications_channel_test",
            ),
        ]
        return own + super().get_urls()

    def channels_view(self, request: HttpRequest):
        rows = [
            {
                "name": name,
                "label": Channel(name).label,
                "configured": channel.configured(),
                "missing": channel.missing(),
                "last": Delivery.objects.filter(channel=name, sent_at__isnull=False).order_by("-sent_at").first(),
            }
            for name, channel in CHANNELS.items()
        ]
        context = {**self.admin_site.each_context(request), "title": "Notification channels", "rows": rows,
                   "opts": self.model._meta}  # fmt: skip
        return render(request, "admin/notifications/channels.html", context)

    def phone_view(self, request: HttpRequest):
        """Push on this phone or browser: Beams' web SDK subscribes it through the console's
        service worker; without Beams configured (or its npm package), the page says push is off."""
        context = {
            **self.admin_site.each_context(request),
            "title": "Push on this device",
            "opts": self.model._meta,
            "push_configured": CHANNELS["push"].configured(),
            "missing": CHANNELS["push"].missing(),
            "sdk_installed": beams_installed(),
            "instance_id": settings.KAIZEN_BEAMS_INSTANCE_ID,
            "beams_user_id": beams_user_id(request.user.pk),
            "devices": Device.objects.filter(user=request.user).order_by("-id"),
        }
        return render(request, "admin/notifications/phone.html", context)

    def channel_test_view(self, request: HttpRequest, channel: str):
        if not request.user.has_perm("notifications.change_notification"):
            messages.error(request, "You may not send test notifications.")
        elif channel not in CHANNELS:
            messages.error(request, f"Unknown channel {channel!r}.")
        elif not CHANNELS[channel].configured():
            messages.warning(request, f"{channel} is not configured: set {', '.join(CHANNELS[channel].missing())}.")
        else:
            delivery = test_notification_send(channel=channel, actor=request.user.get_username())
            if delivery.status == DeliveryStatus.SENT:
                messages.success(request, f"Test notification sent on {channel} ({delivery.provider_id or 'no id'}).")
            else:
                messages.error(request, f"Test notification on {channel}: {delivery.status}: {delivery.error}")
        return HttpResponseRedirect(reverse("admin:notifications_channels"))


@admin.register(Delivery)
class DeliveryAdmin(admin.ModelAdmin):
    list_display = ["created_at", "channel", "status", "hold", "attempts", "notification", "error"]
    list_filter = ["channel", "status", "hold"]
    readonly_fields = [f.name for f in Delivery._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(Preference)
class PreferenceAdmin(admin.ModelAdmin):
    list_display = ["kind", "channel", "enabled"]
    list_editable = ["enabled"]
    list_filter = ["channel", "enabled"]


@admin.register(QuietHours)
class QuietHoursAdmin(admin.ModelAdmin):
    list_display = ["__str__", "enabled", "start", "end", "p0_breaks_through"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return not QuietHours.objects.exists()  # one owner, one setting


@admin.register(Device)
class DeviceAdmin(admin.ModelAdmin):
    list_display = ["name", "device_id", "platform", "user", "created_at"]
