"""Alert channels. A channel is one module; the registry below is one line per channel.

A channel module defines its subscriber fields (a pydantic model), how it is built from the
ChannelContext, and how it sends a batch of alerts (one, or a digest): it returns, or raises
DeliveryError saying whether the failure is temporary, permanent or 'gone'. See base.py.
"""

from __future__ import annotations

from monitor.notify import apprise_channel, console, email, webhook
from monitor.notify.base import Channel, ChannelFields, ChannelType
from monitor.notify.context import ChannelContext

# The registry: adding a channel is its module plus one entry here.
CHANNEL_TYPES: dict[str, ChannelType] = {kind.name: kind for kind in (
    email.CHANNEL,
    webhook.CHANNEL,
    console.CHANNEL,
    apprise_channel.CHANNEL,
)}


def channels(context: ChannelContext) -> dict[str, Channel]:
    """One sender per channel type, sharing the context's clients."""
    return {name: kind.build(context) for name, kind in CHANNEL_TYPES.items()}


__all__ = ["CHANNEL_TYPES", "Channel", "ChannelContext", "ChannelFields", "ChannelType",
           "channels"]
