"""Secrets out of what is shown: passwords in database URLs, tokens in webhook URLs.

A database URL may carry a password; a webhook URL often *is* the secret (Slack, Teams and
Discord put the token in the path). Whatever is printed, logged or stored as an error message
goes through here first.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

_URL = re.compile(r"""(?i)\b[a-z][a-z0-9+.-]*://[^\s'"<>]+""")


def masked_credentials(url: str) -> str:
    """The URL with its password (if any) replaced by ***: what `status` prints."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return _masked_userinfo(url)
    if password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    user = netloc[0].split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc[1]}"))


def _masked_userinfo(url: str) -> str:
    return re.sub(r"(://[^:/@\s]*:)[^@/\s]*@", r"\1***@", url)


def masked_url(url: str) -> str:
    """A webhook URL as shown to people: scheme and host only, path and query masked."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<unparsable URL>"
    if ":" in host:
        host = f"[{host}]"
    hidden = "/***" if (parts.path not in ("", "/") or parts.query) else "/"
    return f"{parts.scheme}://{host}{port}{hidden}"


def masked_text(text: str) -> str:
    """Every URL inside a message masked as a webhook URL is."""
    return _URL.sub(lambda match: masked_url(match.group(0)), text)


def masked_passwords(text: str) -> str:
    """Every URL inside a message with its password masked (a database error, say)."""
    return _URL.sub(lambda match: masked_credentials(match.group(0)), text)
