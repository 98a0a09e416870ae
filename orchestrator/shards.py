"""Shards: which fixed slice of the orders an order id (or an Idempotency-Key) falls in.

``shard = crc32(text) mod S``, with S fixed for the life of a database (kept in its
``meta``; 256 by default). One node owns each shard at a time in a cluster (see
``orchestrator.cluster``), so the shard of an order id says which node applies its events.
A create makes its order's id in a shard chosen first: one the node owns, or the shard of
the create's Idempotency-Key, so that a retried create reaches the same owner as the first.
"""

from __future__ import annotations

import zlib

from orchestrator.ids import new_order_id

# Shards of a new PostgreSQL database; the count is kept in it and never changes after.
SHARDS = 256
# Suffixes tried on one random id before drawing another: 4,096 (three hex digits) give a
# shard out of 256 with a chance of missing below 1e-7, at about 20 us on the rare create.
_SUFFIXES = 4096


def shard_of(text: str, shards: int) -> int:
    """The shard of an order id or an Idempotency-Key."""
    return zlib.crc32(text.encode()) % shards


def order_id_in(shard: int, shards: int) -> str:
    """A new order id (a time-ordered UUID, see ``ids``) whose shard is ``shard``.

    Its last three hex digits are chosen for it: crc32 runs on from the rest of the id, so
    each suffix costs a crc32 of three bytes."""
    while True:
        base = new_order_id()
        head = base[:-3].encode()
        start = zlib.crc32(head)
        for suffix in range(min(_SUFFIXES, 16**3)):
            tail = b"%03x" % suffix
            if zlib.crc32(tail, start) % shards == shard:
                return (head + tail).decode()
