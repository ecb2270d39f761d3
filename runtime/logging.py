"""Log set-up: a human format and a JSON-lines format, both with secrets scrubbed.

Secrets never reach a log line by construction (they are `Secret` values); the scrubbing here is
the second line of defence, for text we do not control (library messages, tracebacks).
Structured fields (`account`, `symbol`, `monitor`, `event`, ...) are passed with `extra=` and
appear as JSON keys in the JSON format.
"""

from __future__ import annotations

import logging
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


def setup_logging(level: str = "INFO", fmt: str = "human", secrets: Iterable[str] = (), stream=None) -> None:
    """Configure the root logger once for the process (also quiets chatty libraries)."""
    scrub.secrets = tuple(s for s in secrets if s)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else HumanFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # Pykka logs exceptions returned through futures at INFO; urllib3 is noisy at DEBUG.
    logging.getLogger("pykka").setLevel(max(logging.WARNING, root.level))
    logging.getLogger("urllib3").setLevel(max(logging.WARNING, root.level))
    # Apprise's own lines may quote a service URL with its token: the Notifier logs failures itself,
    # naming each URL in Apprise's privacy form.
    logging.getLogger("apprise").disabled = True
