"""Property tests: random sequences of fills, partial fills, price moves, manual reduces,
rejections and unresolved outcomes, under each kind of exit (R13 stop ladders, R14 trailing); the
invariants are checked after every step."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from actors.position._check_cycle import command_message
from actors.position.rules import EMERGENCY_KEY, STOP_KEY, RulesConfig, breakeven_price
from messages.gateway import Priority, Rejected, Unresolved
from messages.models import MonitorId, OrderLink, Role, Side, StopAfter
from simulator import Simulator
from tests.rules_driver import Driver
from tests.stubs.book import apply, open_conservative

BTC = MonitorId("main", "BTCUSDT")

step = st.one_of(
    st.tuples(st.just("price"), st.integers(-400, 400)),  # move in basis points
    st.tuples(st.just("fill_entry"), st.sampled_from([2, 3])),
    st.tuples(st.just("partial_tp"), st.integers(1, 4), st.integers(1, 99)),
    st.tuples(st.just("manual_reduce"), st.integers(1, 60)),  # percent of the size
    st.tuples(st.just("manual_add"), st.integers(1, 50)),
    st.tuples(st.just("cancel_stop"), st.just(0)),
    st.tuples(st.just("reject_next"), st.sampled_from([110001, 110093, 10001])),
    st.tuples(st.just("unresolved_next"), st.booleans()),
    st.tuples(st.just("stale"), st.just(0)),
)


EXITS = [
    RulesConfig(),
    RulesConfig(stop_after=StopAfter.PREVIOUS_TP, trail_activate="tp1", trail_percent=Decimal("0.5")),
    RulesConfig(stop_after=StopAfter.TWO_BACK, trail_activate="profit:0.3", trail_percent=Decimal("0.3")),
]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    side=st.sampled_from(["Buy", "Sell"]),
    entries=st.integers(1, 3),
    steps=st.lists(step, min_size=1, max_size=40),
    config=st.sampled_from(EXITS),
)
def test_invariants_hold_after_every_step(side, entries, steps, config):
    sim = Simulator(seed=3, symbols=4)
    ex = sim.exchange
    ex.set_price("BTCUSDT", Decimal("65000"))
    open_conservative(ex, "main", "BTCUSDT", side, Decimal("0.100"), entries_filled=entries)
    account = ex.accounts["main"]
    external = sim.place(
        "main",
        symbol="BTCUSDT",
        side="Buy" if side == "Sell" else "Sell",
        orderType="Limit",
        qty="0.001",
        price="130000" if side == "Buy" else "30000",
        orderLinkId="trader-own-1",
    )
    external_id = external["orderId"]
    driver = Driver(ex, BTC, config)
    sign = 1 if side == "Buy" else -1
    placed_links: list[str] = []
    oversize_rejections = 0
    unprotected_checks = 0
    last_trigger: Decimal | None = None

    def run_check(stale: bool = False, injected: list | None = None) -> None:
        nonlocal oversize_rejections

        def override(command):
            nonlocal oversize_rejections
            if injected:
                kind, value = injected.pop(0)
                if kind == "reject":
                    return Rejected(value, "injected")
                if value:  # unresolved, but the exchange acted (a lost answer)
                    apply(ex, "main", "BTCUSDT", command_message(BTC, command))
                return Unresolved("injected")
            outcome = apply(ex, "main", "BTCUSDT", command_message(BTC, command))
            if (
                isinstance(outcome, Rejected)
                and outcome.code == 110017
                and command.key is not None
                and command.key.role is Role.TAKE_PROFIT
            ):
                oversize_rejections += 1
            return outcome

        driver.override = override
        sent, _ = driver.check(stale=stale)
        placed_links.extend(c.link_id for c in sent if c.action == "place")
        trailing = [n for n, c in enumerate(sent) if c.priority is Priority.TRAIL]
        if trailing:  # R14: last, after everything more urgent; only its own follow-ups after it
            event("trailed")
            assert all(c.key in (STOP_KEY, EMERGENCY_KEY) for c in sent[trailing[0] :]), sent

    run_check()
    for action in steps:
        if driver.state.tp1_done:
            event("TP1 filled")
        if driver.state is not None and driver.state.retired:
            break
        injected: list = []
        stale = False
        kind, *args = action
        position = account.positions.get("BTCUSDT")
        size = position.size if position else Decimal(0)
        if kind == "price":
            ex.set_price("BTCUSDT", ex.last_price("BTCUSDT") * (1 + Decimal(args[0]) / 10_000))
        elif kind == "fill_entry":
            order = account.by_link.get(OrderLink("pos1", Role.ENTRY, args[0], 0).build())
            if order is not None and order.is_open:
                ex.fill_order(account, order.order_id)
        elif kind == "partial_tp":
            open_tps = [
                o
                for o in account.open_orders("BTCUSDT")
                if (link := OrderLink.parse(o.link_id))
                and link.role is Role.TAKE_PROFIT
                and link.level == args[0]
                and o.status in ("New", "PartiallyFilled")
            ]
            if open_tps:
                qty = ex.specs["BTCUSDT"].instrument().round_qty(open_tps[0].leaves * args[1] / 100)
                if qty > 0:
                    ex.fill_order(account, open_tps[0].order_id, qty)
        elif kind == "manual_reduce" and size > 0:
            qty = ex.specs["BTCUSDT"].instrument().round_qty(size * args[0] / 100)
            if qty > 0:
                sim.place(
                    "main", symbol="BTCUSDT", side="Sell" if side == "Buy" else "Buy", orderType="Market", qty=str(qty)
                )
        elif kind == "manual_add" and size > 0:
            sim.place("main", symbol="BTCUSDT", side=side, orderType="Market", qty=str(Decimal(args[0]) / 1000))
        elif kind == "cancel_stop":
            for order in account.open_orders("BTCUSDT"):
                link = OrderLink.parse(order.link_id)
                if link and link.role is Role.STOP:
                    ex.cancel_order(account, {"category": "linear", "symbol": "BTCUSDT", "orderId": order.order_id})
        elif kind == "reject_next":
            injected.append(("reject", args[0]))
        elif kind == "unresolved_next":
            injected.append(("unresolved", args[0]))
        elif kind == "stale":
            stale = True
        run_check(stale=stale, injected=injected)
        failed = bool(stale or kind in ("reject_next", "unresolved_next", "cancel_stop"))

        # --- invariants -----------------------------------------------------------------
        position = account.positions.get("BTCUSDT")
        size = position.size if position and position.side == side else Decimal(0)
        ours = [
            o
            for o in account.open_orders("BTCUSDT")
            if (link := OrderLink.parse(o.link_id)) and link.position_id == "pos1"
        ]
        stops = [o for o in ours if OrderLink.parse(o.link_id).role is Role.STOP and o.status == "Untriggered"]
        active_ro = [o for o in ours if o.is_active_reduce_only]
        if size > 0 and not driver.state.retired:
            covered = any(s.qty >= size for s in stops)
            being_placed = STOP_KEY in driver.state.pending or EMERGENCY_KEY in driver.state.pending
            if covered:
                unprotected_checks = 0
            elif not failed and not being_placed:
                unprotected_checks += 1
            assert unprotected_checks <= 1, f"no stop covering {size} for {unprotected_checks} checks"
        assert sum((o.leaves for o in active_ro), Decimal(0)) <= size  # never oversized
        assert oversize_rejections == 0  # never asked for too much
        assert len(placed_links) == len(set(placed_links))  # no id used twice
        state = driver.state
        if stops and state.breakeven_done and not failed and size > 0:  # R2/R13: never below breakeven again
            instrument = ex.specs["BTCUSDT"].instrument()
            floor = breakeven_price(Side(side), state.avg_price, config.breakeven_offset, instrument)
            assert sign * (stops[0].trigger_price - floor) >= 0 or STOP_KEY in state.pending
        if stops:
            trigger = stops[0].trigger_price
            if last_trigger is not None and len(stops) == 1:
                assert sign * (trigger - last_trigger) >= 0, "the stop moved against the position"
            last_trigger = trigger
        assert "trader-own-1" not in {c.link_id for c in driver.sent}  # external untouched
        external_order = account.orders[external_id]
        assert external_order.status in ("New", "Filled") and external_order.cancel_type == "UNKNOWN"
    event(f"ended: {driver.state.retired or driver.state.phase}")
    if any(c.key == EMERGENCY_KEY for c in driver.sent):
        event("emergency close")
    if any(c.key == STOP_KEY and c.action == "place" for c in driver.sent):
        event("stop (re)placed")
