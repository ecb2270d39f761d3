"""Many accounts in one daemon (issue 25): one account's trouble never reaches another (R12). Three
accounts from an ACCOUNTS_FILE, a leader and two followers; one of them is hurt (its key revoked,
its stream black-holed, 10006 on everything) while the others' take-profits fill: each of them
moves its stop to breakeven on time, and the oracle, which judges every account, finds nothing.
A key that does not work at start refuses the whole start (one line), never half of it."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from messages.gateway import GetGatewayStats
from settings import PARSERS
from tests.e2e.harness import ROOT, holds_throughout
from tests.reliability.harness import WRITES, Rig, assert_invariants
from tests.reliability.test_streams import at_breakeven

pytestmark = pytest.mark.slow

ACCOUNTS = {
    "lead": "",
    "copy-a": 'role = "follower"\nleader = "lead"\nsizing = "same_qty"',
    "copy-b": 'role = "follower"\nleader = "lead"\nsizing = "ratio"\nratio = "0.5"',
}
HURT, WELL = "copy-a", ("lead", "copy-b")
# How long a fault lasts: past the first retries' backoff (1, 2, 4 s) in `make test`; the issue's
# minute with ACCOUNTS_FAULT_SECONDS=60 (docs/reliability.md has that run's figures).
FAULT_S = float(os.environ.get("ACCOUNTS_FAULT_SECONDS", "10"))
FAST = {"STREAM_HEARTBEAT_SECONDS": "1", "RESYNC_SECONDS": "4"}


def started(rig, seed: int) -> Rig:
    r = rig(seed, positions=6, accounts=ACCOUNTS, **FAST).start()
    r.wait(lambda: set(gateway(r).streams_healthy) == set(ACCOUNTS), 15, "every account fresh by push")
    return r


def gateway(r: Rig):
    return r.system.gateway.ask(GetGatewayStats(), timeout=5)


def the_others_reach_breakeven(r: Rig, seconds: float = 5.0, kind: str = "tp1_near") -> None:
    """TP1 through on each well account's position of `kind`: breakeven within `seconds` each."""
    entries = [r.entry(kind, account) for account in WELL]
    for entry in entries:
        r.through(entry, "T", 1)
    started = time.monotonic()
    r.wait(lambda: all(at_breakeven(r, e) for e in entries), seconds, "breakeven on every other account")
    assert time.monotonic() - started < seconds


def test_one_accounts_key_revoked_leaves_every_other_account_guarded(rig):
    r = started(rig, 401)
    r.sim.add_fault(kind="retcode", code=10003, message="API key is invalid.", account=HURT)
    the_others_reach_breakeven(r)
    holds_throughout(lambda: all(r.protected(r.entry("monitoring", a)) for a in ACCOUNTS), FAULT_S / 4, "stops")
    r.sim.clear_faults()
    hurt = r.entry("tp1_near", HURT)
    r.through(hurt, "T", 1)
    r.wait(lambda: at_breakeven(r, hurt), 20, "the revived key's account at breakeven")
    r.stop()
    # Its TP1 filled too (every account holds the symbol): its stop kept the size before TP1 while
    # it could not write, bigger than the position (harmless: clipped when it fires).
    assert_invariants(r.oracle(), oversized_limit=FAULT_S + 10)


def test_one_accounts_stream_black_holed_leaves_every_other_account_on_pushes(rig):
    r = started(rig, 402)
    r.sim.add_fault(kind="ws_black_hole", account=HURT)
    r.wait(lambda: HURT not in gateway(r).streams_healthy, 10, "the black-holed stream declared stale")
    assert set(WELL) <= set(gateway(r).streams_healthy)
    the_others_reach_breakeven(r)
    hurt = r.entry("tp1_near", HURT)
    r.through(hurt, "T", 1)
    r.wait(lambda: at_breakeven(r, hurt), 20, "the black-holed account at breakeven by REST")
    assert set(WELL) <= set(gateway(r).streams_healthy)  # never a reconnect of theirs
    r.sim.clear_faults()
    r.stop()
    assert_invariants(r.oracle())


def test_one_account_answering_10006_leaves_every_other_account_whole(rig):
    r = started(rig, 403)
    r.sim.add_fault(kind="retcode", code=10006, message="Too many visits!", account=HURT)
    hurt = r.entry("tp1_near", HURT)
    r.through(hurt, "T", 1)  # its breakeven meets 10006 until the fault is gone
    the_others_reach_breakeven(r)
    holds_throughout(lambda: r.protected(hurt), FAULT_S - 5, "the hurt account's stop holding")
    the_others_reach_breakeven(r, kind="monitoring")  # again, late in the fault
    r.sim.clear_faults()
    r.wait(lambda: at_breakeven(r, hurt), 30, "the 10006 account at breakeven once it may write again")
    r.stop()
    report = r.oracle()
    assert report["rate_limited_10006"] > 0  # the fault answered
    # The hurt account's stop keeps the size before its TP1 while it may not write: bigger than
    # the position (harmless: clipped when it fires) for as long as the fault lasts.
    assert_invariants(report, oversized_limit=FAULT_S + 10)


def test_one_accounts_bad_key_refuses_the_start_with_one_line_never_half_started(rig):
    r = rig(404, positions=6, accounts=ACCOUNTS)
    env = {k: v for k, v in os.environ.items() if k not in PARSERS}
    env.update({**r.env, "KEY_COPY_B": "SIMNOSUCHKEY0000"})
    done = subprocess.run(
        [sys.executable, "main.py", "--duration", "5"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    refusals = [line for line in done.stderr.splitlines() if line.startswith("refusing to start")]
    assert len(refusals) == 1 and "the copy-b account's API key does not work" in refusals[0], done.stderr
    assert sum(r.sim.stats.requests(endpoint=e) for e in WRITES) == 0  # nothing traded on any account
