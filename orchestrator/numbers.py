"""Whole numbers from headers, query strings and cursors, refused rather than crashed on.

``int`` raises on a string of more than 4300 digits and SQLite refuses an integer beyond
64 bits, so a number is taken only when it has at most 19 ASCII digits and fits in 63
bits; anything else is not a number, which the caller answers with a 4xx.
"""

from __future__ import annotations

MAX_INTEGER = 2**63 - 1
MAX_DIGITS = len(str(MAX_INTEGER))


def whole_number(text: str) -> int | None:
    """``text`` as a whole number SQLite can hold, or None. ASCII digits only:
    ``str.isdigit`` also accepts '²', which ``int`` refuses."""
    if not (text.isascii() and text.isdigit()) or len(text) > MAX_DIGITS:
        return None
    value = int(text)
    return value if value <= MAX_INTEGER else None
