"""Process signals: SIGINT and SIGTERM ask for a clean stop; SIGUSR1 logs every thread's stack.

Handlers run in the main thread, which therefore must stay idle (waiting on an Event), never
blocked in a future or a queue (pykka.debug's advice).
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable

import pykka.debug

log = logging.getLogger(__name__)


def install(request_stop: Callable[[], None]) -> None:
    def on_stop_signal(signum: int, _frame) -> None:
        log.info("Received %s: stopping", signal.Signals(signum).name)
        request_stop()

    signal.signal(signal.SIGINT, on_stop_signal)
    signal.signal(signal.SIGTERM, on_stop_signal)
    signal.signal(signal.SIGUSR1, pykka.debug.log_thread_tracebacks)
