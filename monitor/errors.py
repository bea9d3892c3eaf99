"""The error hierarchy of news-monitor.

    MonitorError                 root: anything news-monitor raises on purpose
      ConfigError                a config, sources, rules or subscribers file is unusable
      FetchError                 a source could not be fetched or its answer was refused
        BlockedAddressError      a host resolved to an address the network policy refuses
      ParseError                 fetched bytes are not a feed or page we can read
      DeliveryError              an alert could not be handed to a channel
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One thing wrong in a file, located for the person who has to fix it."""

    file: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"


class MonitorError(Exception):
    """Root of every error news-monitor raises on purpose."""


class ConfigError(MonitorError):
    """A configuration file cannot be used; `problems` says where and why."""

    def __init__(self, message: str, problems: list[Problem] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or []


class FetchError(MonitorError):
    """A source could not be fetched; `status` is the HTTP status when there was one."""

    def __init__(self, message: str, status: int | None = None,
                 retry_after: float | None = None, gone: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after
        self.gone = gone


class BlockedAddressError(FetchError):
    """The host resolved to a loopback, private, link-local or metadata address."""


class ParseError(MonitorError):
    """The fetched bytes are not a feed or page news-monitor can read."""


class DeliveryError(MonitorError):
    """A channel refused or failed to take an alert.

    `permanent` errors are not retried (5xx SMTP, 4xx webhook); `gone` disables the endpoint
    (webhook 410); `retry_after` is the server's own wish, in seconds.
    """

    def __init__(self, message: str, permanent: bool = False, gone: bool = False,
                 retry_after: float | None = None) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.gone = gone
        self.retry_after = retry_after
