"""Start-up checks for research: a capability without credentials is reported as off."""

from django.conf import settings
from django.core.checks import Info, Tags, register


@register(Tags.compatibility)
def research_settings(app_configs, **kwargs):
    problems = []
    if not (settings.REDDIT_CLIENT_ID and settings.REDDIT_CLIENT_SECRET):
        problems.append(
            Info(
                "Reddit sources off: REDDIT_CLIENT_ID and REDDIT_CLIENT_SECRET are not set.",
                hint="Create a 'script' app at https://www.reddit.com/prefs/apps (read-only use).",
                id="research.I001",
            )
        )
    if not settings.ANTHROPIC_API_KEY:
        problems.append(
            Info(
                "Proposal analysis by Claude off: proposals are scored by the deterministic heuristic.",
                id="research.I002",
            )
        )
    return problems
