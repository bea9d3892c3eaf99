"""What a channel is: its subscriber fields, how it is built, how it sends.

A channel module defines a `ChannelFields` model (the keys a subscriber entry uses for it,
validated like every file value) and a `CHANNEL = ChannelType(...)`; the registry in
monitor/notify/__init__.py lists the modules. The subscriber schema, `check`, the outbox and
`news-monitor channels` learn about a channel from there, and from nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Protocol

from pydantic import BaseModel, ConfigDict

from monitor.models import Alert

if TYPE_CHECKING:
    from monitor.config import SubscriberSpec
    from monitor.notify.context import ChannelContext


class ChannelFields(BaseModel):
    """A channel's own keys in a subscriber entry. Unknown keys are typos."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

    def target(self) -> str:
        """The endpoint as stored with each delivery: no secret may appear in it."""
        raise NotImplementedError

    def problems(self) -> list[str]:
        """What would make every delivery fail, found by `check` before the first one."""
        return []


class Channel(Protocol):
    async def send(self, subscriber: SubscriberSpec, alerts: list[Alert],
                   delivery_id: str) -> None: ...


@dataclass(frozen=True)
class ChannelType:
    name: str                                   # as stored with each delivery
    fields: type[ChannelFields]
    keys: tuple[str, ...]                       # subscriber keys that pick this channel
    build: Callable[[ChannelContext], Channel]
    summary: str                                # one line for `news-monitor channels`


def fields_of(subscriber: SubscriberSpec, kind: type[Any]) -> Any:
    """The subscriber's channel fields, checked to be the kind a channel expects."""
    fields = subscriber.settings
    if not isinstance(fields, kind):
        raise TypeError(f"subscriber '{subscriber.name}' is a {subscriber.channel} subscriber")
    return fields
