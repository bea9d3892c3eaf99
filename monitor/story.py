"""Pure near-duplicate detection: MinHash over word shingles, so one wire story is one story.

Outlets carrying the same agency copy change the headline, trim a paragraph or add a byline;
URLs and GUIDs differ. The Jaccard similarity of their word 3-gram sets stays high, and
MinHash estimates it from 32 numbers. Locality-sensitive hashing groups those numbers into 8
bands of 4, stored in indexed columns: two texts with similarity 0.7 share a band with
probability 0.86 (0.97 at 0.8), so finding candidates is an index lookup, never a scan.
Candidates are then confirmed on the full signature.
"""

from __future__ import annotations

import random
import re
import zlib

import numpy

LEAD_WORDS = 200            # the lead carries the story; later paragraphs drift between outlets
HASHES = 32
ROWS = 4                    # HASHES / ROWS bands
SAME_STORY = 0.6            # estimated Jaccard similarity from which two texts are one story
# Each of the HASHES orderings of the shingle hashes is "XOR with a fixed random mask":
# one vectorised operation, and independent enough over CRC-32 hashes.
_MASKS = numpy.array([random.Random(seed).getrandbits(32) for seed in range(1, HASHES + 1)],
                     dtype=numpy.uint32).reshape(-1, 1)
_WORDS = re.compile(r"\w+")


def shingles(text: str, size: int = 3) -> set[int]:
    """Stable 32-bit hashes of the word 3-grams of the text's lead."""
    words = _WORDS.findall(text.lower())[:LEAD_WORDS]
    grams = map(" ".join, zip(*(words[start:] for start in range(size)), strict=False))
    return set(map(zlib.crc32, map(str.encode, grams)))      # in C: a third of the time


def signature(text: str) -> list[int] | None:
    """The MinHash signature, or None when there is too little text to tell stories apart."""
    grams = shingles(text)
    if len(grams) < 12:
        return None
    values = numpy.fromiter(grams, dtype=numpy.uint32, count=len(grams))
    return [int(v) for v in (values ^ _MASKS).min(axis=1)]


def bands(sig: list[int]) -> list[int]:
    """One integer per band of ROWS values (the indexed lookup keys)."""
    return [zlib.crc32(" ".join(map(str, sig[i:i + ROWS])).encode())
            for i in range(0, HASHES, ROWS)]


def similarity(a: list[int], b: list[int]) -> float:
    return sum(x == y for x, y in zip(a, b, strict=True)) / HASHES


def encode(sig: list[int]) -> str:
    return ",".join(map(str, sig))


def decode(text: str) -> list[int]:
    return [int(part) for part in text.split(",")]
