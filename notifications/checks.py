"""`manage.py check` says which notification channels are off, rather than failing at the first alert."""

from django.core.checks import Info, Tags, register

from .channels import CHANNELS


@register(Tags.compatibility)
def notification_channels(app_configs, **kwargs):
    return [
        Info(f"Notifications: {name} is not configured (set {', '.join(channel.missing())}).", id="kaizen.I101")
        for name, channel in CHANNELS.items()
        if not channel.configured()
    ]
