"""Charts as server-rendered SVG: no script, no CDN, readable with styles off (a title per bar)."""

from __future__ import annotations

from markupsafe import Markup, escape


def bars(series: list[tuple[str, list[int]]], labels: list[str], width: int = 840,
         height: int = 160, title: str = "") -> Markup:
    """Side-by-side bar series over the same buckets (e.g. articles and alerts per hour)."""
    peak = max((max(values) for _, values in series if values), default=0) or 1
    count = max(len(labels), 1)
    step = width / count
    bar = max(step / max(len(series), 1) - 0.2, 0.4)
    parts = [f'<svg class="chart" viewBox="0 0 {width} {height + 18}" width="100%" '
             f'role="img" aria-label="{escape(title)}"><title>{escape(title)}</title>',
             f'<line x1="0" y1="{height}" x2="{width}" y2="{height}" class="axis"/>']
    for index, (name, values) in enumerate(series):
        for position, value in enumerate(values):
            if not value:
                continue
            h = value / peak * (height - 4)
            x = position * step + index * bar
            parts.append(f'<rect class="s{index}" x="{x:.1f}" y="{height - h:.1f}" '
                         f'width="{bar:.1f}" height="{h:.1f}"><title>{escape(name)} '
                         f'{escape(labels[position])}: {value}</title></rect>')
    for position in range(0, count, max(count // 7, 1)):
        parts.append(f'<text x="{position * step:.1f}" y="{height + 14}" class="tick">'
                     f'{escape(labels[position][:10])}</text>')
    parts.append(f'<text x="{width - 2}" y="10" class="tick end">max {peak}</text></svg>')
    return Markup("".join(parts))


def spark(values: list[int], width: int = 140, height: int = 24, title: str = "") -> Markup:
    """A small per-day bar chart (a rule's hits)."""
    peak = max(values, default=0) or 1
    step = width / max(len(values), 1)
    parts = [f'<svg class="spark" viewBox="0 0 {width} {height}" width="{width}" '
             f'height="{height}" role="img" aria-label="{escape(title)}">'
             f'<title>{escape(title)}</title>']
    for position, value in enumerate(values):
        h = value / peak * (height - 2) if value else 0
        parts.append(f'<rect class="s0" x="{position * step:.1f}" y="{height - h:.1f}" '
                     f'width="{max(step - 1, 1):.1f}" height="{h:.1f}"/>')
    parts.append("</svg>")
    return Markup("".join(parts))
