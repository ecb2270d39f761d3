"""The two programs as a person runs them: the daemon (`main.py`) and the standalone simulator."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import orjson
import pytest
from pybit.unified_trading import HTTP

from actors.storage import open_store
from main import EXIT_CLOSED_PIPE
from settings import PARSERS

ROOT = Path(__file__).resolve().parents[1]
MAIN = str(ROOT / "main.py")
# The demo keeps its state in state/demo.db under the working directory: run it in a scratch one.
RUN_DIR = tempfile.mkdtemp(prefix="guardian-run-")


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in PARSERS}
    env["METRICS_ADDRESS"] = "127.0.0.1:0"  # a free port: never in the way of a daemon already running
    env.update(extra)
    return env


def start(*args: str, **env: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, *args],
        cwd=RUN_DIR,
        env=clean_env(**env),
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def wait_for_line(stream, needle: str, limit: int = 200) -> str:
    for _ in range(limit):
        line = stream.readline()
        if needle in line:
            return line
        if not line:
            break
    pytest.fail(f"no line containing {needle!r}")


@pytest.mark.slow  # a real daemon process, or seconds of real time
def test_daemon_without_keys_runs_the_simulator_and_stops_after_duration():
    result = subprocess.run(
        [sys.executable, MAIN, "--duration", "1.5", "--positions", "8"],
        cwd=RUN_DIR,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "Running against the embedded Bybit simulator at http://127.0.0.1:" in result.stderr
    assert "8 demo positions per account" in result.stderr
    assert "Stopped cleanly" in result.stderr


@pytest.mark.slow  # a real daemon process, or seconds of real time
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_daemon_stops_cleanly_on_a_stop_signal(signum):
    process = start(MAIN, "--positions", "4")
    wait_for_line(process.stderr, "Running against the embedded Bybit simulator")
    process.send_signal(signum)
    _, err = process.communicate(timeout=10)
    assert process.returncode == 0
    assert f"Received {signum.name}: stopping" in err and "Stopped cleanly" in err


@pytest.mark.slow  # a real daemon process, or seconds of real time
def test_sigusr1_logs_every_thread_stack_and_keeps_running():
    process = start(MAIN, "--positions", "2")
    try:
        wait_for_line(process.stderr, "Running against the embedded Bybit simulator")
        process.send_signal(signal.SIGUSR1)
        wait_for_line(process.stderr, "MainThread")
        assert process.poll() is None
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=10)
    assert process.returncode == 0


@pytest.mark.slow  # a real daemon process, or seconds of real time
def test_json_log_format_is_one_object_per_line():
    result = subprocess.run(
        [sys.executable, MAIN, "--duration", "0.5", "--positions", "2", "--log-format", "json"],
        cwd=RUN_DIR,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    lines = [orjson.loads(line) for line in result.stderr.splitlines() if line.strip()]
    assert lines and all({"time", "level", "thread", "logger", "message"} <= set(line) for line in lines)


def test_standalone_simulator_prints_its_address_serves_pybit_and_exits_0():
    process = start("-m", "simulator", "--port", "0", "--seed", "4", "--demo-positions", "5")
    try:
        info = orjson.loads(process.stdout.readline())
        creds = info["accounts"]["mirror"]
        session = HTTP(api_key=creds["api_key"], api_secret=creds["api_secret"], retry_codes={-1}, max_retries=1)
        session.endpoint = info["url"]
        assert len(session.get_positions(category="linear", settleCoin="USDT")["result"]["list"]) == 5
        assert set(info["accounts"]) == {"main", "mirror"}
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=10)
    assert process.returncode == 0


def test_standalone_simulator_serves_n_accounts_each_with_its_own_book():
    process = start("-m", "simulator", "--port", "0", "--accounts", "3", "--demo-positions", "2")
    try:
        info = orjson.loads(process.stdout.readline())
        assert list(info["accounts"]) == ["acct01", "acct02", "acct03"]
        for creds in info["accounts"].values():
            session = HTTP(api_key=creds["api_key"], api_secret=creds["api_secret"], retry_codes={-1}, max_retries=1)
            session.endpoint = info["url"]
            assert len(session.get_positions(category="linear", settleCoin="USDT")["result"]["list"]) == 2
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=10)
    assert process.returncode == 0


@pytest.mark.slow  # a real daemon process, or seconds of real time
def test_status_shows_the_running_demo_then_its_database(tmp_path):
    """`make run` in one terminal, `main.py status` in another (same folder): live while it runs,
    then from state/demo.db, which the next start recreates."""
    env = {"METRICS_ADDRESS": f"127.0.0.1:{_free_port()}"}
    run = lambda *args: subprocess.run(
        [sys.executable, MAIN, "status", *args],
        cwd=tmp_path,
        env=clean_env(**env),
        capture_output=True,
        text=True,
        timeout=30,
    )
    process = subprocess.Popen(
        [sys.executable, MAIN, "--positions", "3", "--duration", "30"],
        cwd=tmp_path,
        env=clean_env(**env),
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        first = wait_for_line(process.stderr, "Running against the embedded")
        assert "state in state/demo.db (recreated at every start)" in first
        wait_for_line(process.stderr, "Processed 6 monitors")
        live = orjson.loads(run("--json").stdout)
        assert live["source"] == "live" and len(live["monitors"]) == 6
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        process.kill()
    stored = run()
    assert stored.returncode == 0 and stored.stdout.startswith("6 monitors in state/demo.db")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("args", [["status"], ["status", "--json"]])
def test_a_closed_pipe_ends_a_command_quietly(tmp_path, args):
    """`main.py status | head` with the reader gone before the output: no traceback, exit 141."""
    store, _, _ = open_store(str(tmp_path / "state.db"))
    store.close()
    env = clean_env(STATE_PATH=str(tmp_path / "state.db"))
    process = subprocess.Popen(
        [sys.executable, MAIN, *args], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert process.stdout is not None
    process.stdout.close()  # before the interpreter has even started: every write meets a closed pipe
    _, stderr = process.communicate(timeout=30)
    assert b"Traceback" not in stderr and b"BrokenPipe" not in stderr, stderr.decode()
    assert process.returncode == EXIT_CLOSED_PIPE, stderr.decode()
