"""`news-monitor test-rule`: what one rule would match and why, before subscribers see it."""

from __future__ import annotations

from conftest import SEED, Workdir, rss, seed_item
from servers import FeedServer


def test_test_rule_over_stored_articles(workdir: Workdir, feeds: FeedServer) -> None:
    feeds.put("/wire.xml", rss([seed_item(), {"title": "Markets calm",
                                              "link": "https://news.example.org/m",
                                              "body": "<p>Nothing happened.</p>"}]))
    workdir.sources = [{"id": "wire", "url": feeds.base + "/wire.xml"}]
    workdir.subscribers = [{"name": "a", "console": True, "rules": ["gaza-ceasefire"]},
                           {"name": "b", "console": True, "rules": "*"}]
    assert workdir.cli("once").returncode == 0
    result = workdir.cli("test-rule", "gaza-ceasefire", "--days", "1")
    assert result.returncode == 0, result.stderr
    assert "MATCH Ceasefire Negotiations in Gaza Break Down" in result.stdout
    assert "why: " in result.stdout and "actors hamas" in result.stdout
    assert "**Hamas**" in result.stdout
    assert "1 of 2 article(s) match" in result.stdout and "2 alert(s)" in result.stdout


def test_test_rule_on_a_file_and_unknown_rule(workdir: Workdir) -> None:
    result = workdir.cli("test-rule", "gaza-ceasefire", "--file", str(SEED))
    assert result.returncode == 0, result.stderr
    assert "1 of 1 article(s) match" in result.stdout
    missing = workdir.cli("test-rule", "no-such-rule", "--file", str(SEED))
    assert missing.returncode == 2 and "no rule 'no-such-rule'" in missing.stderr
