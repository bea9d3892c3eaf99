"""Prometheus metrics: counters the stages increment, gauges read from the store at scrape.

Each process builds its own registry (passed in the context), so nothing is global.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.fetches = Counter("news_monitor_fetches", "Source fetches by outcome",
                               ["outcome"], registry=r)
        self.fetch_seconds = Histogram("news_monitor_fetch_seconds", "Fetch latency",
                                       buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
                                       registry=r)
        self.articles = Counter("news_monitor_articles", "Articles seen, new or duplicate",
                                ["kind"], registry=r)
        self.matches = Counter("news_monitor_matches", "Rule matches", ["rule"], registry=r)
        self.deliveries = Counter("news_monitor_deliveries", "Delivery attempts by outcome",
                                  ["channel", "outcome"], registry=r)
        self.rule_reloads = Counter("news_monitor_rule_reloads", "Rule reloads by result",
                                    ["result"], registry=r)
        self.source_failures = Counter("news_monitor_source_failures", "Failed fetches",
                                       ["source"], registry=r)
        self.pending = Gauge("news_monitor_deliveries_pending", "Deliveries waiting to be sent",
                             registry=r)
        self.dead = Gauge("news_monitor_deliveries_dead", "Deliveries given up on", registry=r)
        self.rules = Gauge("news_monitor_rules_loaded", "Rules in service", registry=r)


def render_metrics(ctx: Any) -> tuple[bytes, str]:
    """The exposition text, with the store-derived gauges refreshed first."""
    metrics: Metrics = ctx.metrics
    counts = ctx.store.count_deliveries()
    metrics.pending.set(counts.get("pending", 0))
    metrics.dead.set(counts.get("dead", 0))
    metrics.rules.set(len(ctx.rules.engine.ruleset.rules))
    return generate_latest(metrics.registry), CONTENT_TYPE_LATEST
