"""`{% kaizen_dashboard %}`: the dashboard at the top of the console's index, and alone as the
fragment its refresh script fetches."""

from django import template

from kaizen_site.dashboard import dashboard_context

register = template.Library()


@register.inclusion_tag("admin/kaizen/dashboard.html")
def kaizen_dashboard() -> dict:
    return dashboard_context()
