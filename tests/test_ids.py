"""Order and event ids: UUID text as the standard library writes it, of the right version."""

from __future__ import annotations

import random
import time
import uuid

from orchestrator.ids import new_event_id, new_order_id, uuid_text


def test_uuid_text_is_what_uuid_writes() -> None:
    rng = random.Random(3)
    values = [0, 1, 2**128 - 1, 2**127] + [rng.getrandbits(128) for _ in range(5000)]
    for value in values:
        assert uuid_text(value) == str(uuid.UUID(int=value))


def test_event_ids_are_random_version_4_uuids() -> None:
    ids = [new_event_id() for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    for text in ids:
        parsed = uuid.UUID(text)
        assert (parsed.version, parsed.variant, str(parsed)) == (4, uuid.RFC_4122, text)


def test_order_ids_are_version_7_uuids_in_time_order() -> None:
    before = time.time_ns() // 1_000_000
    ids = [new_order_id() for _ in range(2000)]
    after = time.time_ns() // 1_000_000
    assert len(set(ids)) == len(ids)
    for text in ids:
        parsed = uuid.UUID(text)
        assert (parsed.version, parsed.variant, str(parsed)) == (7, uuid.RFC_4122, text)
        assert before <= parsed.int >> 80 <= after  # the id's first 48 bits: its millisecond
    stamps = [uuid.UUID(text).int >> 80 for text in ids]
    assert stamps == sorted(stamps)
