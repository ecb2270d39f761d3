"""Helper process for the SIGKILL test: records critical events forever, printing the number of
each one after `record()` acknowledged it. Not a test module."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from actors.asks import journal, record
from actors.storage import open_store
from actors.storage.persistence import Persistence
from messages.models import MonitorId
from messages.persistence import Record
from runtime.clock import SystemClock


def main() -> None:
    path, first = sys.argv[1], int(sys.argv[2])
    store, states, _ = open_store(path)
    persistence = Persistence.start(store, states, SystemClock())
    number = first
    while True:
        monitor = MonitorId("main", f"S{number % 40}USDT")
        record(
            persistence,
            Record(monitor, {"n": number}, (journal(number, monitor, "tp_filled", n=number),), critical=True),
        )
        print(number, flush=True)
        number += 1


main()
