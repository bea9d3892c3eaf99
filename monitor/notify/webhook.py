"""The webhook channel: a JSON POST signed as Standard Webhooks says.

Headers: webhook-id (the delivery id, the same on every retry: receivers drop duplicates by
it), webhook-timestamp (Unix seconds), webhook-signature ("v1," + base64 HMAC-SHA256 of
"id.timestamp.body" under the secret given as "whsec_" + base64). Only 2xx is success;
redirects are not followed; 410 Gone switches the endpoint off; Retry-After is honoured.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
from datetime import datetime, timezone
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import httpx
from pydantic import field_validator

from monitor.errors import BlockedAddressError, DeliveryError
from monitor.fetch import retry_after_seconds
from monitor.redact import masked_text, masked_url
from monitor.models import Alert
from monitor.notify.base import ChannelFields, ChannelType, fields_of
from monitor.notify.render import Templates

if TYPE_CHECKING:
    from monitor.config import SubscriberSpec
    from monitor.notify.context import ChannelContext


def secret_key(secret: str) -> bytes:
    """The HMAC key of a Standard Webhooks secret ("whsec_" prefix optional).

    Raises ValueError naming the problem (never echoing the secret) when it is not base64.
    """
    try:
        key = base64.b64decode(secret.strip().removeprefix("whsec_"), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("the webhook secret is not valid base64 (expected 'whsec_' followed "
                         "by base64, as Standard Webhooks secrets are)") from None
    if not key:
        raise ValueError("the webhook secret is empty")
    return key


def check_url(url: str) -> str | None:
    """Why httpx cannot send to this URL, or None when it can."""
    try:
        _ = urlsplit(url).port         # urlsplit refuses a broken IPv6 host or port
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError) as exc:
        return f"not a usable URL: {exc}"
    if parsed.scheme not in ("http", "https") or not parsed.host:
        return "must be an http:// or https:// URL with a host"
    return None


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def verify(secret: str, headers: dict[str, str], body: bytes, now: int,
           tolerance: int = 300) -> bool:
    """What a receiver does: check the timestamp window, then any of the v1 signatures."""
    message_id, stamp = headers["webhook-id"], headers["webhook-timestamp"]
    if not stamp.isdigit() or abs(now - int(stamp)) > tolerance:
        return False
    expected = sign(secret, message_id, int(stamp), body)
    return any(hmac.compare_digest(expected, candidate)
               for candidate in headers["webhook-signature"].split())


class WebhookFields(ChannelFields):
    webhook: str
    secret_env: str | None = None            # NAME of the variable holding "whsec_..."

    @field_validator("webhook")
    @classmethod
    def _http(cls, value: str) -> str:
        if not re.match(r"^https?://[^/\s]+", value, re.IGNORECASE):
            # The path may be the token: never shown.
            raise ValueError(f"webhook '{masked_url(value)}' must start with http:// or "
                             f"https://")
        return value

    def target(self) -> str:
        return self.webhook

    def secret(self) -> str | None:
        return os.environ.get(self.secret_env) if self.secret_env else None

    def problems(self) -> list[str]:
        problems = []
        if problem := check_url(self.webhook):
            problems.append(f"webhook {masked_url(self.webhook)}: {problem}")
        secret = self.secret()
        if self.secret_env and secret is None:
            problems.append(f"environment variable {self.secret_env} is not set")
        elif secret is not None:
            try:
                secret_key(secret)
            except ValueError as exc:
                problems.append(f"{self.secret_env}: {exc}")
        return problems


class WebhookChannel:
    def __init__(self, http: httpx.AsyncClient, templates: Templates, timeout: float) -> None:
        self.http = http
        self.templates = templates
        self.timeout = timeout

    async def send(self, subscriber: SubscriberSpec, alerts: list[Alert],
                   delivery_id: str) -> None:
        fields = fields_of(subscriber, WebhookFields)
        url = fields.webhook
        now = datetime.now(timezone.utc)
        body = self.templates.webhook_body(alerts, delivery_id, now)
        timestamp = int(now.timestamp())
        headers = {"content-type": "application/json", "webhook-id": delivery_id,
                   "webhook-timestamp": str(timestamp)}
        secret = fields.secret()
        if secret:
            try:
                headers["webhook-signature"] = sign(secret, delivery_id, timestamp, body)
            except ValueError as exc:
                raise DeliveryError(f"{fields.secret_env}: {exc}", permanent=True) from None
        problem = check_url(url)
        if problem:
            raise DeliveryError(f"webhook {masked_url(url)}: {problem}", permanent=True)
        try:
            response = await self.http.post(url, content=body, headers=headers,
                                             timeout=self.timeout, follow_redirects=False)
        except BlockedAddressError as exc:
            raise DeliveryError(str(exc), permanent=True) from None
        except httpx.HTTPError as exc:
            raise DeliveryError(f"{type(exc).__name__}: {masked_text(str(exc))}") from None
        _check(response, now)


def _check(response: httpx.Response, now: datetime) -> None:
    status = response.status_code
    if 200 <= status < 300:
        return
    if status == 410:
        raise DeliveryError("410 Gone: the receiver asked to stop; endpoint disabled", gone=True)
    wait = retry_after_seconds(response.headers.get("retry-after"), now)
    raise DeliveryError(f"HTTP {status} {response.reason_phrase}", retry_after=wait)


def _build(context: ChannelContext) -> WebhookChannel:
    return WebhookChannel(context.http, context.templates, context.timeout)


CHANNEL = ChannelType("webhook", WebhookFields, ("webhook",), _build,
                      "JSON POST signed as Standard Webhooks (secret from secret_env)")
