"""Which live node each shard should go to: rendezvous (highest random weight) hashing.

Each shard goes to the node whose hash of (node address, shard) is highest. When a node
joins or leaves, only the shards it wins or held move, about 1/N of them, and every node
computes the same answer from the same member list without talking to the others. The
address, not the node id, is hashed: a node restarted at the same address (a new
incarnation, a new id) gets the same shards back.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable


def weight(address: str, shard: int) -> int:
    digest = hashlib.blake2b(f"{address}#{shard}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def placement(addresses: Iterable[str], shards: int) -> dict[int, str]:
    """shard -> the address of the node it should go to; empty with no node."""
    nodes = sorted(set(addresses))
    if not nodes:
        return {}
    return {shard: max(nodes, key=lambda a: weight(a, shard)) for shard in range(shards)}
