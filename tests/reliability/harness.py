"""The reliability scenarios' rig: the daemon (in-process `System`, or a subprocess for kills)
against a simulator whose oracle watches the invariants the whole time."""

from __future__ import annotations

import threading
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

from messages.endpoints import Api
from messages.models import OrderLink, Role
from runtime.system import System
from settings import load_settings
from simulator import Simulator
from tests.e2e.harness import Daemon, wait_until

WRITES = (Api.PLACE_ORDER, Api.AMEND_ORDER, Api.CANCEL_ORDER, Api.PLACE_BATCH, Api.AMEND_BATCH, Api.CANCEL_BATCH)
CRITICAL_S = 2.0
ROUND_TRIP_S = 1.0
# Invariant targets (docs/reliability.md): protection may lapse at most one critical interval
# plus one round trip, except where the exchange refuses or loses the stop itself.
UNPROTECTED_LIMIT_S = CRITICAL_S + ROUND_TRIP_S


class Rig:
    def __init__(
        self,
        tmp_path: Path,
        seed: int,
        positions: int = 8,
        sim_options: dict | None = None,
        accounts: dict[str, str] | None = None,
        **env: str,
    ):
        """`accounts`: guard these accounts from an ACCOUNTS_FILE instead of main and mirror:
        name -> the TOML lines of its table beyond its keys (e.g. 'role = "follower"...')."""
        options = {**(sim_options or {}), **({"accounts": tuple(accounts)} if accounts else {})}
        self.sim = Simulator(seed=seed, symbols=max(16, positions + 8), **options)
        self.book = self.sim.load_demo_book(positions)
        self.sim.start(oracle_interval=0.05)
        self.env = {
            **(self._accounts_file(tmp_path, accounts) if accounts else self._main_and_mirror()),
            "BYBIT_BASE_URL": self.sim.url,
            "STATE_PATH": str(tmp_path / "state.db"),
            "HTTP_TIMEOUT_SECONDS": "2",
            "BYBIT_WS_PRIVATE_URL": self.sim.ws_private,
            "BYBIT_WS_PUBLIC_URL": self.sim.ws_public,
            **env,
        }
        self.tmp_path = tmp_path
        self.system: System | None = None
        self.stop_event = threading.Event()
        self.daemon: Daemon | None = None

    def _main_and_mirror(self) -> dict[str, str]:
        creds = self.sim.credentials
        return {
            "BYBIT_API_KEY": creds["main"].api_key,
            "BYBIT_API_SECRET": creds["main"].api_secret,
            "ENABLE_MIRROR_TRADING": "true",
            "BYBIT_API_KEY_2": creds["mirror"].api_key,
            "BYBIT_API_SECRET_2": creds["mirror"].api_secret,
        }

    def _accounts_file(self, tmp_path: Path, accounts: dict[str, str]) -> dict[str, str]:
        """An ACCOUNTS_FILE naming each account, its key and secret in variables KEY_<name> and
        SECRET_<name> (returned, for the daemon's environment)."""
        path = tmp_path / "accounts.toml"
        tables, env = [], {"ACCOUNTS_FILE": str(path)}
        for name, lines in accounts.items():
            variable = name.upper().replace("-", "_")
            tables.append(
                f'[accounts.{name}]\napi_key_env = "KEY_{variable}"\napi_secret_env = "SECRET_{variable}"\n{lines}\n'
            )
            env[f"KEY_{variable}"] = self.sim.credentials[name].api_key
            env[f"SECRET_{variable}"] = self.sim.credentials[name].api_secret
        path.write_text("\n".join(tables))
        return env

    # --- the daemon in-process ------------------------------------------------------------

    def start(self, timeout: float = 30.0) -> Rig:
        settings = load_settings(self.env)
        accounts = {a.name: (a.api_key.reveal(), a.api_secret.reveal()) for a in settings.accounts()}
        self.system = System(settings, accounts, self.sim.url, streams=settings.stream_urls(self.sim.url))
        started = threading.Event()
        errors: list[BaseException] = []

        def run() -> None:
            try:
                if self.system.start(self.stop_event):
                    started.set()
            except BaseException as exc:
                errors.append(exc)
                started.set()

        threading.Thread(target=run, daemon=True).start()
        assert started.wait(timeout), "the daemon did not start"
        if errors:
            raise errors[0]
        self.settle()
        return self

    def settle(self, quiet: float = 0.5, timeout: float = 15.0) -> None:
        """Wait until the daemon's start-up work (adoptions, first checks) is done: no write for
        `quiet` seconds. On pushes start-up takes well under a second; a fault injected before
        then would hit whichever write comes first, not the one a scenario means."""
        writes = lambda: sum(self.sim.stats.requests(endpoint=e) for e in WRITES)
        last = [writes(), time.monotonic()]

        def quiet_enough() -> bool:
            now_writes = writes()
            if now_writes != last[0]:
                last[:] = [now_writes, time.monotonic()]
            return time.monotonic() - last[1] >= quiet

        wait_until(quiet_enough, timeout, "the daemon's start-up writes to end")

    def stop(self) -> None:
        self.stop_event.set()
        if self.system is not None:
            self.system.stop()
            self.system = None

    # --- the daemon as a process (for kills) ----------------------------------------------

    def process(self, *args: str, **env: str) -> Daemon:
        self.daemon = Daemon(self.sim, Path(self.env["STATE_PATH"]), *args, **{**self.env, **env})
        return self.daemon

    def close(self) -> None:
        self.stop()
        if self.daemon is not None:
            self.daemon.kill()
        self.sim.stop()

    # --- looking at the exchange ----------------------------------------------------------

    def entry(self, kind: str, account: str = "main", index: int = 0):
        return [e for e in self.book if e.kind == kind and e.account == account][index]

    def ours(self, entry) -> list:
        """The daemon's open orders on the entry's symbol (one position per symbol and account;
        an adopted position's orders carry the daemon's own position id, not the book's)."""
        return [o for o in self.sim.account(entry.account).open_orders(entry.symbol) if OrderLink.parse(o.link_id)]

    def stop_of(self, entry):
        stops = [
            o for o in self.ours(entry) if OrderLink.parse(o.link_id).role is Role.STOP and o.status == "Untriggered"
        ]
        return stops[0] if len(stops) == 1 else None

    def size(self, entry) -> Decimal:
        position = self.sim.account(entry.account).positions.get(entry.symbol)
        return position.size if position else Decimal(0)

    def link(self, entry, role: str, level: int, generation: int = 0) -> str:
        return OrderLink(entry.position_id, Role(role), level, generation).build()

    def through(self, entry, role: str, level: int, beyond: str = "0.001") -> None:
        """Move the price through one of the entry's orders (a TP in its favour, a stop against)."""
        order = self.sim.account(entry.account).by_link[self.link(entry, role, level)]
        price = order.price if order.price is not None else order.trigger_price
        up = (order.side == "Sell") if order.trigger_price is None else (order.trigger_direction == 1)
        self.sim.set_price(entry.symbol, price * (1 + Decimal(beyond)) if up else price * (1 - Decimal(beyond)))

    def protected(self, entry) -> bool:
        stop = self.stop_of(entry)
        return stop is not None and stop.qty >= self.size(entry)

    def oracle(self) -> dict[str, Any]:
        return self.sim.oracle.report()

    def wait(self, predicate, timeout: float, what: str):
        return wait_until(predicate, timeout, what)


STANDARD_S = 12.0
# Orphans: cancelled within two checks of the closure; the first check comes at the monitor's
# tier interval (standard, for a position far from its triggers), the confirming one 2 s later.
CLEANUP_LIMIT_S = STANDARD_S + CRITICAL_S + 2 * ROUND_TRIP_S


def assert_invariants(
    report: dict[str, Any],
    *,
    unprotected_limit: float = UNPROTECTED_LIMIT_S,
    cleanup_limit: float = CLEANUP_LIMIT_S,
    oversized_limit: float = STANDARD_S + ROUND_TRIP_S,
) -> None:
    assert report["duplicate_live_orders"] == 0, report
    assert report["duplicate_accepted_link_ids"] == 0, report
    assert report["oversized_active_reduce_only"] == 0, report
    assert report["ip_banned_403"] == 0, report
    assert report["orphans_at_end"] == 0, report
    assert report["closes_of_another_position"] == 0, report
    assert report["foreign_orders_touched"] == 0, report
    assert report["longest_unprotected_s"] <= unprotected_limit, report
    assert report["longest_cleanup_s"] <= cleanup_limit, report
    # A stop above the position (after a reduce by hand or a partial fill) lasts until the
    # monitor's next check: at most its tier's interval. Harmless: a stop is clipped when it fires.
    assert report["longest_oversized_stop_s"] <= oversized_limit, report
