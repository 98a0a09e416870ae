"""The hub's buffers are bounded in bytes as well as in messages (issue 16): in-process,
since the bound is on what the hub holds, which no client can observe byte for byte."""

from __future__ import annotations

from orchestrator.hub import FirehoseLog, FirehoseSubscriber, Subscriber


async def test_a_subscriber_past_its_byte_bound_is_lagging() -> None:
    subscriber = Subscriber("order", limit=100, limit_bytes=1000)
    for version in range(1, 4):
        subscriber.push(version, b"m" * 300)
    assert not subscriber.lagging  # 900 bytes
    subscriber.push(4, b"m" * 300)
    assert subscriber.lagging
    assert await subscriber.next_batch() == []


async def test_one_message_larger_than_the_bound_still_goes_through() -> None:
    subscriber = Subscriber("order", limit=100, limit_bytes=1000)
    subscriber.push(1, b"m" * 5000)
    assert await subscriber.next_batch() == [(1, b"m" * 5000)]
    assert not subscriber.lagging


async def test_the_firehose_log_keeps_at_most_its_byte_bound() -> None:
    log = FirehoseLog(limit=100, limit_bytes=1000)
    reader = FirehoseSubscriber(log)
    for version in range(1, 11):
        log.append(version, b"m" * 300)
    assert log.held() == 3  # the newest 900 bytes
    assert await reader.next_batch() == []  # the log left it behind
    assert reader.lagging
    log.append(11, b"m" * 5000)
    assert log.held() == 1  # always the newest
