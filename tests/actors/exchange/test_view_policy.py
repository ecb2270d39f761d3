"""How the gateway answers a view (actors/exchange/_view_policy.py): one row per situation."""

from dataclasses import replace

import pytest

from actors.exchange._view_policy import Answer, ViewFacts, answer_view

VIEW = ViewFacts(
    symbol="BTCUSDT",
    wants_closed=False,
    must_read=False,
    stream_fresh=False,
    doubtful=False,
    unsettled=False,
    cache_fresh=False,
    backing_off=False,
    full_read=False,
    symbol_read=None,
    symbol_read_cheaper=False,
)
SNAPSHOT = replace(VIEW, symbol=None)


@pytest.mark.parametrize(
    ("situation", "facts", "expected"),
    [
        ("stream fresh: from the pushed cache", replace(VIEW, stream_fresh=True), Answer.PUSHED),
        (
            "stream fresh, a fill's position push due: parked",
            replace(VIEW, stream_fresh=True, unsettled=True),
            Answer.PARK,
        ),
        ("stream fresh, but a read asked for", replace(VIEW, stream_fresh=True, must_read=True), Answer.READ_FULL),
        (
            "stream fresh, but an unresolved write owes reads",
            replace(VIEW, stream_fresh=True, doubtful=True),
            Answer.READ_FULL,
        ),
        ("stream fresh snapshot", replace(SNAPSHOT, stream_fresh=True), Answer.PUSHED),
        ("cache fresh enough", replace(VIEW, cache_fresh=True), Answer.CACHED),
        ("cache fresh, finished orders wanted", replace(VIEW, cache_fresh=True, wants_closed=True), Answer.CLOSED_ONLY),
        ("backing off a failing account", replace(VIEW, backing_off=True), Answer.STALE),
        ("a full read in flight", replace(VIEW, full_read=True), Answer.JOIN_FULL),
        (
            "a full read cannot bring finished orders",
            replace(VIEW, full_read=True, wants_closed=True),
            Answer.READ_SYMBOL,
        ),
        ("a symbol read in flight", replace(VIEW, symbol_read=False), Answer.JOIN_SYMBOL),
        ("a symbol read with finished orders", replace(VIEW, symbol_read=True, wants_closed=True), Answer.JOIN_SYMBOL),
        ("a symbol read without them", replace(VIEW, symbol_read=False, wants_closed=True), Answer.READ_SYMBOL),
        ("nothing in flight, the book is many pages", replace(VIEW, symbol_read_cheaper=True), Answer.READ_SYMBOL),
        ("nothing in flight", VIEW, Answer.READ_FULL),
        ("a snapshot, nothing in flight", SNAPSHOT, Answer.READ_FULL),
        ("a snapshot joins a full read", replace(SNAPSHOT, full_read=True), Answer.JOIN_FULL),
    ],
)
def test_the_answer_to_a_view(situation, facts, expected):
    assert answer_view(facts) is expected, situation
