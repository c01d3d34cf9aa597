"""One module per channel on the shared base; `CHANNELS` is the registry the router and admin read."""

from .base import ChannelBase, DeliveryError, DeliveryResult, Message
from .chat import DiscordChannel, SlackChannel
from .email import EmailChannel
from .push import PushChannel
from .sms import SmsChannel

CHANNELS: dict[str, ChannelBase] = {
    channel.name: channel for channel in (PushChannel(), SmsChannel(), EmailChannel(), SlackChannel(), DiscordChannel())
}

__all__ = ["CHANNELS", "ChannelBase", "DeliveryError", "DeliveryResult", "Message"]
