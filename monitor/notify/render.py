"""Alert text from Jinja2 templates in a sandbox; admins may override any of them.

Article text comes from strangers: the HTML template autoescapes it, links are only ever
http(s), and nothing in a title can reach an e-mail header (see email.py).
"""

from __future__ import annotations

import json
from dataclasses import fields
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from jinja2 import ChoiceLoader, FileSystemLoader, PackageLoader, StrictUndefined, select_autoescape
from jinja2.sandbox import SandboxedEnvironment
from markupsafe import Markup, escape

from monitor.models import Alert, mark_spans


def safe_link(url: str) -> str:
    """The URL if it is http(s), else an empty string (no javascript: or data: links)."""
    return url if urlsplit(url).scheme.lower() in ("http", "https") else ""


def marked_html(snippet: str, marks: list[tuple[int, int]]) -> Markup:
    """The snippet escaped, with each hit in <mark>."""
    return Markup(mark_spans(snippet, marks, lambda text: str(escape(text)), "<mark>",
                             "</mark>"))


def marked_text(snippet: str, marks: list[tuple[int, int]]) -> str:
    return mark_spans(snippet, marks)


def alert_dict(alert: Alert) -> dict[str, Any]:
    """The JSON-ready form of an alert (the webhook payload's `data`, and the outbox row)."""
    # Shallow: the lists are copied, their items (strings, mark pairs, the outlets' small
    # dicts, never changed afterwards) shared. dataclasses.asdict deep-copies every one of
    # them, which was most of the cost of queueing an alert.
    data = {f.name: getattr(alert, f.name) for f in fields(alert)}
    data.update({key: list(value) for key, value in data.items() if isinstance(value, list)})
    for key in ("published", "created_at"):
        value = data.get(key)
        data[key] = value.isoformat() if isinstance(value, datetime) else None
    data["marks"] = [list(mark) for mark in alert.marks]
    return data


def alert_from(data: dict[str, Any]) -> Alert:
    values = dict(data)
    for key in ("published", "created_at"):
        values[key] = datetime.fromisoformat(values[key]) if values.get(key) else None
    values["marks"] = [tuple(mark) for mark in values.get("marks", [])]
    return Alert(**values)


class Templates:
    """The template set: an admin's directory first, then the shipped defaults."""

    def __init__(self, override: Path | None = None) -> None:
        loaders: list[Any] = [FileSystemLoader(str(override))] if override else []
        loaders.append(PackageLoader("monitor", "templates"))
        self.env = SandboxedEnvironment(loader=ChoiceLoader(loaders), undefined=StrictUndefined,
                                        autoescape=select_autoescape(["html", "html.j2"]),
                                        trim_blocks=True, lstrip_blocks=True)
        self.env.filters["safe_link"] = safe_link
        self.env.filters["marked_html"] = lambda a: marked_html(a.snippet, a.marks)
        self.env.filters["marked_text"] = lambda a: marked_text(a.snippet, a.marks)

    def render(self, name: str, alerts: list[Alert], **extra: Any) -> str:
        return self.env.get_template(name).render(alerts=alerts, alert=alerts[0], **extra)

    def webhook_body(self, alerts: list[Alert], delivery_id: str, now: datetime) -> bytes:
        """Standard Webhooks payload: {type, timestamp, data}."""
        if len(alerts) == 1:
            payload = {"type": "alert.matched", "timestamp": now.isoformat(),
                       "data": alert_dict(alerts[0])}
        else:
            payload = {"type": "alert.digest", "timestamp": now.isoformat(),
                       "data": {"delivery_id": delivery_id,
                                "alerts": [alert_dict(a) for a in alerts]}}
        return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
