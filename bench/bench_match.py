"""Matching benchmark: 100 / 1,000 / 10,000 generated rules over 2,000 articles of ~600 words.

Reports articles/s for the full engine (normalisation, automaton scan, boundary checks, rule
evaluation), the raw automaton scan alone over the same normalised text, and the time to
compile (reload) each rule set. Run: .venv/bin/python bench/bench_match.py
"""

from __future__ import annotations

import argparse
import json
import random
import time


from monitor.match import Engine, fold, normalize, scan_text
from monitor.models import Article
from monitor.rules import GroupDef, RuleDef, RuleSet, TermDef

SYLLABLES = ["ka", "lo", "mi", "ra", "te", "su", "vi", "no", "da", "pe", "zu", "ho", "ri",
             "ba", "ge", "fa", "xi", "qu", "wo", "ny"]


def words(count: int, rng: random.Random) -> list[str]:
    out: set[str] = set()
    while len(out) < count:
        out.add("".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 4))))
    return sorted(out)


def make_rules(count: int, vocab: list[str], actors: list[list[str]],
               rng: random.Random) -> RuleSet:
    rules = []
    for index in range(count):
        keywords = GroupDef(tuple(TermDef(w) for w in rng.sample(vocab, 3)))
        actor = rng.randrange(len(actors))
        people = GroupDef(tuple(TermDef(alias, actor=f"a{actor}") for alias in actors[actor]))
        scope = rng.choice(["article", "paragraph", "sentence"])
        rules.append(RuleDef(f"rule{index}", f"Rule {index}", (keywords, people), scope=scope))
    return RuleSet(tuple(rules))


def make_articles(count: int, vocab: list[str], topics: list[str], actors: list[list[str]],
                  rng: random.Random) -> list[Article]:
    """Articles of common words (Zipf frequencies), with a few topic words and actor names:
    the words rules look for are specific, so they are a small share of any text."""
    weights = [1 / (rank + 1) for rank in range(len(vocab))]
    out = []
    for index in range(count):
        body_words = rng.choices(vocab, weights, k=600)
        for _ in range(12):                                     # topic words of this story
            body_words[rng.randrange(600)] = rng.choice(topics)
        for _ in range(6):                                      # a few named actors per story
            body_words[rng.randrange(600)] = rng.choice(rng.choice(actors)).title()
        sentences = [" ".join(body_words[i:i + 20]).capitalize() + "." for i in range(0, 600, 20)]
        paragraphs = ["\n".join([" ".join(sentences[i:i + 5])]) for i in range(0, 30, 5)]
        out.append(Article(url=f"https://example.org/{index}", title=" ".join(
            rng.choices(vocab, weights, k=10)).capitalize(), body="\n".join(paragraphs)))
    return out


def reload_seconds(ruleset: RuleSet, actors: list[list[str]]) -> float:
    """Time to reload the rule set from YAML: read, validate, resolve, compile."""
    import shutil
    import tempfile
    from pathlib import Path

    from monitor.rules import load_rules
    lines = ["actors:"]
    used = sorted({t.actor for r in ruleset.rules for g in r.all for t in g.terms if t.actor})
    for actor in used:
        lines.append(f"  - id: {actor}\n    aliases: [{', '.join(actors[int(actor[1:])])}]")
    lines.append("rules:")
    for rule in ruleset.rules:
        keywords = ", ".join(t.text for t in rule.all[0].terms)
        lines += [f"  - id: {rule.id}", f"    title: {rule.title}", f"    scope: {rule.scope}",
                  "    all:", f"      - keywords: [{keywords}]",
                  f"      - actors: [{rule.all[1].terms[0].actor}]"]
    directory = Path(tempfile.mkdtemp())
    try:
        (directory / "rules.yaml").write_text("\n".join(lines) + "\n")
        started = time.perf_counter()
        loaded, problems, _ = load_rules(directory)
        Engine(loaded)
        elapsed = time.perf_counter() - started
    finally:
        shutil.rmtree(directory)
    assert not problems and len(loaded.rules) == len(ruleset.rules), problems[:3]
    return elapsed


def raw_scan_seconds(engine: Engine, texts: list[str]) -> float:
    automaton = engine._exact  # noqa: SLF001 (the benchmark measures the bare automaton)
    started = time.perf_counter()
    for text in texts:
        for _ in automaton.iter(text):
            pass
    return time.perf_counter() - started


def run(rule_counts: list[int], article_count: int) -> dict[str, object]:
    rng = random.Random(7)
    pool = words(50_000, rng)
    rng.shuffle(pool)
    vocab, topics, names = pool[:20_000], pool[20_000:40_000], pool[40_000:]
    actors = [names[i:i + 3] for i in range(0, 9_000, 3)]    # 3,000 actors, 3 aliases each
    articles = make_articles(article_count, vocab, topics, actors, rng)
    normalised = [scan_text(fold(normalize(a.title))) + scan_text(fold(normalize(a.body)))
                  for a in articles]
    results: dict[str, object] = {"articles": article_count,
                                  "words_per_article": 600, "runs": []}
    for count in rule_counts:
        ruleset = make_rules(count, topics, actors, random.Random(count))
        started = time.perf_counter()
        engine = Engine(ruleset)
        compile_s = time.perf_counter() - started
        started = time.perf_counter()
        matches = sum(len(engine.match(a)) for a in articles)
        full_s = time.perf_counter() - started
        scan_s = raw_scan_seconds(engine, normalised)
        run_result = {"rules": count, "compile_s": round(compile_s, 3),
                      "reload_from_yaml_s": round(reload_seconds(ruleset, actors), 3),
                      "articles_per_s": round(article_count / full_s),
                      "raw_scan_articles_per_s": round(article_count / scan_s),
                      "full_over_raw": round(full_s / scan_s, 2), "matches": matches}
        results["runs"].append(run_result)  # type: ignore[union-attr]
        print(json.dumps(run_result))
    runs = results["runs"]  # type: ignore[assignment]
    results["slowdown_10k_vs_100"] = round(runs[0]["articles_per_s"] /  # type: ignore[index]
                                           runs[-1]["articles_per_s"], 2)  # type: ignore[index]
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--articles", type=int, default=2000)
    parser.add_argument("--rules", default="100,1000,10000")
    args = parser.parse_args()
    results = run([int(n) for n in args.rules.split(",")], args.articles)
    print(json.dumps({k: v for k, v in results.items() if k != "runs"}))
    last = results["runs"][-1]  # type: ignore[index]
    checks = {"articles/s >= 4000": last["articles_per_s"] >= 4000,
              "full <= 3.5x raw scan": last["full_over_raw"] <= 3.5,
              "<= 2.5x slower than smallest": results["slowdown_10k_vs_100"] <= 2.5,
              "reload < 1 s": last["reload_from_yaml_s"] < 1.0}
    for name, ok in checks.items():
        print(f"target {name}: {'met' if ok else 'MISSED'}")


if __name__ == "__main__":
    main()
