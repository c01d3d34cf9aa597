"""Included at api/v1/; no trailing slashes, like the rest of the API."""

from django.urls import path

from flags import api

urlpatterns = [
    path("flags", api.FlagsForUserView.as_view(), name="flags-for-user"),
    path("flags/evaluate", api.FlagsEvaluateView.as_view(), name="flags-evaluate"),
    path("flags/<str:flag_key>/kill", api.FlagKillView.as_view(), name="flag-kill"),
    path("flags/<str:flag_key>", api.FlagDetailView.as_view(), name="flag-detail"),
]
