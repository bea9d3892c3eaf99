"""What channels need from the outside world, passed in (never created at import time)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TextIO

import httpx

from monitor.config import SmtpSettings
from monitor.notify.render import Templates


@dataclass
class ChannelContext:
    smtp: SmtpSettings
    http: httpx.AsyncClient
    templates: Templates
    out: TextIO
    timeout: float = 30.0
    allow_private: bool = False      # the SSRF policy, for channels that connect themselves
