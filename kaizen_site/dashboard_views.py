"""The dashboard alone, for its refresh script: the same fragment the console's index renders."""

from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from kaizen_site.dashboard import dashboard_context


@never_cache
@require_GET
def dashboard_fragment(request: HttpRequest) -> HttpResponse:
    """Wrapped in the admin site's `admin_view` (urls.py): staff only, like every console page."""
    return TemplateResponse(request, "admin/kaizen/dashboard.html", dashboard_context())
