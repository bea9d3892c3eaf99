# SQLModel types a model's columns as their Python values (SourceRow.id: str), so query
# expressions over them do not type-check; the queries are checked by the tests instead.
# mypy: disable-error-code="arg-type, call-overload, operator, union-attr, attr-defined, misc"
"""What the dashboard reads from the store: a few indexed queries per page, pages of 100 rows.

Everything here is synchronous (the web handlers run it in a thread) and read-only; the
counts per hour and per day are grouped by the database, not in Python, so a page costs the
same with 200,000 articles as with 2,000.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import and_, case, func, or_, text
from sqlmodel import select

from monitor.models import Alert
from monitor.notify.render import alert_from
from monitor.store import (ArticleRow, AttemptRow, DeliveryRow, EndpointRow, FetchLogRow,
                           MatchRow, SourceRow, Store)

PAGE = 100
SOURCE_SORTS = {"id": SourceRow.id, "state": SourceRow.consecutive_failures,
                "failures": SourceRow.consecutive_failures, "status": SourceRow.http_status,
                "items": SourceRow.items_seen, "next": SourceRow.next_due,
                "last_success": SourceRow.last_success, "articles": SourceRow.articles_total}
SourceState = Literal["ok", "failing", "disabled", "new"]


def source_state(row: SourceRow) -> SourceState:
    if row.disabled:
        return "disabled"
    if row.consecutive_failures:
        return "failing"
    return "ok" if row.last_success else "new"


def _day(store: Store, column: Any) -> Any:
    if store.dialect == "postgresql":
        return func.to_char(func.timezone("UTC", column), "YYYY-MM-DD")
    return func.strftime("%Y-%m-%d", column)


@dataclass
class Overview:
    sources: dict[str, int]
    articles_today: int
    deliveries: dict[str, int]
    hours: list[str]                      # "YYYY-MM-DD HH", oldest first, 7 x 24
    articles_per_hour: list[int]
    alerts_per_hour: list[int]
    failing: list[SourceRow] = field(default_factory=list)


def overview(store: Store, now: datetime, configured: set[str]) -> Overview:
    start = (now - timedelta(days=7)).replace(minute=0, second=0, microsecond=0) + \
        timedelta(hours=1)
    hours = [(start + timedelta(hours=h)).strftime("%Y-%m-%d %H") for h in range(7 * 24)]
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    with store.session() as session:
        states = _source_states(session, configured)
        today = session.execute(select(func.count()).select_from(ArticleRow).where(
            ArticleRow.fetched_at >= midnight)).scalar_one()
        deliveries = {status: count for status, count in session.execute(
            select(DeliveryRow.status, func.count()).group_by(DeliveryRow.status))}
        articles = _HOURLY.counts(session, store, "articles", ArticleRow.fetched_at, start,
                                  len(hours), now)
        alerts = _HOURLY.counts(session, store, "alerts", DeliveryRow.created_at, start,
                                len(hours), now)
        failing = list(session.exec(select(SourceRow).where(
            or_(SourceRow.disabled == True, SourceRow.consecutive_failures > 0))  # noqa: E712
            .order_by(SourceRow.consecutive_failures.desc()).limit(10)))
    return Overview(states, int(today), deliveries, hours, articles, alerts,
                    [row for row in failing if row.id in configured])


_STATE = case((SourceRow.disabled == True, "disabled"),  # noqa: E712
              (SourceRow.consecutive_failures > 0, "failing"),
              (SourceRow.last_success == None, "new"), else_="ok")  # noqa: E711


def _source_states(session: Any, configured: set[str]) -> dict[str, int]:
    """Sources per state, counted by the database; rows of sources no longer in the sources
    file (kept with their articles) are left out."""
    states = {"ok": 0, "failing": 0, "disabled": 0, "new": 0}
    for state, count in session.execute(select(_STATE, func.count()).group_by(_STATE)):
        states[state] += int(count)
    stored = {ident for (ident,) in session.execute(select(SourceRow.id))}
    removed = sorted(stored - configured)
    for chunk in range(0, len(removed), 500):
        for state, count in session.execute(
                select(_STATE, func.count()).where(SourceRow.id.in_(removed[chunk:chunk + 500]))
                .group_by(_STATE)):
            states[state] -= int(count)
    return states


class HourlyCounts:
    """Rows per hour over a week, for the overview's chart. An hour that is over never
    changes (articles and alerts are stamped when written), so its count is kept; only the
    current hour, and hours not yet seen, are counted again: one index-range count each."""

    def __init__(self) -> None:
        self.known: dict[tuple[str, str, datetime], int] = {}

    def counts(self, session: Any, store: Store, name: str, column: Any, start: datetime,
               count: int, now: datetime) -> list[int]:
        current = now.replace(minute=0, second=0, microsecond=0)
        where = str(store.engine.url)
        out = []
        for hour in range(count):
            since = start + timedelta(hours=hour)
            key = (where, name, since)
            if key not in self.known or since >= current:
                value = int(session.execute(select(func.count()).where(
                    column >= since, column < since + timedelta(hours=1))).scalar_one())
                if since < current:
                    self.known[key] = value
                out.append(value)
            else:
                out.append(self.known[key])
        for key in [k for k in self.known if k[2] < start]:
            del self.known[key]
        return out


_HOURLY = HourlyCounts()


@dataclass
class SourcePage:
    rows: list[SourceRow]
    total: int
    page: int


def sources(store: Store, state: str = "", q: str = "", sort: str = "id",
            descending: bool = False, page: int = 1) -> SourcePage:
    conditions = []
    if state == "disabled":
        conditions.append(SourceRow.disabled == True)  # noqa: E712
    elif state == "failing":
        conditions += [SourceRow.disabled == False, SourceRow.consecutive_failures > 0]  # noqa
    elif state == "ok":
        conditions += [SourceRow.disabled == False, SourceRow.consecutive_failures == 0]  # noqa
    if q:
        like = f"%{q.replace('%', '').replace('_', '')}%"
        conditions.append(or_(SourceRow.id.like(like), SourceRow.url.like(like)))
    column = SOURCE_SORTS.get(sort, SourceRow.id)
    order = column.desc() if descending else column.asc()
    with store.session() as session:
        where = and_(*conditions) if conditions else text("1=1")
        total = session.execute(select(func.count()).select_from(SourceRow).where(where)
                                ).scalar_one()
        rows = list(session.exec(select(SourceRow).where(where)
                                 .order_by(order, SourceRow.id).offset((page - 1) * PAGE)
                                 .limit(PAGE)))
    return SourcePage(rows, int(total), page)


@dataclass
class SourceDetail:
    row: SourceRow
    articles: list[ArticleRow]
    fetches: list[FetchLogRow]


def source_detail(store: Store, source_id: str) -> SourceDetail | None:
    with store.session() as session:
        row = session.get(SourceRow, source_id)
        if row is None:
            return None
        articles = list(session.exec(select(ArticleRow).where(
            ArticleRow.source_id == source_id).order_by(ArticleRow.id.desc()).limit(50)))
        fetches = list(session.exec(select(FetchLogRow).where(
            FetchLogRow.source_id == source_id).order_by(FetchLogRow.at.desc()).limit(50)))
    return SourceDetail(row, articles, fetches)


@dataclass
class AlertRow:
    row: DeliveryRow
    alert: Alert                            # as the channel sent (or will send) it
    outlets: list[tuple[str, str, str]]


def _alert(row: DeliveryRow, outlets: list[tuple[str, str, str]]) -> Alert:
    alert = alert_from(json.loads(row.payload or "{}"))
    alert.also_reported_by = [{"source": source, "url": url, "title": title}
                              for source, url, title in outlets if url != alert.article_url]
    return alert


def _alert_rows(store: Store, rows: list[DeliveryRow]) -> list[AlertRow]:
    stories = {row.story_id for row in rows if row.article_id is not None}
    outlets: dict[int, list[tuple[str, str, str]]] = {}
    if stories:
        with store.session() as session:
            found = session.execute(
                select(ArticleRow.id, ArticleRow.story_id, ArticleRow.source_id, ArticleRow.url,
                       ArticleRow.title)
                .where(or_(ArticleRow.story_id.in_(stories),
                           ArticleRow.id.in_(stories)))
                .order_by(ArticleRow.id))
            for ident, story_id, source, url, title in found:
                outlets.setdefault(story_id or ident, []).append((source, url, title))
    out = []
    for row in rows:
        story = outlets.get(row.story_id, []) if row.article_id is not None else []
        out.append(AlertRow(row, _alert(row, story), story))
    return out


@dataclass
class AlertPage:
    rows: list[AlertRow]
    total: int
    page: int
    rules: list[str]
    subscribers: list[str]


def alerts(store: Store, rule: str = "", subscriber: str = "", status: str = "",
           page: int = 1) -> AlertPage:
    conditions = []
    if rule:
        conditions.append(DeliveryRow.rule_id == rule)
    if subscriber:
        conditions.append(DeliveryRow.subscriber == subscriber)
    if status:
        conditions.append(DeliveryRow.status == status)
    where = and_(*conditions) if conditions else text("1=1")
    with store.session() as session:
        total = session.execute(select(func.count()).select_from(DeliveryRow).where(where)
                                ).scalar_one()
        rows = list(session.exec(select(DeliveryRow).where(where)
                                 .order_by(DeliveryRow.created_at.desc())
                                 .offset((page - 1) * PAGE).limit(PAGE)))
        rules = [r for (r,) in session.execute(select(DeliveryRow.rule_id).distinct()
                                               .order_by(DeliveryRow.rule_id).limit(500))]
        subscribers = [s for (s,) in session.execute(
            select(DeliveryRow.subscriber).distinct().order_by(DeliveryRow.subscriber)
            .limit(500))]
    return AlertPage(_alert_rows(store, rows), int(total), page, rules, subscribers)


@dataclass
class AlertDetail:
    alert: AlertRow
    attempts: list[AttemptRow]
    endpoint_disabled: bool


def alert_detail(store: Store, delivery_id: str) -> AlertDetail | None:
    with store.session() as session:
        row = session.get(DeliveryRow, delivery_id)
        if row is None:
            return None
        attempts = list(session.exec(select(AttemptRow).where(
            AttemptRow.delivery_id == delivery_id).order_by(AttemptRow.at)))
        disabled = session.get(EndpointRow, row.subscriber) is not None
    return AlertDetail(_alert_rows(store, [row])[0], attempts, disabled)


@dataclass
class RuleActivity:
    days: list[str]                                  # "YYYY-MM-DD", oldest first
    per_day: dict[str, list[int]]                    # rule id -> hits per day
    last_hit: dict[str, datetime]


def rule_activity(store: Store, now: datetime, days: int = 14) -> RuleActivity:
    start = (now - timedelta(days=days - 1)).replace(hour=0, minute=0, second=0, microsecond=0)
    labels = [(start + timedelta(days=d)).strftime("%Y-%m-%d") for d in range(days)]
    per_day: dict[str, list[int]] = {}
    with store.session() as session:
        bucket = _day(store, MatchRow.created_at)
        for rule_id, day, count in session.execute(
                select(MatchRow.rule_id, bucket, func.count()).where(
                    MatchRow.created_at >= start).group_by(MatchRow.rule_id, bucket)):
            if day in labels:
                per_day.setdefault(rule_id, [0] * days)[labels.index(day)] = int(count)
        latest = select(MatchRow.rule_id, func.max(MatchRow.created_at))
        last: dict[str, datetime] = dict(session.execute(latest.group_by(MatchRow.rule_id)).all())
    return RuleActivity(labels, per_day, last)
