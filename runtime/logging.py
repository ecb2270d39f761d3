"""Log set-up: a human format and a JSON-lines format, both with secrets scrubbed.

Secrets never reach a log line by construction (they are `Secret` values); the scrubbing here is
the second line of defence, for text we do not control (library messages, tracebacks).
Structured fields (`account`, `symbol`, `monitor`, `event`, ...) are passed with `extra=` and
appear as JSON keys in the JSON format.

Lines are written by one writer thread: a logging call puts its record on a queue and returns, so
no actor waits on stderr (a slow reader of the pipe, a full terminal) or on the handler's lock
(at thousands of monitors that lock was a convoy). The queue is drained at exit.
"""

from __future__ import annotations

import atexit
import copy
import logging
import logging.handlers
import queue
import sys
from collections.abc import Iterable
from datetime import UTC, datetime

import orjson

HUMAN_FORMAT = "%(asctime)s %(levelname)-7s [%(threadName)s] %(name)s: %(message)s"
STRUCTURED_FIELDS = ("account", "symbol", "monitor", "event")
_REDACTED = "***"


class _Scrubber:
    def __init__(self) -> None:
        self.secrets: tuple[str, ...] = ()

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, _REDACTED)
        return text


scrub = _Scrubber()


class HumanFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__(HUMAN_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        return scrub(super().format(record))


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "thread": record.threadName,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in STRUCTURED_FIELDS:
            if hasattr(record, name):
                entry[name] = getattr(record, name)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return scrub(orjson.dumps(entry, default=str).decode())


class _Enqueue(logging.handlers.QueueHandler):
    """Hands a record to the writer thread with its message already built (its arguments may
    change after the call); formatting, scrubbing and writing happen on the writer."""

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        record = copy.copy(record)
        record.msg, record.args = record.getMessage(), None
        return record


_writer: logging.handlers.QueueListener | None = None


def _stop_writer() -> None:
    """Write what is queued and end the writer thread (at exit, or before a new set-up)."""
    global _writer
    if _writer is not None:
        _writer.stop()
        _writer = None


def setup_logging(level: str = "INFO", fmt: str = "human", secrets: Iterable[str] = (), stream=None) -> None:
    """Configure the root logger once for the process (also quiets chatty libraries)."""
    global _writer
    scrub.secrets = tuple(s for s in secrets if s)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else HumanFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    _stop_writer()
    records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    _writer = logging.handlers.QueueListener(records, handler)
    _writer.start()
    root.addHandler(_Enqueue(records))
    root.setLevel(level)
    # Pykka logs exceptions returned through futures at INFO; urllib3 is noisy at DEBUG.
    logging.getLogger("pykka").setLevel(max(logging.WARNING, root.level))
    logging.getLogger("urllib3").setLevel(max(logging.WARNING, root.level))
    # Apprise's own lines may quote a service URL with its token: the Notifier logs failures itself,
    # naming each URL in Apprise's privacy form.
    logging.getLogger("apprise").disabled = True


atexit.register(_stop_writer)
