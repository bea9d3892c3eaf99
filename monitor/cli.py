"""Command line: parse arguments, build the objects, start. Nothing else lives here."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from monitor import __version__
from monitor.config import Settings, config_path, load_settings
from monitor.errors import ConfigError, MonitorError, Problem
from monitor.pipeline import CycleReport, run_cycle
from monitor.redact import masked_credentials
from monitor.runtime import Loaded, load_all, log_problems, running

log = logging.getLogger("monitor")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.log_format, args.log_level)
    try:
        return int(args.handler(args) or 0)
    except ConfigError as exc:
        print(f"news-monitor: {exc}", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return 2
    except MonitorError as exc:
        print(f"news-monitor: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:             # `news-monitor ... | head`: the reader has gone
        import os
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="news-monitor", description="Watches news sources "
                                     "and alerts subscribers when an article matches a rule.")
    parser.add_argument("--version", action="version", version=f"news-monitor {__version__}")
    parser.add_argument("--log-format", choices=("text", "json"), default="text")
    parser.add_argument("--log-level", default="INFO",
                        choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, handler: Callable[[argparse.Namespace], int], text: str,
                config: bool = True) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=text, description=text)
        if config:
            sub.add_argument("--config", metavar="FILE", help="config file (default: "
                             "$NEWS_MONITOR_CONFIG, else ./monitor.yaml, else built-in defaults)")
        sub.set_defaults(handler=handler)
        return sub

    command("run", cmd_run, "run the daemon: poll every source on its interval")
    command("once", cmd_once, "one full cycle over every source, then exit")
    command("check", cmd_check, "validate config, sources, rules and subscribers")
    command("channels", cmd_channels, "list the alert channels and each one's subscriber keys",
            config=False)
    command("demo", cmd_demo, "see it work: sample articles, shipped rules, console alerts",
            config=False)
    test = command("test-rule", cmd_test_rule, "show what one rule would match, and why")
    test.add_argument("rule_id")
    test.add_argument("--days", type=float, default=7.0, help="stored articles of the last N "
                      "days (default 7)")
    test.add_argument("--file", help="a text, HTML or feed file instead of stored articles")
    test.add_argument("--url", help="a page or feed URL instead of stored articles")
    test.add_argument("--labels", metavar="FILE", help="labelled examples (TSV/CSV with text "
                      "and label columns): print precision, recall, F1 and every error")
    test.add_argument("--text-column", default="text", help="the labels file's text column "
                      "(default: text)")
    test.add_argument("--json", action="store_true", help="with --labels: JSON output")
    test.add_argument("--keywords-only", action="store_true", help="leave a rule's semantic "
                      "part out (its figures without the meaning model)")
    deliveries = command("deliveries", cmd_deliveries, "list pending, failed and dead "
                         "deliveries, or retry them")
    deliveries.add_argument("action", nargs="?", choices=("list", "retry"), default="list")
    deliveries.add_argument("delivery_id", nargs="?")
    deliveries.add_argument("--all-dead", action="store_true")
    deliveries.add_argument("--status", default="pending,dead,disabled,cancelled")
    sources = command("sources", cmd_sources, "show source health, or import an OPML file")
    sources.add_argument("action", nargs="?", choices=("list", "import"), default="list")
    sources.add_argument("file", nargs="?")
    command("status", cmd_status, "one screen: sources, last cycle, today's articles and alerts")
    db = command("db", cmd_db, "database schema: `db upgrade` applies migrations")
    db.add_argument("action", choices=("upgrade", "current"))
    return parser


# --- logging ----------------------------------------------------------------------------------

class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {"time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(),
                 "level": record.levelname.lower(), "logger": record.name,
                 "message": record.getMessage()}
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def setup_logging(fmt: str, level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(
        "%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("httpx", "httpcore", "apscheduler", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


# --- commands ---------------------------------------------------------------------------------

def settings_of(args: argparse.Namespace) -> Settings:
    path = config_path(getattr(args, "config", None))
    if path is not None and not path.is_file():
        raise ConfigError(f"cannot read config {path}: no such file")
    settings, problems = load_settings(path)
    log_problems(problems)
    return settings


def cmd_check(args: argparse.Namespace) -> int:
    path = config_path(args.config)
    if path is not None and not path.is_file():
        raise ConfigError(f"cannot read config {path}: no such file")
    try:
        settings, problems = load_settings(path)
    except ConfigError as exc:
        if not exc.problems:
            raise
        settings, problems = None, exc.problems
    figures: list[str] = []          # each rule's figures on its own examples, if it has any
    if settings is not None:
        loaded = load_all(settings)
        problems += loaded.problems + report_examples(loaded.ruleset, figures)
    for problem in problems:
        print(problem)
    if problems:
        print("\n".join(figures + [f"{len(problems)} problem(s) found"]), file=sys.stderr)
        return 1
    assert settings is not None
    print(f"ok: {len(loaded.sources)} source(s), {len(loaded.ruleset.rules)} rule(s), "
          f"{len(loaded.subscribers)} subscriber(s); config {path or '(built-in defaults)'}")
    for line in figures:
        print(line)
    return 0


def report_examples(ruleset: Any, out: list[str]) -> list[Problem]:
    """Each rule's figures on the labelled examples its file points at."""
    from monitor.evaluate import evaluate, read_examples
    from monitor.match import Engine
    problems = []
    for rule in ruleset.rules:
        if not rule.examples:
            continue
        try:
            examples, skipped = read_examples(Path(rule.examples))
        except ConfigError as exc:
            problems.append(Problem(rule.file, rule.line, f"rule '{rule.id}': examples: {exc}"))
            continue
        figures = evaluate(Engine(type(ruleset)((rule,))), rule.id, examples, rule.examples,
                           skipped)
        out.append(f"rule {rule.id} on {rule.examples} [{figures.mode}]: {figures.summary()}")
    return problems


def cmd_once(args: argparse.Namespace) -> int:
    settings = settings_of(args)
    loaded = load_all(settings)
    log_problems(loaded.problems)
    started = time.monotonic()
    report = asyncio.run(_once(settings, loaded))
    print_summary(report, time.monotonic() - started)
    return 0


async def _once(settings: Settings, loaded: Loaded) -> CycleReport:
    async with running(settings, loaded) as ctx:
        return await run_cycle(ctx, only_due=False)


def print_summary(report: CycleReport, seconds: float, out: Any = None) -> None:
    out = out or sys.stdout
    failed = report.failed_sources
    lines = [f"cycle done in {seconds:.1f} s",
             f"  sources:  {len(report.ok)} ok ({report.total('not_modified')} unchanged), "
             f"{len(failed)} failed",
             f"  articles: {report.total('new')} new, {report.total('duplicates')} already seen",
             f"  matches:  {report.total('matches')}",
             f"  alerts:   {report.sent} sent, {report.failed} failed"]
    lines += [f"  failed source {s.source_id}: {s.error}" for s in failed]
    print("\n".join(lines), file=out)


def cmd_channels(args: argparse.Namespace) -> int:
    """Every registered channel with the keys a subscriber entry gives it."""
    from monitor.notify import CHANNEL_TYPES
    for kind in CHANNEL_TYPES.values():
        print(f"{kind.name}: {kind.summary}")
        for name, info in kind.fields.model_fields.items():
            required = "required" if info.is_required() else f"default {info.default!r}"
            kind_of = info.annotation
            shown = kind_of.__name__ if isinstance(kind_of, type) else \
                str(kind_of).replace("typing.", "")
            print(f"  {name}: {shown} ({required})")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from monitor.scheduler import Daemon, ListWatcher, RuleWatcher
    settings = settings_of(args)
    loaded = load_all(settings)
    log_problems(loaded.problems)

    async def daemon() -> None:
        async with running(settings, loaded) as ctx:
            service = Daemon(ctx, RuleWatcher(ctx, loaded.rule_files), ListWatcher(ctx))
            from monitor.ops import serve_ops
            async with serve_ops(settings.http_host, settings.http_port, ctx, service):
                await service.run()
    asyncio.run(daemon())
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from monitor.demo import run_demo
    if args.log_level == "INFO":          # the alerts are the output; keep routine logs out
        logging.getLogger().setLevel(logging.WARNING)
    return run_demo(sys.stdout)


def cmd_test_rule(args: argparse.Namespace) -> int:
    from monitor.trial import run_trial
    settings = settings_of(args)
    if args.labels:
        from monitor.trial import run_labelled
        return run_labelled(settings, args.rule_id, Path(args.labels), args.text_column,
                            args.json, sys.stdout, semantic=not args.keywords_only)
    return run_trial(settings, args.rule_id, args.days, args.file, args.url, sys.stdout)


def cmd_deliveries(args: argparse.Namespace) -> int:
    from monitor.store import open_store
    settings = settings_of(args)
    store = open_store(settings.database_url())
    now = datetime.now(timezone.utc)
    if args.action == "retry":
        if not args.delivery_id and not args.all_dead:
            raise ConfigError("deliveries retry needs a delivery id or --all-dead")
        count = store.retry_deliveries(now, args.delivery_id, args.all_dead)
        print(f"{count} delivery(ies) queued again; the next cycle sends them")
        return 0 if count else 1
    rows = store.deliveries(args.status.split(","))
    print(f"{'ID':<29} {'STATUS':<9} {'TRIES':>5} {'SUBSCRIBER':<16} {'RULE':<24} "
          f"{'NEXT TRY':<17} LAST ERROR")
    for row in rows:
        next_try = row.next_attempt.strftime("%Y-%m-%d %H:%M") if row.next_attempt else "-"
        print(f"{row.id:<29} {row.status:<9} {row.attempts:>5} {row.subscriber[:16]:<16} "
              f"{row.rule_id[:24]:<24} {next_try:<17} {(row.last_error or '')[:80]}")
    counts = store.count_deliveries()
    print(", ".join(f"{count} {status}" for status, count in sorted(counts.items())) or
          "no deliveries")
    return 0


def cmd_sources(args: argparse.Namespace) -> int:
    settings = settings_of(args)
    if args.action == "import":
        from monitor.opml import import_opml
        if not args.file:
            raise ConfigError("sources import needs an OPML file")
        added = import_opml(Path(args.file), settings.sources)
        print(f"{added} source(s) added to {settings.sources}")
        return 0
    from monitor.store import open_store
    from monitor.config import load_sources
    store = open_store(settings.database_url())
    specs, _ = load_sources(settings.sources)
    store.sync_sources(specs, datetime.now(timezone.utc))
    print(f"{'SOURCE':<24} {'STATE':<9} {'HTTP':>4} {'FAILS':>5} {'ITEMS':>5} {'STORED':>6} "
          f"{'LAST SUCCESS':<17} LAST ERROR")
    configured = {s.id for s in specs}
    for row in store.sources():
        if row.id not in configured:
            continue
        state = "disabled" if row.disabled else "failing" if row.consecutive_failures else (
            "ok" if row.last_success else "new")
        success = row.last_success.strftime("%Y-%m-%d %H:%M") if row.last_success else "-"
        print(f"{row.id[:24]:<24} {state:<9} {row.http_status or '-':>4} "
              f"{row.consecutive_failures:>5} {row.items_seen:>5} {row.articles_total:>6} "
              f"{success:<17} {(row.last_error or '')[:90]}")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from monitor.store import open_store
    settings = settings_of(args)
    store = open_store(settings.database_url())
    rows = store.sources()
    now = datetime.now(timezone.utc)
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    counts = store.counts_since(today)
    deliveries = store.count_deliveries()
    attempts = [r.last_attempt for r in rows if r.last_attempt]
    failing = [r for r in rows if r.consecutive_failures and not r.disabled]
    print(f"database     {masked_credentials(settings.database)}")
    print(f"sources      {len(rows)}: {len(rows) - len(failing)} ok, {len(failing)} failing, "
          f"{sum(r.disabled for r in rows)} disabled")
    last = max(attempts).strftime("%Y-%m-%d %H:%M:%S UTC") if attempts else "never"
    print(f"last fetch   {last}")
    print(f"today        {counts['articles']} articles, {counts['matches']} matches, "
          f"{counts['alerts']} alerts")
    print(f"deliveries   {deliveries.get('pending', 0)} pending, {deliveries.get('dead', 0)} dead, "
          f"{deliveries.get('sent', 0)} sent")
    for row in failing[:10]:
        print(f"  failing {row.id}: {row.last_error}")
    return 0


def cmd_db(args: argparse.Namespace) -> int:
    from monitor import migrations
    from monitor.store import make_engine
    settings = settings_of(args)
    engine = make_engine(settings.database_url())
    if args.action == "current":
        print(f"schema {migrations.current(engine) or 'empty'}, code needs {migrations.head()}")
        return 0
    before, after = migrations.upgrade(engine)
    print(f"database upgraded from {before or 'empty'} to {after}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
