from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps


class KaizenSiteConfig(AppConfig):
    """The project package as an app: it owns what every app shares, such as the LLM call log."""

    name = "kaizen_site"
    label = "kaizen_site"
    verbose_name = "Kaizen"
    default = True

    def ready(self) -> None:
        from django.contrib.auth.signals import user_logged_in

        from kaizen_site.security import checks  # noqa: F401 - registers the security checks

        user_logged_in.connect(_session_record, dispatch_uid="kaizen_admin_session")


def _session_record(sender, request, user, **kwargs) -> None:
    """Every sign-in becomes an AdminSession row (a request without a session, e.g. a test's
    login() on a bare request, has nothing to record)."""
    from kaizen_site.security.sessions import admin_session_open

    if request is not None and hasattr(request, "session"):
        admin_session_open(request=request, user=user)


class OwnerAdminConfig(admin_apps.AdminConfig):
    """django.contrib.admin whose `admin.site` is the owner-only, two-factor OwnerAdminSite."""

    default = False
    default_site = "kaizen_site.admin_site.OwnerAdminSite"
