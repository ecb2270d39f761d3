"""Run the whole daemon as a subprocess against a simulator the test controls in-process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson

from settings import PARSERS
from simulator import Simulator

ROOT = Path(__file__).resolve().parents[2]


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    """Poll `predicate` until it is truthy; bounded in time (real-time end-to-end tests)."""
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        pause.wait(interval)


def holds_throughout(predicate: Callable[[], Any], seconds: float, what: str, interval: float = 0.1) -> None:
    """Check that `predicate` stays truthy for the whole of `seconds` (proving an absence: nothing
    happened that should not), failing at the first moment it does not."""
    started = time.monotonic()
    pause = threading.Event()
    while True:
        if not predicate():
            raise AssertionError(f"{what} stopped holding after {time.monotonic() - started:.1f}s")
        if time.monotonic() - started >= seconds:
            return
        pause.wait(interval)


class Daemon:
    def __init__(self, sim: Simulator, state_path: Path, *args: str, mirror: bool = True, **env: str):
        self.sim = sim
        self.state_path = state_path
        self.summary_path = state_path.with_suffix(".summary.json")
        self.args = args
        creds = sim.credentials
        self.env = {k: v for k, v in os.environ.items() if k not in PARSERS}
        if "ACCOUNTS_FILE" not in env:  # else the accounts file names every account
            self.env.update({"BYBIT_API_KEY": creds["main"].api_key, "BYBIT_API_SECRET": creds["main"].api_secret})
        self.env.update(
            {
                "BYBIT_BASE_URL": sim.url,
                "BYBIT_WS_PRIVATE_URL": sim.ws_private,
                "BYBIT_WS_PUBLIC_URL": sim.ws_public,
                "STATE_PATH": str(state_path),
                "LOG_FORMAT": "json",
                "METRICS_ADDRESS": "127.0.0.1:0",
                "HTTP_TIMEOUT_SECONDS": "2",
            }
        )
        if mirror and "ACCOUNTS_FILE" not in env:
            self.env.update(
                {
                    "ENABLE_MIRROR_TRADING": "true",
                    "BYBIT_API_KEY_2": creds["mirror"].api_key,
                    "BYBIT_API_SECRET_2": creds["mirror"].api_secret,
                }
            )
        self.env.update(env)
        self.lines: list[dict] = []
        self._lock = threading.Lock()
        self.process: subprocess.Popen | None = None

    def start(self) -> Daemon:
        self.lines = []
        self.process = subprocess.Popen(
            [sys.executable, str(ROOT / "main.py"), "--summary-json", str(self.summary_path), *self.args],
            cwd=ROOT,
            env=self.env,
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
        )
        threading.Thread(target=self._read, daemon=True).start()
        # Guarding, or dead already (a kill point armed for the start-up itself).
        wait_until(
            lambda: any(m.startswith("Guarding") for m in self.messages()) or self.process.poll() is not None,
            30,
            "the daemon to start guarding",
        )
        return self

    def _read(self) -> None:
        assert self.process is not None and self.process.stderr is not None
        for raw in self.process.stderr:
            try:
                line = orjson.loads(raw)
            except orjson.JSONDecodeError:
                line = {"message": raw.rstrip(), "level": "RAW"}
            with self._lock:
                self.lines.append(line)

    def messages(self) -> list[str]:
        with self._lock:
            return [line.get("message", "") for line in self.lines]

    def wait_for(self, predicate: Callable[[str], bool], timeout: float, what: str) -> str:
        return wait_until(lambda: next((m for m in self.messages() if predicate(m)), None), timeout, what)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        assert self.process is not None
        self.process.send_signal(sig)
        return self.process.wait(timeout=15)

    def summary(self) -> dict:
        return orjson.loads(self.summary_path.read_bytes())

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


@contextmanager
def world(
    tmp_path: Path, seed: int, positions: int, **env: str
) -> Iterator[tuple[Simulator, list, Callable[..., Daemon]]]:
    """A started simulator with a demo book, and a factory of daemons against it (all killed at the
    end): what the end-to-end fixtures are made of."""
    sim = Simulator(seed=seed, symbols=40)
    book = sim.load_demo_book(positions)
    sim.start()
    daemons: list[Daemon] = []

    def daemon(*args: str, **extra: str) -> Daemon:
        daemons.append(Daemon(sim, tmp_path / "state.db", *args, **{**env, **extra}))
        return daemons[-1]

    try:
        yield sim, book, daemon
    finally:
        for d in daemons:
            d.kill()
        sim.stop()
