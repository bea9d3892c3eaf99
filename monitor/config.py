"""Settings, sources and subscribers: every default in one commented place, validated with lines.

Where a file is looked for: --config, else $NEWS_MONITOR_CONFIG, else ./monitor.yaml, else the
built-in defaults below (the shipped seed sources and rules, a SQLite file in the current
directory, no subscribers). Relative paths inside a config file are relative to that file.
Secrets never live in these files: a file names the environment variable that holds one.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (BaseModel, BeforeValidator, ConfigDict, Field, field_validator,
                      model_validator)

from monitor.errors import ConfigError, Problem
from monitor.yamlfile import YDict, YList, line_of, read_yaml, validate

CONFIG_ENV = "NEWS_MONITOR_CONFIG"
DEFAULT_CONFIG_NAME = "monitor.yaml"

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")


def shipped_dir() -> Path:
    """Where the shipped rules/ and seeds/ are: inside an installed wheel, or the checkout."""
    packaged = Path(__file__).parent / "_shipped"
    return packaged if packaged.is_dir() else Path(__file__).parent.parent


def parse_duration(value: object) -> float:
    """'10m' -> 600.0. A bare number is refused: '5' could mean seconds or minutes."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        raise ValueError(f"duration '{value}' has no unit; write '{value}m' or '{value}s'")
    match = _DURATION.match(str(value))
    if not match:
        raise ValueError(f"duration '{value}' is not a number with a unit s, m, h or d "
                         f"(like '30s', '10m', '2h')")
    return float(match.group(1)) * _UNITS[match.group(2)]


# A duration as written in a file ('10m') and stored in seconds. Defaults are written the
# same way and go through the same parser (validate_default below), so a default can never
# be a shape that only a file value would have been converted from.
Duration = Annotated[float, BeforeValidator(parse_duration)]


def written(default: Any) -> Any:
    """A default written as it would be in the file ('10m'), parsed like a file value."""
    return Field(default)


class _Strict(BaseModel):
    """Base for file-backed settings: unknown keys are typos, reported as such.

    Defaults are validated like file values: the first release kept the retry schedule's
    default as unparsed strings and crashed on its first failed delivery.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class SmtpSettings(_Strict):
    host: str = "localhost"
    port: int = 587
    from_: str = Field("news-monitor@localhost", alias="from")
    username: str | None = None
    password_env: str | None = None  # NAME of the environment variable holding the password
    tls: Literal["starttls", "ssl", "none"] = "starttls"
    timeout: float = 30.0

    def password(self) -> str | None:
        return os.environ.get(self.password_env) if self.password_env else None


class FetchSettings(_Strict):
    concurrency: int = Field(50, ge=1)      # requests in flight over all hosts
    per_host: int = Field(2, ge=1)          # requests in flight to one host name
    connect_timeout: float = 10.0
    read_timeout: float = 20.0
    deadline: float = 60.0                  # whole request, headers to last byte
    max_bytes: int = 10_000_000             # counted on decoded bytes: a gzip bomb stops here
    max_redirects: int = 5
    parse_deadline: float = 30.0            # parsing one feed or page, off the event loop
    user_agent: str = "news-monitor/0.1 (+https://example.invalid/news-monitor)"
    backoff_max: Duration = written("6h")     # ceiling of a failing source's back-off


# Standard Webhooks' retry schedule: after the first attempt, wait 5 s, 5 min, 30 min, 2 h,
# 5 h, 10 h, 10 h; after the last wait the delivery is dead (about 28 hours in all).
DEFAULT_RETRY = ("5s", "5m", "30m", "2h", "5h", "10h", "10h")


class DeliverySettings(_Strict):
    retry: tuple[Duration, ...] = written(DEFAULT_RETRY)
    timeout: float = 30.0
    batch: int = Field(200, ge=1)             # deliveries claimed per pass


class DashboardSettings(_Strict):
    """The operator's web page, served on http_port with /healthz. Read-only unless token_env
    names a variable holding a token: then an operator who logs in with it may retry dead
    deliveries and re-enable disabled sources and endpoints."""

    enabled: bool = True
    token_env: str | None = None              # NAME of the variable holding the token

    def token(self) -> str | None:
        value = os.environ.get(self.token_env) if self.token_env else None
        return value if value else None


def usable_cores() -> int:
    """The cores this process may run on: a container's or `taskset`'s limit, not the host's
    count (a worker sharing the daemon's one core would only add its overhead)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:             # not on Linux
        return os.cpu_count() or 1


class Settings(_Strict):
    """The config file. Defaults are the embedded ones `demo`, `once` and `run` fall back on."""

    database: str = "sqlite:///monitor.db"
    database_password_env: str | None = None  # NAME of the variable holding the DB password
    sources: Path = Field(default_factory=lambda: shipped_dir() / "seeds" / "sources.yaml")
    rules: Path = Field(default_factory=lambda: shipped_dir() / "rules")
    subscribers: Path | None = None
    templates: Path | None = None             # a directory overriding email/webhook templates
    smtp: SmtpSettings = Field(default_factory=SmtpSettings)
    fetch: FetchSettings = Field(default_factory=FetchSettings)
    delivery: DeliverySettings = Field(default_factory=DeliverySettings)
    allow_private_networks: bool = False
    alert_max_age: Duration = written("3d")     # older articles are stored and matched, not alerted
    tick: Duration = written("5s")              # how often the daemon looks for due sources
    rules_poll: Duration = written("2s")        # how often edited rules, sources, subscribers
    job_deadline: Duration = written("5m")      # no scheduled job runs longer than this
    http_port: int | None = None              # /healthz, /readyz, /metrics
    http_host: str = "127.0.0.1"              # where that endpoint listens (a container: 0.0.0.0)
    dashboard: DashboardSettings = Field(default_factory=DashboardSettings)
    admin: str | None = None                  # subscriber told about failing sources
    # Processes that fingerprint and match new articles while the daemon writes the previous
    # feed (prepare.py); 0 computes them in the daemon's own process. Unset: see
    # match_worker_count.
    match_workers: int | None = Field(None, ge=0)
    failure_alert_after: int = 5              # consecutive failures before that alert

    def match_worker_count(self) -> int:
        """`match_workers`, or unset: one with two usable cores or more, on either backend,
        so a burst's matching takes the other core while the daemon writes; none on one core.
        With PostgreSQL's server on the same two cores the worker still pays now that it
        sends back plain values (bench_store.py, 3,000 feeds, interleaved: 980 / 899 new
        articles/s with it against 604 / 705 without)."""
        if self.match_workers is not None:
            return self.match_workers
        return 1 if usable_cores() >= 2 else 0

    def database_url(self) -> str:
        """The database URL to connect with: the password from the environment, if named."""
        if not self.database_password_env:
            return self.database
        from sqlalchemy.engine import make_url
        password = os.environ.get(self.database_password_env)
        if password is None:
            raise ConfigError(f"database_password_env: environment variable "
                              f"{self.database_password_env} is not set")
        return make_url(self.database).set(password=password).render_as_string(
            hide_password=False)

    def env_problems(self) -> list[tuple[str, str]]:
        """Secrets named in the config whose environment variables are not set."""
        named = [("database_password_env", self.database_password_env),
                 ("smtp.password_env", self.smtp.password_env),
                 ("dashboard.token_env", self.dashboard.token_env)]
        return [(key, f"{key}: environment variable {name} is not set") for key, name in named
                if name and os.environ.get(name) is None]


class SourceSpec(_Strict):
    """One entry of the sources file."""

    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    url: str
    kind: Literal["auto", "rss", "atom", "json", "html"] = "auto"
    interval: Duration = written("10m")
    full_text: bool = False
    enabled: bool = True
    # For kind: html — CSS selectors over the listing page.
    links: str | None = None          # selector of the <a> elements leading to articles
    title: str | None = None          # selector, relative to each link's item, of its title
    item: str | None = None           # selector of one story block on the page (optional)

    @field_validator("url")
    @classmethod
    def _http_only(cls, value: str) -> str:
        if not re.match(r"^https?://[^/\s]+", value, re.IGNORECASE):
            raise ValueError(f"url '{value}' must start with http:// or https://")
        return value

    @model_validator(mode="after")
    def _html_needs_links(self) -> SourceSpec:
        if self.kind == "html" and not self.links:
            raise ValueError("kind 'html' needs a 'links' CSS selector for the article links")
        return self


class DigestSpec(_Strict):
    every: Literal["hourly", "daily"] = "daily"
    at: str = "08:00"                        # for daily digests, local time in `timezone`
    timezone: str = "UTC"

    @field_validator("at")
    @classmethod
    def _clock(cls, value: str) -> str:
        if not re.match(r"^([01]\d|2[0-3]):[0-5]\d$", value):
            raise ValueError(f"digest time '{value}' must be HH:MM (24-hour)")
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone '{value}' (use an IANA name like "
                             f"'Europe/Paris')") from None
        return value


class SubscriberSpec(_Strict):
    """One entry of the subscribers file: a name, one channel, and the rules followed.

    The channel's own keys (`email:`, `webhook:` + `secret_env:`, `apprise:` or `url_env:`,
    `console: true`, ...) are declared by the channel modules (monitor/notify): the entry is
    read as the common keys below plus `channel` and `settings`, the channel's validated fields.
    """

    name: str = Field(min_length=1)
    rules: list[str] | Literal["*"] = "*"
    digest: DigestSpec | None = None         # absent: every alert is sent immediately
    cooldown: Duration = written("0s")         # time between two alerts of one rule
    channel: str
    settings: Any

    @model_validator(mode="before")
    @classmethod
    def _channel_fields(cls, value: Any) -> Any:
        if not isinstance(value, dict) or "settings" in value:
            return value
        from pydantic import ValidationError

        from monitor.notify import CHANNEL_TYPES
        common = {"name", "rules", "digest", "cooldown"}
        own = {k: v for k, v in value.items() if k not in common}
        picked = [kind for kind in CHANNEL_TYPES.values() if any(k in own for k in kind.keys)]
        name = value.get("name", "?")
        if len(picked) != 1:
            known = ", ".join(k for kind in CHANNEL_TYPES.values() for k in kind.keys)
            has = ", ".join(kind.name for kind in picked) or "none"
            raise ValueError(f"subscriber '{name}' needs exactly one channel ({known}); "
                             f"has {has}")
        kind = picked[0]
        try:
            fields = kind.fields.model_validate(dict(own))
        except ValidationError as exc:
            raise ValueError("; ".join(_field_error(kind.name, error)
                                       for error in exc.errors())) from None
        return {**{k: v for k, v in value.items() if k in common}, "channel": kind.name,
                "settings": fields}

    @property
    def target(self) -> str:
        """The endpoint stored with each delivery (never a secret)."""
        return str(self.settings.target())

    def follows(self, rule_id: str) -> bool:
        return self.rules == "*" or rule_id in self.rules


def _field_error(channel: str, error: Any) -> str:
    """'key: message', unless the message already starts with the key."""
    where = ".".join(str(p) for p in error["loc"]) or channel
    message = str(error["msg"]).removeprefix("Value error, ")
    return message if message.startswith(where) else f"{where}: {message}"


# --- locating and reading ---------------------------------------------------------------------

_Entry = TypeVar("_Entry", SourceSpec, SubscriberSpec)

def config_path(explicit: str | None) -> Path | None:
    """--config, else $NEWS_MONITOR_CONFIG, else ./monitor.yaml if present, else None."""
    if explicit:
        return Path(explicit)
    if os.environ.get(CONFIG_ENV):
        return Path(os.environ[CONFIG_ENV])
    local = Path(DEFAULT_CONFIG_NAME)
    return local if local.is_file() else None


def load_settings(path: Path | None) -> tuple[Settings, list[Problem]]:
    """Read the config file (or the defaults). Unreadable or unusable raises ConfigError."""
    if path is None:
        return Settings(), []
    data, problems = read_yaml(path)
    if data is None and not problems:
        data = YDict()
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: {problems[0].message if problems else 'not a mapping'}",
                          problems)
    _resolve_paths(data, path.parent)
    settings, errors = validate(Settings, data, str(path))
    if settings is None:
        raise ConfigError(f"{path}: invalid configuration", problems + errors)
    for key, message in settings.env_problems():
        problems.append(Problem(str(path), line_of(data, tuple(key.split("."))), message))
    return settings, problems


def _resolve_paths(data: dict[str, Any], base: Path) -> None:
    for key in ("sources", "rules", "subscribers", "templates"):
        if isinstance(data.get(key), str):
            data[key] = str((base / data[key]).resolve())


def _entries(path: Path, key: str) -> tuple[list[Any], Any, list[Problem]]:
    """A list file: either a top-level list or a mapping with the list under `key`."""
    data, problems = read_yaml(path)
    if isinstance(data, dict) and key in data:
        data = data[key]
    if data is None:
        return [], data, problems
    if not isinstance(data, list):
        line = getattr(data, "line", 1)
        return [], data, problems + [Problem(str(path), line, f"expected a list of {key}")]
    return list(data), data, problems


def _load_list(path: Path, key: str, model: type[_Entry], name: str, what: str
               ) -> tuple[list[tuple[_Entry, int]], list[Problem]]:
    """Every valid entry of a list file with its line; each invalid or repeated one becomes a
    problem and is left out, so one bad entry never takes the others down."""
    items, data, problems = _entries(path, key)
    kept: list[tuple[_Entry, int]] = []
    seen: dict[str, int] = {}
    for index, item in enumerate(items):
        spec, errors = validate(model, item, str(path), where=(key, index))
        problems += [Problem(e.file, _item_line(data, index, e.line), e.message) for e in errors]
        if spec is None:
            continue
        line = _item_line(data, index, 1)
        ident = getattr(spec, name)
        if ident in seen:
            problems.append(Problem(str(path), line, f"duplicate {what} '{ident}' "
                                                      f"(first at line {seen[ident]})"))
            continue
        seen[ident] = line
        kept.append((spec, line))
    return kept, problems


def load_sources(path: Path) -> tuple[list[SourceSpec], list[Problem]]:
    """Every valid source; each invalid entry becomes a problem and is left out."""
    kept, problems = _load_list(path, "sources", SourceSpec, "id", "source id")
    return [spec for spec, _ in kept], problems


def load_subscribers(path: Path | None) -> tuple[list[SubscriberSpec], list[Problem]]:
    """Every valid subscriber; each invalid entry becomes a problem and is left out."""
    subscribers, invalid, warnings = read_subscribers(path)
    return subscribers, invalid + warnings


def read_subscribers(path: Path | None
                     ) -> tuple[list[SubscriberSpec], list[Problem], list[Problem]]:
    """The valid subscribers, the problems that left entries out, and the problems of valid
    entries that would make their deliveries fail (an unset secret variable, ...)."""
    if path is None:
        return [], [], []
    kept, invalid = _load_list(path, "subscribers", SubscriberSpec, "name", "subscriber name")
    warnings = [Problem(str(path), line, f"subscriber '{spec.name}': {message}")
                for spec, line in kept for message in _subscriber_problems(spec)]
    return [spec for spec, _ in kept], invalid, warnings


def _subscriber_problems(spec: SubscriberSpec) -> list[str]:
    """What would make every delivery to this subscriber fail, found before the first one."""
    return list(spec.settings.problems())


def _item_line(data: Any, index: int, fallback: int) -> int:
    """The line of an error inside item `index`, or of the item itself."""
    if fallback > 1:
        return fallback
    if isinstance(data, YList) and index < len(data.item_lines):
        return data.item_lines[index]
    return line_of(data, ()) or 1
