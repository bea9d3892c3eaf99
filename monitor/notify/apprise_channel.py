"""The Apprise channel: Slack, Teams, Telegram, Discord, Matrix, Mattermost, ntfy, Pushover, ...

A subscriber names one Apprise URL, best through the environment (`url_env: SLACK_URL`: the
URL carries the service's token, so it stays out of the file, the database and the logs), or
inline (`apprise: "ntfy://ntfy.example.org/desk"`). Each service gets the alert the way it
can show it: markdown where the service takes markdown, plain text otherwise, within the
service's own title and message limits (snippets cut on a word boundary, a digest's tail
summarised). The delivery id ends every message, the same on every retry.

Apprise reports failure as a result, not an exception: a failed send is a temporary failure
(retried on the outbox schedule, then dead-lettered); a URL Apprise does not recognise, or one
whose host the SSRF policy refuses, is permanent. The policy applies to services whose host
the subscriber chooses (json://, form://, ntfy://, mmost://, ...); the others (slack://,
tgram://, ...) always talk to their vendor's public API.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import model_validator

from monitor.errors import BlockedAddressError, DeliveryError
from monitor.models import Alert, mark_spans
from monitor.netpolicy import GuardedResolver
from monitor.notify.base import ChannelFields, ChannelType, fields_of
from monitor.notify.render import safe_link
from monitor.redact import masked_text

if TYPE_CHECKING:
    from monitor.config import SubscriberSpec
    from monitor.notify.context import ChannelContext

_SCHEME = re.compile(r"^([a-z][a-z0-9+.-]*)://", re.IGNORECASE)
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+!|<>~])")
MIN_SNIPPET = 60                  # characters of snippet kept before alerts are dropped instead


class AppriseFields(ChannelFields):
    apprise: str | None = None       # the URL itself (it holds a token: prefer url_env)
    url_env: str | None = None       # NAME of the environment variable holding the URL

    @model_validator(mode="after")
    def _one_source(self) -> AppriseFields:
        if (self.apprise is None) == (self.url_env is None):
            raise ValueError("give exactly one of apprise (the URL) or url_env (the NAME of "
                             "the environment variable holding it)")
        if self.apprise is not None and not _SCHEME.match(self.apprise):
            raise ValueError("apprise must be an Apprise URL such as slack://... or "
                             "ntfy://host/topic")
        return self

    def url(self) -> str | None:
        return self.apprise if self.apprise is not None else os.environ.get(self.url_env or "")

    def target(self) -> str:
        if self.url_env:
            return f"apprise:${self.url_env}"
        url = self.apprise or ""
        scheme = _SCHEME.match(url)
        digest = hashlib.sha256(url.encode()).hexdigest()[:12]
        return f"apprise:{scheme.group(1).lower() if scheme else '?'}://#{digest}"

    def problems(self) -> list[str]:
        url = self.url()
        if url is None:
            return [f"environment variable {self.url_env} is not set"]
        if plugin_for(url) is None:
            scheme = _SCHEME.match(url)
            return [f"Apprise does not recognise the URL ({scheme.group(1) if scheme else 'no'}"
                    f":// scheme, or its tokens are malformed)"]
        return []


def plugin_for(url: str) -> Any:
    """Apprise's service object for a URL, or None (nothing is sent)."""
    import apprise
    return apprise.Apprise.instantiate(url, suppress_exceptions=True)


def chosen_host(plugin: Any) -> str | None:
    """The host a subscriber picked for a self-hosted service, or None for a vendor API."""
    if "host" not in getattr(type(plugin), "template_tokens", {}):
        return None
    host = getattr(plugin, "host", None)
    return str(host) if host else None


# --- the message, shaped for one service ------------------------------------------------------

@dataclass(frozen=True)
class Shape:
    markdown: bool
    body_max: int
    title_max: int              # 0: the service has no title; it opens the body instead


def shape_of(plugin: Any) -> Shape:
    from apprise import NotifyFormat
    formats = plugin.notify_format
    formats = formats if isinstance(formats, (tuple, list)) else (formats,)
    return Shape(NotifyFormat.MARKDOWN in formats, int(plugin.body_maxlen or 32768),
                 int(plugin.title_maxlen or 0))


def compose(alerts: list[Alert], delivery_id: str, shape: Shape) -> tuple[str, str]:
    """(title, body) for one service: the whole explanation if it fits, else shorter snippets,
    then fewer alerts ("... and N more"), never over the service's limits."""
    title = _title(alerts)
    opening = ""
    if shape.title_max == 0:
        opening, title = (f"**{_md(title)}**" if shape.markdown else title) + "\n\n", ""
    else:
        title = cut(title, shape.title_max)
    footer = f"\n\nAlert id {delivery_id}"
    snippet_max = max((len(a.snippet) for a in alerts), default=0)
    shown = len(alerts)
    while True:
        sections = [_section(a, shape.markdown, snippet_max) for a in alerts[:shown]]
        if shown < len(alerts):
            sections.append(f"… and {len(alerts) - shown} more alert(s)")
        body = opening + "\n\n".join(sections) + footer
        if len(body) <= shape.body_max:
            return title, body
        if snippet_max > MIN_SNIPPET:
            snippet_max = max(MIN_SNIPPET, snippet_max - (len(body) - shape.body_max) - 1)
        elif shown > 1:
            shown -= 1
        else:
            return title, cut(body, shape.body_max - len(footer)) + footer


def cut(text: str, limit: int) -> str:
    """At most `limit` characters, cut on a word boundary with an ellipsis."""
    if len(text) <= limit:
        return text
    if limit <= 1:
        return text[:max(limit, 0)]
    head = text[:limit - 1]
    space = head.rfind(" ")
    if space > limit // 2:
        head = head[:space]
    return head.rstrip() + "…"


def _title(alerts: list[Alert]) -> str:
    if len(alerts) == 1:
        return f"{alerts[0].rule_title}: {alerts[0].article_title}"
    rules = sorted({a.rule_title for a in alerts})
    return f"{len(alerts)} news alerts: {', '.join(rules)}"


def _md(text: str) -> str:
    return _MARKDOWN_SPECIAL.sub(r"\\\1", text)


def _marked(alert: Alert, markdown: bool, limit: int) -> str:
    snippet, marks = alert.snippet, list(alert.marks)
    if len(snippet) > limit:
        snippet = cut(snippet, limit)
        marks = [(s, e) for s, e in marks if e <= len(snippet) - 1]
    return mark_spans(snippet, marks, _md) if markdown else snippet


def _section(alert: Alert, markdown: bool, snippet_max: int) -> str:
    link = safe_link(alert.article_url)
    why = f"Why: {', '.join(alert.terms)}"
    if alert.actors:
        why += f" (actors: {', '.join(alert.actors)})"
    published = alert.published.strftime(", %Y-%m-%d %H:%M UTC") if alert.published else ""
    lines: list[str]
    if markdown:
        head = f"**[{_md(alert.article_title)}]({link})**" if link else \
            f"**{_md(alert.article_title)}**"
        lines = [head, f"_{_md(alert.rule_title)}_ · {_md(alert.source_id)}{published}",
                 _md(why)]
        lines += [f"- {_md(reason)}" for reason in alert.reasons]
        lines.append("> " + _marked(alert, True, snippet_max))
        others = [f"[{_md(o.get('source', ''))}]({safe_link(o.get('url', ''))})"
                  if safe_link(o.get("url", "")) else _md(o.get("source", ""))
                  for o in alert.also_reported_by]
    else:
        lines = [alert.article_title]
        if link:
            lines.append(link)
        lines += [f"{alert.rule_title} · {alert.source_id}{published}", why]
        lines += [f"- {reason}" for reason in alert.reasons]
        lines.append("“" + _marked(alert, False, snippet_max) + "”")
        others = [" ".join(filter(None, (o.get("source", ""), safe_link(o.get("url", "")))))
                  for o in alert.also_reported_by]
    if others:
        lines.append("Also reported by: " + ", ".join(others))
    return "\n".join(lines)


# --- sending ----------------------------------------------------------------------------------

class AppriseChannel:
    def __init__(self, allow_private: bool, timeout: float) -> None:
        self.allow_private = allow_private
        self.timeout = timeout

    async def send(self, subscriber: SubscriberSpec, alerts: list[Alert],
                   delivery_id: str) -> None:
        fields = fields_of(subscriber, AppriseFields)
        url = fields.url()
        if url is None:
            raise DeliveryError(f"environment variable {fields.url_env} is not set")
        plugin = plugin_for(url)
        if plugin is None:
            raise DeliveryError(f"Apprise does not recognise the URL of {fields.target()}",
                                permanent=True)
        host = chosen_host(plugin)
        if host and not self.allow_private:
            await self._check_host(host)
        shape = shape_of(plugin)
        title, body = compose(alerts, delivery_id, shape)
        await asyncio.to_thread(self._notify, plugin, title, body, shape.markdown)

    async def _check_host(self, host: str) -> None:
        """The network policy's own resolver, on every address of the host (Apprise then
        connects by itself: the check cannot sit in its connection layer)."""
        resolver = GuardedResolver(self.allow_private)
        try:
            await resolver.resolve(host, 0, socket.AF_UNSPEC)
        except BlockedAddressError as exc:
            raise DeliveryError(str(exc), permanent=True) from None
        except OSError as exc:
            raise DeliveryError(f"{host}: cannot resolve ({exc})") from None
        finally:
            await resolver.close()

    def _notify(self, plugin: Any, title: str, body: str, markdown: bool) -> None:
        import apprise
        sender = apprise.Apprise()
        sender.add(plugin)
        result = sender.notify(body=body, title=title,
                               body_format=apprise.NotifyFormat.MARKDOWN if markdown
                               else apprise.NotifyFormat.TEXT, timeout=self.timeout)
        if not result:
            said = [entry.message for entry in result.logs()
                    if entry.level in ("WARNING", "ERROR")]
            service = getattr(plugin, "service_name", "the service")
            reason = "; ".join(said[-2:]) or "no reason given"
            raise DeliveryError(f"Apprise ({service}): {masked_text(reason)}")


def _build(context: ChannelContext) -> AppriseChannel:
    return AppriseChannel(context.allow_private, context.timeout)


CHANNEL = ChannelType("apprise", AppriseFields, ("apprise", "url_env"), _build,
                      "Slack, Teams, Telegram, Discord, Matrix, ntfy, ... through an Apprise URL")
