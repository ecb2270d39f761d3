"""When an account's stream makes its cache fresh (actors/exchange/_stream_health.py)."""

from __future__ import annotations

from actors.exchange._stream_health import StreamHealth


def test_stream_health_needs_a_resync_per_connection_and_two_heartbeats_of_silence_end_it():
    health = StreamHealth("main", heartbeat=10.0, resync_every=60.0)
    assert health.on_subscribed(1) and not health.healthy(0.0, 0.0)
    assert health.on_resynced(1, now=1.0) and health.healthy(20.0, 0.5)
    assert not health.healthy(21.0, 0.5)  # two heartbeats silent
    assert health.resync_due(61.0, True) and not health.resync_due(60.0, True)
    assert not health.resync_due(61.0, False)  # stale: REST polling serves, no periodic resync
    assert not health.on_subscribed(1)  # an unsubscribe ack, same connection
    health.on_down()
    assert not health.healthy(62.0, 62.0)
    assert health.on_subscribed(2) and not health.on_resynced(1, now=63.0)  # a resync of the old connection
    assert not health.on_checked(3) and health.on_checked(1) and not health.on_checked(0)


def test_a_failed_first_resync_is_tried_again_with_a_backoff_until_one_works():
    health = StreamHealth("main", heartbeat=10.0, resync_every=60.0)
    assert health.on_subscribed(1) and health.resync_due(0.0, False)
    health.resyncing = True
    assert not health.resync_due(0.0, False)  # one at a time
    assert health.on_resync_failed(0.0) == 1.0 and not health.resync_due(0.9, False) and health.resync_due(1.0, False)
    assert [health.on_resync_failed(0.0) for _ in range(5)] == [2.0, 4.0, 8.0, 15.0, 15.0]
    assert health.on_resynced(1, now=20.0) and health.failures == 0
    assert not health.resync_due(79.0, True) and health.resync_due(80.0, True)
