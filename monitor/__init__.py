"""news-monitor: watches news sources and alerts subscribers when an article matches a rule."""

__version__ = "0.1.0"
