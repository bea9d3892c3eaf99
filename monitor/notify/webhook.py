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
from datetime import datetime, timezone
from urllib.parse import urlsplit

import httpx

from monitor.config import SubscriberSpec
from monitor.errors import BlockedAddressError, DeliveryError
from monitor.fetch import retry_after_seconds
from monitor.redact import masked_text, masked_url
from monitor.models import Alert
from monitor.notify.render import Templates


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


class WebhookChannel:
    def __init__(self, http: httpx.AsyncClient, templates: Templates, timeout: float) -> None:
        self.http = http
        self.templates = templates
        self.timeout = timeout

    async def send(self, subscriber: SubscriberSpec, alerts: list[Alert],
                   delivery_id: str) -> None:
        assert subscriber.webhook
        now = datetime.now(timezone.utc)
        body = self.templates.webhook_body(alerts, delivery_id, now)
        timestamp = int(now.timestamp())
        headers = {"content-type": "application/json", "webhook-id": delivery_id,
                   "webhook-timestamp": str(timestamp)}
        secret = subscriber.secret()
        if secret:
            try:
                headers["webhook-signature"] = sign(secret, delivery_id, timestamp, body)
            except ValueError as exc:
                raise DeliveryError(f"{subscriber.secret_env}: {exc}", permanent=True) from None
        problem = check_url(subscriber.webhook)
        if problem:
            raise DeliveryError(f"webhook {masked_url(subscriber.webhook)}: {problem}",
                                permanent=True)
        try:
            response = await self.http.post(subscriber.webhook, content=body, headers=headers,
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
