"""The owner's channel (runtime/control.py): a real Unix socket on loopback, its mode, the peer
uid check, one JSON line each way."""

from __future__ import annotations

import os
import socket
import stat

import pytest

from runtime.control import ControlServer, SocketInUse, ask


@pytest.fixture
def served(tmp_path):
    servers = []

    def make(owner_uid=None, handle=lambda request: {"exit": 0, "lines": [f"got {request['command']}"]}):
        servers.append(ControlServer(tmp_path / "guardian.sock", handle, owner_uid=owner_uid).start())
        return servers[-1]

    yield make
    for server in servers:
        server.stop()


def test_the_socket_is_0600_and_answers_its_owner(served):
    server = served()
    assert stat.S_IMODE(os.stat(server.path).st_mode) == 0o600
    assert ask(server.path, {"command": "list"}) == {"exit": 0, "lines": ["got list"]}


def test_another_uid_is_refused_before_its_request_is_read(served):
    handled = []
    server = served(owner_uid=os.getuid() + 1, handle=lambda request: handled.append(request) or {"exit": 0})
    answer = ask(server.path, {"command": "close", "symbol": "BTCUSDT"})
    assert answer["exit"] == 1 and answer["lines"] == [f"refused: only uid {os.getuid() + 1} may use this daemon"]
    assert handled == []


def test_a_request_that_is_not_one_json_object_is_exit_2(served):
    server = served()
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.connect(str(server.path))
    client.sendall(b"[1, 2]\n")
    assert b'"exit":2' in client.recv(4096)
    client.close()


def test_a_second_daemon_on_the_same_socket_is_refused_and_a_stale_file_replaced(served, tmp_path):
    served()
    with pytest.raises(SocketInUse, match="another daemon answers"):
        ControlServer(tmp_path / "guardian.sock", lambda r: {}).start()
    stale = tmp_path / "stale" / "guardian.sock"
    stale.parent.mkdir()
    leftover = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    leftover.bind(str(stale))  # bound, never listening: what a killed daemon leaves
    leftover.close()
    server = ControlServer(stale, lambda r: {"exit": 0, "lines": []}).start()
    try:
        assert ask(stale, {"command": "list"}) == {"exit": 0, "lines": []}
    finally:
        server.stop()


def test_no_daemon_is_none(tmp_path):
    assert ask(tmp_path / "guardian.sock", {"command": "list"}) is None
