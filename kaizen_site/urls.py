from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from healing.console import quick_fix
from healing.ingest import sentry_views as sentry_api
from healing.ingest import views as healing_api
from kaizen_site import ops
from research import api as research_api

urlpatterns = [
    # The address `make run` prints opens the Manager's Console rather than a 404.
    path("", RedirectView.as_view(pattern_name="admin:index"), name="home"),
    # Console pages that are not one model's: behind the admin's own login and permission check.
    path("admin/healing/quick-fix/", admin.site.admin_view(quick_fix.quick_fix_view), name="console-quick-fix"),
    path("admin/", admin.site.urls),
    path("api/v1/issues", healing_api.IssueReportView.as_view(), name="issue-report"),
    path("api/v1/", include("flags.urls")),
    path("api/v1/whats-new", research_api.WhatsNewView.as_view(), name="whats-new"),
    path("api/v1/", include("notifications.urls")),
    path("api/<int:project_id>/envelope/", sentry_api.SentryEnvelopeView.as_view(), name="sentry-envelope"),
    path("api/<int:project_id>/store/", sentry_api.SentryStoreView.as_view(), name="sentry-store"),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("healthz", ops.healthz, name="healthz"),
    path("metrics", ops.metrics, name="metrics"),
    path("demo/", include("healing.demo.views")),  # 404 unless KAIZEN_DEMO is on
]
