"""The e-mail channel: multipart text + HTML over SMTP, verified TLS, a timeout on everything.

SMTP answers decide what happens next: 4xx is temporary (retried), 5xx permanent (dead-letter);
recipients the server refuses are errors, not silently dropped (smtplib returns them instead of
raising). The Message-ID carries the delivery id, the same on every retry, so a mailbox or
filter can drop a duplicate after a crash between 'accepted' and 'marked sent'.
"""

from __future__ import annotations

import asyncio
import smtplib
import socket
import ssl
import re
from email.errors import HeaderParseError
from email.header import decode_header, make_header
from email.message import EmailMessage
from email.utils import formatdate

from typing import TYPE_CHECKING

from pydantic import field_validator

from monitor.errors import DeliveryError
from monitor.models import Alert
from monitor.notify.base import ChannelFields, ChannelType, fields_of
from monitor.notify.render import Templates

if TYPE_CHECKING:
    from monitor.config import SmtpSettings, SubscriberSpec
    from monitor.notify.context import ChannelContext


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def header_safe(text: str, limit: int = 200) -> str:
    """One line of plain text, bounded, that no mail library can turn back into CR/LF.

    A title may arrive as an RFC 2047 encoded word ("=?utf-8?q?x=0D=0AReply-To:...?=") that
    the e-mail library itself would decode into a line break when the header is set, so
    encoded words are decoded first, line breaks and controls removed after, and any "=?"
    still left is broken up so it can never be read as an encoded word again.
    """
    line = _decoded_words(text)
    line = " ".join(_CONTROL.sub(" ", line).split())
    line = line.replace("=?", "= ?")
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _decoded_words(text: str) -> str:
    for _ in range(3):                      # words can be nested: decode until nothing changes
        if "=?" not in text:
            break
        try:
            decoded = str(make_header(decode_header(text)))
        except (HeaderParseError, UnicodeError, LookupError, ValueError):
            break
        if decoded == text:
            break
        text = decoded
    return text


def build_message(smtp: SmtpSettings, to: str, alerts: list[Alert], delivery_id: str,
                  templates: Templates) -> EmailMessage:
    message = EmailMessage()
    message["From"] = smtp.from_
    message["To"] = to
    message["Subject"] = header_safe(templates.render("subject.txt.j2", alerts,
                                                      delivery_id=delivery_id))
    message["Date"] = formatdate(usegmt=True)
    domain = smtp.from_.rsplit("@", 1)[-1] or "news-monitor"
    message["Message-ID"] = f"<{delivery_id}@{header_safe(domain)}>"
    message["X-News-Monitor-Alert"] = delivery_id
    message.set_content(templates.render("email.txt.j2", alerts, delivery_id=delivery_id))
    message.add_alternative(templates.render("email.html.j2", alerts, delivery_id=delivery_id),
                            subtype="html")
    return message


class EmailFields(ChannelFields):
    email: str

    @field_validator("email")
    @classmethod
    def _address(cls, value: str) -> str:
        if not re.match(r"^[^@\s]+@[^@\s]+\.[^@\s]+$", value):
            raise ValueError(f"'{value}' is not an e-mail address")
        return value

    def target(self) -> str:
        return self.email


class EmailChannel:
    def __init__(self, smtp: SmtpSettings, templates: Templates) -> None:
        self.smtp = smtp
        self.templates = templates

    async def send(self, subscriber: SubscriberSpec, alerts: list[Alert],
                   delivery_id: str) -> None:
        to = fields_of(subscriber, EmailFields).email
        message = build_message(self.smtp, to, alerts, delivery_id, self.templates)
        await asyncio.to_thread(self._send, message)

    def _send(self, message: EmailMessage) -> None:
        try:
            with self._connect() as client:
                if self.smtp.username:
                    client.login(self.smtp.username, self.smtp.password() or "")
                refused = client.send_message(message)
        except smtplib.SMTPRecipientsRefused as exc:
            raise _refused(exc.recipients) from None
        except smtplib.SMTPResponseException as exc:
            text = exc.smtp_error.decode(errors="replace") if isinstance(
                exc.smtp_error, bytes) else str(exc.smtp_error)
            raise DeliveryError(f"SMTP {exc.smtp_code} {text}",
                                permanent=500 <= exc.smtp_code < 600) from None
        except (smtplib.SMTPException, OSError, socket.timeout) as exc:
            raise DeliveryError(f"SMTP {self.smtp.host}:{self.smtp.port}: "
                                f"{type(exc).__name__}: {exc}") from None
        if refused:
            raise _refused(refused)

    def _connect(self) -> smtplib.SMTP:
        context = ssl.create_default_context()
        if self.smtp.tls == "ssl":
            return smtplib.SMTP_SSL(self.smtp.host, self.smtp.port, timeout=self.smtp.timeout,
                                    context=context)
        client = smtplib.SMTP(self.smtp.host, self.smtp.port, timeout=self.smtp.timeout)
        if self.smtp.tls == "starttls":
            client.ehlo()
            if not client.has_extn("starttls"):
                client.close()
                raise DeliveryError(f"SMTP {self.smtp.host} does not offer STARTTLS; refusing "
                                    f"to send in plain text (set smtp.tls: none to allow it)",
                                    permanent=False)
            client.starttls(context=context)
            client.ehlo()
        return client


def _refused(recipients: dict[str, tuple[int, bytes]]) -> DeliveryError:
    parts = [f"{who}: {code} {reply.decode(errors='replace')}"
             for who, (code, reply) in recipients.items()]
    permanent = all(500 <= code < 600 for code, _ in recipients.values())
    return DeliveryError("recipient refused: " + "; ".join(parts), permanent=permanent)


def _build(context: ChannelContext) -> EmailChannel:
    return EmailChannel(context.smtp, context.templates)


CHANNEL = ChannelType("email", EmailFields, ("email",), _build,
                      "multipart text + HTML over SMTP (settings under smtp: in the config)")
