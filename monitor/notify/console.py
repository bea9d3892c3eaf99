"""The console channel: alerts printed to a stream (the demo, and configs without e-mail)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, TextIO

from monitor.models import Alert
from monitor.notify.base import ChannelFields, ChannelType
from monitor.notify.render import Templates

if TYPE_CHECKING:
    from monitor.config import SubscriberSpec
    from monitor.notify.context import ChannelContext


class ConsoleFields(ChannelFields):
    console: Literal[True]

    def target(self) -> str:
        return "stdout"


class ConsoleChannel:
    def __init__(self, out: TextIO, templates: Templates) -> None:
        self.out = out
        self.templates = templates

    async def send(self, subscriber: SubscriberSpec, alerts: list[Alert],
                   delivery_id: str) -> None:
        text = self.templates.render("console.txt.j2", alerts, delivery_id=delivery_id,
                                     subscriber=subscriber.name)
        self.out.write(text)
        self.out.flush()


def _build(context: ChannelContext) -> ConsoleChannel:
    return ConsoleChannel(context.out, context.templates)


CHANNEL = ChannelType("console", ConsoleFields, ("console",), _build,
                      "alerts printed on standard output (the demo, trials)")
