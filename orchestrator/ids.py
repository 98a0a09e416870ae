"""The ids the orchestrator makes: order ids and event ids, as UUID text.

Both are written straight from their 128 bits, as ``str(uuid.UUID(int=...))`` writes them:
building a ``uuid.UUID`` first costs more than the rest of making an event id, and an
unkeyed event gets one on every request.
"""

from __future__ import annotations

import os
import random
import time

_VERSION = 0xF << 76
_VARIANT = 0x3 << 62
_RFC_9562 = 0x2 << 62


def uuid_text(value: int) -> str:
    """128 bits as a UUID's text: 8-4-4-4-12 lowercase hex digits."""
    digits = f"{value:032x}"
    return f"{digits[:8]}-{digits[8:12]}-{digits[12:16]}-{digits[16:20]}-{digits[20:]}"


def _stamped(value: int, version: int) -> str:
    """``value`` as a UUID of ``version`` with the RFC 9562 variant, its bits overwritten."""
    return uuid_text(value & ~(_VERSION | _VARIANT) | version << 76 | _RFC_9562)


def new_order_id() -> str:
    """A time-ordered UUID (version 7, RFC 9562 section 5.7): 48 bits of Unix milliseconds,
    then random bits. New orders then land at the end of every index keyed by order id,
    instead of on a random page each, which keeps a group commit to a few pages."""
    value = (time.time_ns() // 1_000_000) << 80 | int.from_bytes(os.urandom(10)) & ((1 << 80) - 1)
    return _stamped(value, 7)


def new_event_id() -> str:
    """A random UUID (version 4) for an event its sender gave no id. It only needs to be
    unique within its order's journal, not unguessable, so the Mersenne Twister serves;
    ``os.urandom`` costs a system call per request."""
    value = random.getrandbits(128)
    return _stamped(value, 4)
