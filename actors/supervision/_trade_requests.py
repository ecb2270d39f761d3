"""The trader's commands (`main.py trade ...`) as pure functions: a request read from its JSON
form with one line per problem, and a trade sized and checked against the market into the plan
its monitor carries out (tpsl-rules.md "Plans").

    read_request(data) -> (TradeRequest | None, problems)
    resolve_accounts(spec, roles) -> (accounts, problems)
    size_open(request, account, market, config) -> (Plan | None, problems)
    size_follower(request, account, rule, market, leader_plan, leader_market, config) -> (Plan | None, problems)
    check_targets(request, position, instrument) -> (tps, stop, problems)

A problem line names what is wrong, e.g. `--stop 66000 is above the entry 65000 (a long's stop
must be below it)`; with problems nothing is sent.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from decimal import Decimal, InvalidOperation
from typing import Any

from actors.position import RulesConfig, ladder_for
from messages.gateway import Market
from messages.models import Approach, Instrument, Plan, Position, Side, StopAfter, TriggerBy, parse_trail_start

COMMANDS = ("open", "plan", "close", "list")
ACCOUNT_SPEC = re.compile(r"[A-Za-z0-9_-]{1,32}(,[A-Za-z0-9_-]{1,32})*")  # leader | all | NAME[,NAME]
SYMBOL = re.compile(r"[A-Z0-9]{2,30}")
CONSERVATIVE_LEGS = 3
TRIGGER_NAMES = {"last": TriggerBy.LAST, "mark": TriggerBy.MARK, "index": TriggerBy.INDEX}
MAX_TIME_LIMIT_MINUTES = 525_600  # a year


@dataclass(frozen=True, slots=True)
class TradeRequest:
    command: str
    symbol: str = ""
    side: Side = Side.NONE  # Buy | Sell (open)
    approach: str = ""  # conservative | fast (open)
    qty: Decimal | None = None
    margin: Decimal | None = None
    margin_percent: Decimal | None = None
    leverage: Decimal | None = None
    tps: tuple[Decimal, ...] = ()
    stop: Decimal | None = None
    limits: tuple[Decimal, ...] = ()
    account: str = "leader"  # leader | all (both) | NAME[,NAME]: resolve_accounts
    dry_run: bool = False
    stop_after: StopAfter | None = None  # R13 (open, plan)
    trigger_by: TriggerBy | None = None  # R15 (open, plan)
    time_limit_seconds: int = 0  # R16 (open, plan); 0: none
    trail_percent: Decimal | None = None  # R14 (open, plan)
    trail_after: str | None = None  # R14 (open, plan)

    def exits(self) -> dict[str, Any]:
        """The plan's exit fields this request gives (R13-R16); what it leaves out stays as it is."""
        given = {
            "stop_after": self.stop_after,
            "trigger_by": self.trigger_by,
            "time_limit_seconds": self.time_limit_seconds or None,
            "trail_percent": self.trail_percent,
            "trail_after": self.trail_after,
        }
        return {name: value for name, value in given.items() if value is not None}


@dataclass(frozen=True, slots=True)
class CopyRule:
    """How a follower copies its leader's trades (the accounts file's `sizing`): the same qty, the
    same share of its own balance (`balance_percent`), or a fixed `ratio` of the leader's qty."""

    leader: str
    sizing: str = "same_qty"
    ratio: Decimal | None = None


def resolve_accounts(spec: str, roles: Mapping[str, CopyRule | None]) -> tuple[tuple[str, ...], list[str]]:
    """The accounts `--account` names, leaders first (a follower is sized from its leader's
    trade): `leader` (the one leader), `all` (`both`: every account), or names. `roles`: each
    account of the daemon, None for a leader."""
    leaders = [name for name, rule in roles.items() if rule is None]
    if spec == "leader":
        if len(leaders) == 1:
            return (leaders[0],), []
        return (), [f"--account leader: this daemon guards several leaders ({', '.join(leaders)}); name one"]
    names = list(roles) if spec in ("all", "both") else list(dict.fromkeys(spec.split(",")))
    missing = [name for name in names if name not in roles]
    if missing:
        return (), [f"--account {spec}: the {name} account is not configured" for name in missing]
    return tuple(sorted(names, key=lambda name: roles[name] is not None)), []


def _number(problems: list[str], name: str, raw: Any, *, percent: bool = False) -> Decimal | None:
    if raw is None:
        return None
    try:
        value = Decimal(str(raw).strip())
    except InvalidOperation:
        problems.append(f"{name} {str(raw)[:30]!r} is not a number")
        return None
    if not value.is_finite() or value <= 0:
        problems.append(f"{name} {raw} must be greater than 0")
        return None
    if percent and value > 100:
        problems.append(f"{name} {raw} must be at most 100")
        return None
    return value


def _numbers(problems: list[str], name: str, raw: Any) -> tuple[Decimal, ...]:
    if raw is None:
        return ()
    items = raw.split(",") if isinstance(raw, str) else raw if isinstance(raw, list) else None
    if items is None or not items:
        problems.append(f"{name} must be a comma-separated list of prices")
        return ()
    values = tuple(_number(problems, name, item) for item in items)
    return () if None in values else values  # type: ignore[return-value]


def read_request(data: Any, ladder_levels: int = 4) -> tuple[TradeRequest | None, list[str]]:
    """A request from its JSON form (the CLI's, or anything else on the socket): every problem
    in it, one line each, before anything is looked up or sent."""
    if not isinstance(data, dict) or data.get("command") not in COMMANDS:
        return None, [f"command must be one of {', '.join(COMMANDS)}"]
    command = data["command"]
    if command == "list":
        return TradeRequest("list"), []
    problems: list[str] = []
    symbol = str(data.get("symbol") or "").upper()
    if not SYMBOL.fullmatch(symbol):
        problems.append(f"SYMBOL {data.get('symbol')!r} is not a contract name like BTCUSDT")
    account = str(data.get("account") or "leader")
    if not ACCOUNT_SPEC.fullmatch(account):
        problems.append(f"--account {account[:40]} must be leader, all or NAME[,NAME] (names of A-Z a-z 0-9 _ -)")
    if command == "close":
        return (TradeRequest("close", symbol, account=account), []) if not problems else (None, problems)
    tps = _numbers(problems, "--tps", data.get("tps"))
    stop = _number(problems, "--stop", data.get("stop"))
    if data.get("tps") is None:
        problems.append("--tps is required")
    if data.get("stop") is None:
        problems.append("--stop is required")
    if len(tps) > ladder_levels:
        problems.append(f"--tps gives {len(tps)} prices; the ladder has at most {ladder_levels}")
    stop_after, trigger_by, time_limit = _exits(problems, data)
    trail_percent, trail_after = _trailing(problems, data)
    if command == "plan":
        request = TradeRequest(
            "plan",
            symbol,
            tps=tps,
            stop=stop,
            account=account,
            stop_after=stop_after,
            trigger_by=trigger_by,
            time_limit_seconds=time_limit,
            trail_percent=trail_percent,
            trail_after=trail_after,
        )
        return (request, []) if not problems else (None, problems)
    side = {"long": Side.BUY, "short": Side.SELL}.get(str(data.get("side")))
    if side is None:
        problems.append(f"side {data.get('side')!r} must be long or short")
    approach = str(data.get("approach") or "")
    if approach not in (Approach.CONSERVATIVE, Approach.FAST):
        problems.append(f"--approach {approach or '(missing)'} must be conservative or fast")
    qty, margin, margin_percent, leverage = _sizing(problems, data)
    limits = _legs(problems, data, approach, tps)
    if problems:
        return None, problems
    return TradeRequest(
        "open",
        symbol,
        side or Side.NONE,
        approach,
        qty,
        margin,
        margin_percent,
        leverage,
        tps,
        stop,
        limits,
        account,
        bool(data.get("dry_run")),
        stop_after,
        trigger_by,
        time_limit,
        trail_percent,
        trail_after,
    ), []


def _trailing(problems: list[str], data: dict[str, Any]) -> tuple[Decimal | None, str | None]:
    """--trail PERCENT and --trail-after tp1..tp4|profit:PERCENT (R14); --trail alone starts at tp1."""
    percent = _number(problems, "--trail", data.get("trail"))
    if percent is not None and percent >= 50:
        problems.append(f"--trail {percent} must be a percent below 50")
    after = None
    if data.get("trail_after") is not None:
        try:
            after = parse_trail_start(str(data["trail_after"]))
        except ValueError as exc:
            problems.append(f"--trail-after {data['trail_after']} {exc}")
    if after is None and percent is not None:
        after = "tp1"
    return percent, after


def _exits(problems: list[str], data: dict[str, Any]) -> tuple[StopAfter | None, TriggerBy | None, int]:
    """--stop-after (R13), --trigger-by (R15) and --time-limit (R16); absent: the settings' defaults."""
    stop_after = trigger_by = None
    raw = data.get("stop_after")
    if raw is not None:
        if raw in tuple(StopAfter):
            stop_after = StopAfter(raw)
        else:
            problems.append(f"--stop-after {raw} must be one of {'|'.join(StopAfter)}")
    raw = data.get("trigger_by")
    if raw is not None:
        trigger_by = TRIGGER_NAMES.get(str(raw))
        if trigger_by is None:
            problems.append(f"--trigger-by {raw} must be one of {'|'.join(TRIGGER_NAMES)}")
    minutes = _number(problems, "--time-limit", data.get("time_limit"))
    if minutes is not None and minutes > MAX_TIME_LIMIT_MINUTES:
        problems.append(f"--time-limit {minutes} must be at most {MAX_TIME_LIMIT_MINUTES} minutes")
    seconds = math.ceil(minutes * 60) if minutes is not None else 0  # minutes, fractions allowed (0.5: 30 s)
    return stop_after, trigger_by, seconds


def _sizing(
    problems: list[str], data: dict[str, Any]
) -> tuple[Decimal | None, Decimal | None, Decimal | None, Decimal | None]:
    """Exactly one of --qty, --margin, --margin-percent; the margins need --leverage."""
    qty = _number(problems, "--qty", data.get("qty"))
    margin = _number(problems, "--margin", data.get("margin"))
    margin_percent = _number(problems, "--margin-percent", data.get("margin_percent"), percent=True)
    leverage = _number(problems, "--leverage", data.get("leverage"))
    sizing = [
        name
        for name, key in (("--qty", "qty"), ("--margin", "margin"), ("--margin-percent", "margin_percent"))
        if data.get(key) is not None
    ]
    if len(sizing) != 1:
        problems.append(
            "give exactly one of --qty, --margin, --margin-percent" + (f" (got {', '.join(sizing)})" if sizing else "")
        )
    elif sizing[0] != "--qty" and data.get("leverage") is None:
        problems.append(f"{sizing[0]} needs --leverage")
    return qty, margin, margin_percent, leverage


def _legs(problems: list[str], data: dict[str, Any], approach: str, tps: tuple[Decimal, ...]) -> tuple[Decimal, ...]:
    """The conservative approach's limit prices (legs 2 and 3); the fast one has one take-profit."""
    limits = _numbers(problems, "--limits", data.get("limits"))
    if approach == Approach.CONSERVATIVE and data.get("limits") is None:
        problems.append("--limits P2,P3 is required for the conservative approach")
    elif approach == Approach.CONSERVATIVE and limits and len(limits) != CONSERVATIVE_LEGS - 1:
        problems.append(f"--limits gives {len(limits)} prices; the conservative approach needs {CONSERVATIVE_LEGS - 1}")
    if approach == Approach.FAST and data.get("limits") is not None:
        problems.append("--limits is only for the conservative approach")
    if approach == Approach.FAST and len(tps) > 1:
        problems.append("--tps: the fast approach has one take-profit")
    return limits


def _side_problems(side: Side, entry: Decimal, tps: tuple[Decimal, ...], stop: Decimal, what: str) -> list[str]:
    """A long's take-profits above its entry and its stop below; the reverse for a short."""
    long = side == Side.BUY
    name, above, below = ("a long", "above", "below") if long else ("a short", "below", "above")
    problems = [
        f"--tps {tp} is not {above} the {what} {entry} ({name}'s take-profits must be {above} it)"
        for tp in tps
        if (tp <= entry if long else tp >= entry)
    ]
    if stop >= entry if long else stop <= entry:
        problems.append(f"--stop {stop} is not {below} the {what} {entry} ({name}'s stop must be {below} it)")
    return problems


def _snapped(
    side: Side, tps: tuple[Decimal, ...], stop: Decimal, instrument: Instrument
) -> tuple[tuple[Decimal, ...], Decimal]:
    """Prices to tickSize, as adopted plans are: towards the long's side of the book."""
    up = side == Side.BUY
    return tuple(instrument.snap_price(tp, up=up) for tp in tps), instrument.snap_price(stop, up=up)


def size_open(
    request: TradeRequest, account: str, market: Market, config: RulesConfig
) -> tuple[Plan | None, list[str]]:
    """The plan for `open` on one account: the target from --qty, or margin x leverage over the
    average entry (the mean of the market and the limits for the conservative approach); legs of a
    third each (rounded down to qtyStep), leg 1 at market. Followers: `size_follower`."""
    instrument, last = market.instrument, market.last_price
    if instrument is None or last is None:
        return None, [f"SYMBOL {request.symbol}: Bybit lists no such linear contract"]
    assert request.stop is not None
    problems = _side_problems(request.side, last, request.tps, request.stop, "market price")
    long = request.side == Side.BUY
    for limit in request.limits:
        if not (request.stop < limit < last if long else last < limit < request.stop):
            problems.append(f"--limits {limit} is not between the stop {request.stop} and the market price {last}")
    if (
        request.leverage is not None
        and instrument.max_leverage is not None
        and request.leverage > instrument.max_leverage
    ):
        problems.append(f"--leverage {request.leverage} is above {request.symbol}'s maximum {instrument.max_leverage}")
    if problems:
        return None, problems
    average = (last + sum(request.limits, Decimal(0))) / (1 + len(request.limits))
    if request.qty is not None:
        target = request.qty
    else:
        assert request.leverage is not None  # read_request: a margin needs --leverage
        if request.margin is not None:
            margin = request.margin
        else:
            assert request.margin_percent is not None  # read_request: exactly one sizing
            margin = market.available_balance * request.margin_percent / 100
        target = margin * request.leverage / average
    legs_count = CONSERVATIVE_LEGS if request.approach == Approach.CONSERVATIVE else 1
    leg = instrument.round_qty(target / legs_count)
    legs = (leg,) * legs_count
    if leg < instrument.min_qty:
        problems.append(
            f"{account}: each of {legs_count} legs would be {leg}, below {request.symbol}'s minOrderQty "
            f"{instrument.min_qty}"
        )
    elif leg * legs_count > instrument.max_qty:
        problems.append(f"{account}: {leg * legs_count} is above {request.symbol}'s maxOrderQty {instrument.max_qty}")
    # Take-profit levels cannot fall below minOrderQty once the legs reach it: a smaller level is
    # folded into the one before it, down to TP1, which then holds the whole leg.
    if problems:
        return None, problems
    tps, stop = _snapped(request.side, request.tps, request.stop, instrument)
    limits = tuple(instrument.snap_price(p, up=not long) for p in request.limits)
    approach = Approach(request.approach)
    percents = ladder_for(len(tps), config)
    plan = Plan(approach, request.side, percents, tps, stop, legs, limits)
    exits = replace(plan, stop_after=request.stop_after, trigger_by=request.trigger_by)
    exits = replace(exits, trail_after=request.trail_after, trail_percent=request.trail_percent)
    return replace(exits, time_limit_seconds=request.time_limit_seconds), []


def size_follower(
    request: TradeRequest,
    account: str,
    rule: CopyRule,
    market: Market,
    leader_plan: Plan,
    leader_market: Market,
    config: RulesConfig,
) -> tuple[Plan | None, list[str]]:
    """A follower's plan for `open`: the leader's prices, its qty by the follower's rule, rounded
    by the follower's own market. `balance_percent` puts in the same share of its own balance:
    for --margin-percent that is the request as given; else the leader's qty scaled by the two
    available balances."""
    if rule.sizing == "balance_percent" and request.margin_percent is not None:
        return size_open(request, account, market, config)
    leader_qty = sum(leader_plan.legs, Decimal(0))
    if rule.sizing == "ratio":
        assert rule.ratio is not None, "the accounts file gives a ratio with sizing ratio"
        qty = leader_qty * rule.ratio
    elif rule.sizing == "balance_percent":
        leader_balance = leader_market.available_balance
        qty = leader_qty * market.available_balance / leader_balance if leader_balance > 0 else Decimal(0)
    else:
        qty = leader_qty
    return size_open(replace(request, qty=qty, margin=None, margin_percent=None), account, market, config)


def check_targets(
    request: TradeRequest, position: Position, instrument: Instrument
) -> tuple[tuple[Decimal, ...], Decimal, list[str]]:
    """`plan` on an open position: its entry decides the sides; a stop the market has already
    crossed would fire at once, so it is refused too."""
    assert request.stop is not None
    side = Side(position.side)
    problems = _side_problems(side, position.avg_price, request.tps, request.stop, "entry")
    mark = position.mark_price
    if mark and not problems and (request.stop >= mark if side == Side.BUY else request.stop <= mark):
        problems.append(f"--stop {request.stop} is already crossed by the mark price {mark}; it would fire at once")
    tps, stop = _snapped(side, request.tps, request.stop, instrument)
    return tps, stop, problems


def describe(plan: Plan) -> str:
    """One line for the trader: what the plan places."""
    legs = f"{plan.legs[0]} at market" + "".join(
        f", {q} at {p}" for q, p in zip(plan.legs[1:], plan.limits, strict=False)
    )
    return (
        f"{plan.approach} {'long' if plan.side == Side.BUY else 'short'} {sum(plan.legs, Decimal(0))}: "
        f"{legs}; take-profits {', '.join(map(str, plan.tp_prices))}; stop {plan.stop_price}{exits_of(plan)}"
    )


def exits_of(plan: Plan) -> str:
    """The plan's exits beyond the ladder (R13, R15, R16), when it says them."""
    parts = [f"stop after TPs: {plan.stop_after}"] if plan.stop_after else []
    parts += [f"stops trigger on {plan.trigger_by}"] if plan.trigger_by else []
    parts += [f"time limit {plan.time_limit_seconds / 60:g} min"] if plan.time_limit_seconds else []
    if plan.trail_after and plan.trail_after != "off":
        parts.append(f"trailing {plan.trail_percent or 'the default'} % from {plan.trail_after}")
    return "; " + "; ".join(parts) if parts else ""
