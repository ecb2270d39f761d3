"""The owner's channel: a Unix domain socket next to the state database (its name with `.sock`,
e.g. `state/demo.sock`), mode 0600, each peer's uid checked against the daemon's (SO_PEERCRED); no TCP.
One JSON object per line each way: a request from `main.py trade ...`, then its answer
`{"exit": 0|1|2, "lines": [...], ...}`.

Connections are served on their own short-lived threads (at most MAX_CLIENTS at once), so a
slow or silent client never holds up the daemon; every read has a deadline.
"""

from __future__ import annotations

import logging
import os
import socket
import struct
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

log = logging.getLogger(__name__)

MAX_REQUEST_BYTES = 64 * 1024
CLIENT_TIMEOUT_S = 5.0  # to send its request line
MAX_CLIENTS = 8


def socket_path(state_path: str) -> Path:
    """One socket per state database: instances sharing a folder each have their own."""
    return Path(state_path).resolve().with_suffix(".sock")


class SocketInUse(Exception):
    """Another daemon answers on this socket, or it cannot be made there."""


def peer_uid(connection: socket.socket) -> int:
    """The connecting process's uid, as the kernel says (SO_PEERCRED: pid, uid, gid)."""
    _pid, uid, _gid = struct.unpack(
        "3i", connection.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    )
    return int(uid)


class ControlServer:
    """`handle(request) -> answer` runs on the connection's thread (it may wait on actors).
    `owner_uid`: whose connections are served (the daemon's own uid)."""

    def __init__(self, path: Path, handle: Callable[[Any], dict[str, Any]], owner_uid: int | None = None):
        self.path = path
        self._handle = handle
        self._owner = os.getuid() if owner_uid is None else owner_uid
        self._listener: socket.socket | None = None
        self._slots = threading.BoundedSemaphore(MAX_CLIENTS)
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    def start(self) -> ControlServer:
        """Raises SocketInUse when another daemon listens there; a stale socket file is replaced."""
        if len(str(self.path).encode()) > 100:
            raise SocketInUse(f"{self.path} is too long for a Unix socket; use a shorter STATE_PATH")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists():
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                probe.connect(str(self.path))
                raise SocketInUse(f"another daemon answers on {self.path}")
            except (ConnectionRefusedError, FileNotFoundError):
                self.path.unlink(missing_ok=True)  # left by a daemon that was killed
            finally:
                probe.close()
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o177)  # created 0600: never a moment more open
        try:
            listener.bind(str(self.path))
        finally:
            os.umask(old_umask)
        os.chmod(self.path, 0o600)
        listener.listen(MAX_CLIENTS)
        listener.settimeout(0.5)
        self._listener = listener
        self._thread = threading.Thread(target=self._accept, name="control-socket", daemon=True)
        self._thread.start()
        log.info("Trader's channel on %s (owner uid %d only)", self.path, self._owner)
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        if self._listener is not None:
            self._listener.close()
            self.path.unlink(missing_ok=True)

    def _accept(self) -> None:
        assert self._listener is not None
        while not self._stopping.is_set():
            try:
                connection, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if not self._slots.acquire(blocking=False):
                _send(connection, {"exit": 1, "lines": ["the daemon is busy with other commands; try again"]})
                connection.close()
                continue
            threading.Thread(target=self._serve, args=(connection,), name="control-client", daemon=True).start()

    def _serve(self, connection: socket.socket) -> None:
        try:
            uid = peer_uid(connection)
            if uid != self._owner:
                log.warning(
                    "Trader's channel: refused a connection from uid %d (only uid %d may trade)", uid, self._owner
                )
                _send(connection, {"exit": 1, "lines": [f"refused: only uid {self._owner} may use this daemon"]})
                return
            request = _read_line(connection)
            if request is None:
                _send(connection, {"exit": 2, "lines": ["the request is not one JSON object on one line"]})
                return
            try:
                answer = self._handle(request)
            except Exception as exc:
                log.exception("Trader's channel: the request failed")
                answer = {"exit": 1, "lines": [f"the daemon failed on this request ({type(exc).__name__})"]}
            _send(connection, answer)
        except OSError as exc:
            log.warning("Trader's channel: a client went away (%s)", exc)
        finally:
            connection.close()
            self._slots.release()


def _read_line(connection: socket.socket) -> Any:
    connection.settimeout(CLIENT_TIMEOUT_S)
    data = b""
    while b"\n" not in data and len(data) <= MAX_REQUEST_BYTES:
        chunk = connection.recv(4096)
        if not chunk:
            break
        data += chunk
    line = data.split(b"\n", 1)[0]
    try:
        request = orjson.loads(line) if len(line) <= MAX_REQUEST_BYTES else None
    except orjson.JSONDecodeError:
        return None
    return request if isinstance(request, dict) else None


def _send(connection: socket.socket, answer: dict[str, Any]) -> None:
    connection.sendall(orjson.dumps(answer, default=str) + b"\n")


def ask(path: Path, request: dict[str, Any], timeout: float = 120.0) -> dict[str, Any] | None:
    """The CLI's side: one request, its answer; None when no daemon listens at `path`."""
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.settimeout(timeout)
    try:
        client.connect(str(path))
    except (FileNotFoundError, ConnectionRefusedError):
        client.close()
        return None
    except PermissionError:
        client.close()
        return {"exit": 1, "lines": [f"cannot use {path}: permission denied (the daemon runs as another user)"]}
    data = b""
    try:
        client.sendall(orjson.dumps(request) + b"\n")
        while not data.endswith(b"\n"):
            chunk = client.recv(65536)
            if not chunk:
                break
            data += chunk
    except OSError as exc:  # a timeout included
        return {"exit": 1, "lines": [f"no answer from the daemon ({type(exc).__name__}); check `trade list`"]}
    finally:
        client.close()
    try:
        answer = orjson.loads(data)
    except orjson.JSONDecodeError:
        return {"exit": 1, "lines": ["the daemon's answer was cut off"]}
    return answer if isinstance(answer, dict) else {"exit": 1, "lines": ["the daemon's answer is not an object"]}
