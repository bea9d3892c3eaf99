"""Alert channels. Each channel is one module; CHANNELS maps a subscriber's channel to it.

A channel takes a subscriber and a batch of alerts (one, or a digest) and either returns or
raises DeliveryError saying whether the failure is temporary, permanent or 'gone'.
"""

from __future__ import annotations

from typing import Protocol

from monitor.config import SubscriberSpec
from monitor.models import Alert


class Channel(Protocol):
    async def send(self, subscriber: SubscriberSpec, alerts: list[Alert],
                   delivery_id: str) -> None: ...


def channels(context: "ChannelContext") -> dict[str, Channel]:
    """The registry: a new channel is one new module and one line here."""
    from monitor.notify.console import ConsoleChannel
    from monitor.notify.email import EmailChannel
    from monitor.notify.webhook import WebhookChannel
    return {"email": EmailChannel(context.smtp, context.templates),
            "webhook": WebhookChannel(context.http, context.templates, context.timeout),
            "console": ConsoleChannel(context.out, context.templates)}


from monitor.notify.context import ChannelContext  # noqa: E402

__all__ = ["Channel", "ChannelContext", "channels"]
