from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from healing import session_views
from healing.console import end_users, quick_fix
from healing.ingest import sentry_views as sentry_api
from healing.ingest import views as healing_api
from healing.stream import sse
from kaizen_site import dashboard_views, ops
from research import api as research_api

urlpatterns = [
    # Problem reports first: by far the busiest requests, resolved without trying the others.
    path("api/v1/issues", healing_api.IssueReportView.as_view(), name="issue-report"),
    path("api/<int:project_id>/envelope/", sentry_api.SentryEnvelopeView.as_view(), name="sentry-envelope"),
    path("api/<int:project_id>/store/", sentry_api.SentryStoreView.as_view(), name="sentry-store"),
    # The address `make run` prints opens the Manager's Console rather than a 404.
    path("", RedirectView.as_view(pattern_name="admin:index"), name="home"),
    # Console pages that are not one model's: behind the admin's own login and permission check.
    path("admin/healing/quick-fix/", admin.site.admin_view(quick_fix.quick_fix_view), name="console-quick-fix"),
    path("admin/healing/end-users/", admin.site.admin_view(end_users.end_users_view), name="console-end-users"),
    # The dashboard's refresh, behind the console's own login (before the admin's catch-all URLs).
    path("admin/dashboard/", admin.site.admin_view(dashboard_views.dashboard_fragment), name="admin-dashboard"),
    # The console's web-app manifest and push service worker (scope /admin/), then the console.
    path("admin/", include("notifications.console_urls")),
    path("admin/", admin.site.urls),
    path("api/v1/sessions", session_views.SessionCreateView.as_view(), name="session-create"),
    path("api/v1/sessions/<str:session_id>/token", session_views.SessionTokenView.as_view(), name="session-token"),
    path("api/v1/sessions/<str:session_id>/reply", session_views.SessionReplyView.as_view(), name="session-reply"),
    path(
        "api/v1/sessions/<str:session_id>/recording",
        session_views.SessionRecordingView.as_view(),
        name="session-recording",
    ),  # fmt: skip
    path(
        "api/v1/sessions/<str:session_id>/commands", session_views.SessionCommandView.as_view(), name="session-commands"
    ),  # fmt: skip
    # Server-Sent Events: served by the ASGI process (the Procfile's `stream`).
    path("api/v1/sessions/<str:session_id>/events", sse.session_events, name="session-events"),
    path("api/v1/", include("flags.urls")),
    path("api/v1/whats-new", research_api.WhatsNewView.as_view(), name="whats-new"),
    path("api/v1/", include("notifications.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("healthz", ops.healthz, name="healthz"),
    path("metrics", ops.metrics, name="metrics"),
    path("demo/", include("healing.demo.views")),  # 404 unless KAIZEN_DEMO is on
]
