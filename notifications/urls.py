"""Included at api/v1/; no trailing slashes, like the rest of the API."""

from django.urls import path

from . import api

urlpatterns = [
    path("notifications", api.NotificationListView.as_view(), name="notifications"),
    path("notifications/read", api.NotificationReadView.as_view(), name="notifications-read"),
    path("notifications/devices", api.DeviceView.as_view(), name="notification-devices"),
    path("notifications/preferences", api.PreferencesView.as_view(), name="notification-preferences"),
    path("notifications/beams-token", api.BeamsTokenView.as_view(), name="notifications-beams-token"),
    path("metrics", api.MetricsView.as_view(), name="product-metrics"),
]
