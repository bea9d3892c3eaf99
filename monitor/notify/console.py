"""The console channel: alerts printed to a stream (the demo, and configs without e-mail)."""

from __future__ import annotations

from typing import TextIO

from monitor.config import SubscriberSpec
from monitor.models import Alert
from monitor.notify.render import Templates


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
