from django.contrib import admin
from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from healing import api as healing_api

from . import ops

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/issues", healing_api.IssueReportView.as_view(), name="issue-report"),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("healthz", ops.healthz, name="healthz"),
    path("metrics", ops.metrics, name="metrics"),
]
