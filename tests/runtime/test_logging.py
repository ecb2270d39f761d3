"""Log set-up (runtime/logging.py): one writer thread, secrets scrubbed, nothing lost at exit."""

from __future__ import annotations

import io
import logging
import threading
import time

import orjson
import pytest

from runtime import logging as log_setup


@pytest.fixture(autouse=True)
def root_restored():
    """setup_logging configures the process's root logger: give the next test back pytest's."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    log_setup._stop_writer()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)


class SlowReader(io.StringIO):
    """A pipe whose reader stopped reading: every write waits until released."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    def write(self, text: str) -> int:
        self.release.wait(10)
        return super().write(text)


def test_a_log_call_never_waits_on_a_slow_reader_and_every_line_is_written_at_the_end():
    stream = SlowReader()
    log_setup.setup_logging("INFO", "human", stream=stream)
    try:
        started = time.monotonic()
        for n in range(200):
            logging.getLogger("tests.logging").info("line %d", n)
        assert time.monotonic() - started < 1.0  # the writer waits, the callers do not
        stream.release.set()
    finally:
        log_setup._stop_writer()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 200 and lines[-1].endswith("tests.logging: line 199")


def test_json_lines_keep_the_callers_thread_fields_and_scrub_secrets():
    stream = io.StringIO()
    log_setup.setup_logging("INFO", "json", secrets=["s3cr3t-key"], stream=stream)
    try:
        logging.getLogger("tests.logging").warning("key %s refused", "s3cr3t-key", extra={"account": "main"})
    finally:
        log_setup._stop_writer()
    entry = orjson.loads(stream.getvalue().splitlines()[0])
    assert entry["message"] == "key *** refused" and entry["account"] == "main"
    assert entry["thread"] == threading.current_thread().name  # the caller's, not the writer's
