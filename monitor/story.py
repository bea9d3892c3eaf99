"""Pure near-duplicate detection: SimHash over word shingles, so one wire story is one story.

Outlets carrying the same agency copy change a headline or trim a paragraph; exact URLs and
GUIDs differ. A 64-bit SimHash of the lead's word 3-grams stays within a few bits across such
edits. Four 16-bit bands are stored indexed: two hashes within 3 bits share at least one band
(pigeonhole), so finding candidates is an index lookup, never a scan.
"""

from __future__ import annotations

import hashlib
import re

LEAD_WORDS = 150
MAX_DISTANCE = 3
_WORDS = re.compile(r"\w+")


def shingles(text: str, size: int = 3) -> list[str]:
    words = _WORDS.findall(text.lower())[:LEAD_WORDS]
    if len(words) < size:
        return [" ".join(words)] if words else []
    return [" ".join(words[i:i + size]) for i in range(len(words) - size + 1)]


def simhash(text: str) -> int | None:
    """64-bit SimHash of the text's lead, or None when there is too little text to tell."""
    grams = shingles(text)
    if len(grams) < 8:
        return None
    bits = [format(int.from_bytes(hashlib.blake2b(g.encode(), digest_size=8).digest(), "big"),
                   "064b") for g in grams]
    half = len(bits) / 2
    columns = ("".join(column).count("1") for column in zip(*bits))
    return int("".join("1" if count > half else "0" for count in columns), 2)


def to_signed(value: int) -> int:
    """Databases store BIGINT signed."""
    return value - (1 << 64) if value >= 1 << 63 else value


def bands(value: int) -> list[int]:
    unsigned = value & ((1 << 64) - 1)
    return [(unsigned >> shift) & 0xFFFF for shift in (48, 32, 16, 0)]


def distance(a: int, b: int) -> int:
    return ((a ^ b) & ((1 << 64) - 1)).bit_count()
