"""A worker's sign of life for a long run: a thread that marks the run alive every few seconds,
whatever the run itself is doing (a long matrix product, a training step)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from types import TracebackType

from django.db import connection

from modeling.models import HEARTBEAT_SECONDS


class Heartbeat(threading.Thread):
    """Calls `beat` every HEARTBEAT_SECONDS while the `with` block runs."""

    def __init__(self, beat: Callable[[], object], name: str) -> None:
        super().__init__(daemon=True, name=name)
        self._beat = beat
        self._stopped = threading.Event()

    def run(self) -> None:
        try:
            while not self._stopped.wait(HEARTBEAT_SECONDS):
                self._beat()
        finally:
            connection.close()  # the thread's own database connection

    def __enter__(self) -> Heartbeat:
        self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stopped.set()
        self.join()
