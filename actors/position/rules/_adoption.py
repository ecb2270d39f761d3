"""Creating a monitor's state for a position found without one: rebuilt from the daemon's own orders,
adopted with the default plan, an orphan of orders that outlived their position; and resumed after a
restart.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from decimal import Decimal

from actors.position.rules._orders import own_link
from actors.position.rules._plans import ladder_for
from actors.position.rules._prices import (
    breakeven_price,
    closing_side,
    more_protective,
    side_sign,
)
from actors.position.rules._state import STOP_KEY, MonitorState, Phase, RulesConfig
from messages.gateway import (
    PositionView,
)
from messages.models import (
    Approach,
    Instrument,
    Intent,
    MonitorId,
    Order,
    Plan,
    Position,
    Role,
    Side,
)


def position_id_for(monitor: MonitorId, opened_ms: int) -> str:
    """A position id for a position the daemon did not open: the same after a crash (it depends
    only on the position), different for the next position on the same symbol."""
    digest = hashlib.sha256(f"{monitor}:{opened_ms}".encode()).hexdigest()
    return "a" + digest[:11]


def adopt(
    monitor: MonitorId,
    view: PositionView,
    now_ms: int,
    config: RulesConfig,
    inherited: frozenset[str] = frozenset(),
) -> MonitorState | None:
    """A state for a position found without one: rebuilt from the daemon's own orders (their
    link ids), or a new adopted plan; with no open position, an orphan state when the daemon's
    orders outlived it. None when there is nothing to guard or no instrument yet.
    `inherited`: the previous position's stops on this key (R11), never taken for this one's.
    Its last change is the exchange's own (the position's or its orders' update time): taking
    charge of a position is not a fill, so it does not make the monitor critical by itself."""
    position = view.position
    if position is None or not position.is_open:
        return _orphan(monitor, view, now_ms)
    state = _adopt_open(monitor, view, position, now_ms, config, inherited)
    return replace(state, inherited=inherited, open_time_ms=position.opened_ms) if state else None


def _adopt_open(
    monitor: MonitorId,
    view: PositionView,
    position: Position,
    now_ms: int,
    config: RulesConfig,
    inherited: frozenset[str],
) -> MonitorState | None:
    if view.instrument is None:
        return None
    instrument, side, avg = view.instrument, Side(position.side), position.avg_price
    ours_by_position: dict[str, list[Order]] = {}
    for order in view.orders:
        link = order.link
        if link is not None and order.position_idx == monitor.position_idx and order.link_id not in inherited:
            ours_by_position.setdefault(link.position_id, []).append(order)
    if ours_by_position:
        position_id = max(
            ours_by_position,
            key=lambda pid: (
                any(own_link(o).role is Role.STOP for o in ours_by_position[pid]),
                len(ours_by_position[pid]),
            ),
        )
        return _rebuild(monitor, position_id, ours_by_position[position_id], position, instrument, now_ms, config)
    sign = side_sign(side)
    tp_prices = tuple(
        instrument.snap_price(avg * (1 + sign * d / 100), up=side == Side.BUY) for d in config.tp_distance_percents
    )
    stop = instrument.snap_price(avg * (1 - sign * config.stop_distance_percent / 100), up=side == Side.BUY)
    plan = config.with_exits(Plan(Approach.ADOPTED, side, config.ladder_percents, tp_prices, stop))
    return MonitorState(
        monitor,
        position_id_for(monitor, position.opened_ms or now_ms),
        plan,
        Phase.MONITORING,
        now_ms,
        ladder_size=position.size,
        last_size=position.size,
        peak_size=position.size,
        avg_price=avg,
        last_change_ms=position.updated_ms,
        opened_ms=position.opened_ms or position.created_ms,
        realised_start=position.cum_realised_pnl,
        realised_seen=position.cum_realised_pnl,
    )


def _orphan(monitor: MonitorId, view: PositionView, now_ms: int) -> MonitorState | None:
    """The daemon's orders left on a flat position that no monitor guards (its monitor's life
    ended in a crash before the clean-up): a state that owns them, confirms the position is gone
    as R6 does (two fresh snapshots, or a pushed flat row), cancels them and retires. It has no
    plan to guard with: should the position turn out open it retires at once and is adopted."""
    mine: dict[str, list[Order]] = {}
    for order in view.orders:
        if order.link is not None and order.is_open and order.position_idx == monitor.position_idx:
            mine.setdefault(order.link.position_id, []).append(order)
    if not mine:
        return None
    position_id = max(mine, key=lambda pid: len(mine[pid]))  # others: the next discovery's
    order = mine[position_id][0]
    side = Side(order.side) if own_link(order).role is Role.ENTRY else closing_side(Side(order.side))
    plan = Plan(Approach.ADOPTED, side, (Decimal(100),), (), Decimal(0))
    return MonitorState(
        monitor,
        position_id,
        plan,
        Phase.MONITORING,
        now_ms,
        orphan=True,
        open_links=frozenset(o.link_id for o in mine[position_id]),
        last_change_ms=max(o.updated_ms for o in mine[position_id]),
    )


def _rebuild(
    monitor: MonitorId,
    position_id: str,
    orders: list[Order],
    position: Position,
    instrument: Instrument,
    now_ms: int,
    config: RulesConfig,
) -> MonitorState:
    side, avg = Side(position.side), position.avg_price
    by_key: dict[Intent, Order] = {}
    generations: dict[Intent, int] = {}
    for order in orders:
        key = own_link(order).intent
        generations[key] = max(generations.get(key, 0), own_link(order).generation)
        if order.is_open:
            by_key[key] = order
    tp_levels = sorted(k.level for k in by_key if k.role is Role.TAKE_PROFIT)
    levels = max(tp_levels) if tp_levels else 1
    percents = ladder_for(levels, config)
    sign = side_sign(side)
    tp = {k.level: order for k, order in by_key.items() if k.role is Role.TAKE_PROFIT}
    tp_prices = tuple(
        price
        if (tp_order := tp.get(n)) is not None and (price := tp_order.price)
        else instrument.snap_price(avg * (1 + sign * Decimal(n) / 100), up=side == Side.BUY)
        for n in range(1, levels + 1)
    )
    stop = by_key.get(STOP_KEY)
    stop_price = (
        stop.trigger_price
        if stop is not None and stop.trigger_price
        else instrument.snap_price(avg * (1 - sign * config.stop_distance_percent / 100), up=side == Side.BUY)
    )
    entries_resting = any(k.role is Role.ENTRY for k in by_key)
    later_entries = any(k.role is Role.ENTRY and k.level > 1 for k in generations)
    approach = Approach.FAST if levels == 1 and not later_entries else Approach.CONSERVATIVE
    tp1_done = levels > 1 and 1 not in tp and any(n in tp for n in range(2, levels + 1))
    be = breakeven_price(side, avg, config.breakeven_offset, instrument)
    at_breakeven = (
        stop is not None and stop.trigger_price is not None and not more_protective(side, be, stop.trigger_price)
    )
    filled = frozenset({1}) if tp1_done else frozenset()
    phase = Phase.PROFIT_TAKING if tp1_done else Phase.BUILDING if entries_resting else Phase.MONITORING
    plan = config.with_exits(Plan(approach, side, percents, tp_prices, stop_price))
    ladder = position.size
    if tp1_done:  # the ladder was computed on the size before TP1: recover it from the TPs left
        rest = [n for n in range(2, levels + 1) if n in tp]
        share = sum((percents[n - 1] for n in rest), Decimal(0))
        ladder = instrument.round_qty(sum(tp[n].qty for n in rest) * 100 / share)
    return MonitorState(
        monitor,
        position_id,
        plan,
        phase,
        now_ms,
        generations=generations,
        filled_tps=filled,
        tp1_done=tp1_done,
        breakeven_done=tp1_done and at_breakeven,
        ladder_size=ladder,
        last_size=position.size,
        peak_size=ladder,
        avg_price=avg,
        open_links=frozenset(o.link_id for o in by_key.values()),
        last_change_ms=max([position.updated_ms] + [o.updated_ms for o in orders]),
        opened_ms=position.opened_ms or position.created_ms,
        realised_start=position.cum_realised_pnl,
        realised_seen=position.cum_realised_pnl,
    )


def resumed(state: MonitorState) -> MonitorState:
    """A state loaded after a restart: snapshot ids start again from 1 in a new gateway, so the
    counters relative to them start over (a pending command again needs two fresh snapshots to
    be believed absent; a flat position two snapshots to be believed closed)."""
    restart = lambda p: replace(p, sent_snapshot=0, seen_snapshot=0, absent=0)
    return replace(
        state,
        pending={k: restart(p) for k, p in state.pending.items()},
        cleanup={k: restart(p) for k, p in state.cleanup.items()},
        gone_snapshots=(),
        last_snapshot=0,
    )
