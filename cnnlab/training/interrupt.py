"""Stopping training cleanly: SIGINT/SIGTERM set a flag that the loop checks after every step.

The loop then saves a checkpoint and returns, so an interruption never loses more than one step.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any

from cnnlab.runtime.progress import Progress


class StopFlag:
    """Set by a signal handler (or a test); the loop checks it after every step.

    The handler only sets it: writing from a handler can interrupt a write to the same stream
    ("reentrant call" on stderr). The notice is printed by the first check after the signal.
    """

    def __init__(self) -> None:
        self.signal_number: int | None = None
        self.notify: Callable[[str], None] | None = None
        self._announced = False

    def request(self, signal_number: int = signal.SIGINT) -> None:
        self.signal_number = signal_number

    def __call__(self) -> bool:
        if self.signal_number is None:
            return False
        if self.notify is not None and not self._announced:
            self._announced = True
            self.notify(
                f"{signal.Signals(self.signal_number).name} received: finishing this step and "
                "saving a checkpoint (Ctrl-C again to stop at once; the last checkpoint is kept)."
            )
        return True


@contextlib.contextmanager
def stop_on_signals(flag: StopFlag, progress: Progress, at_once: bool = True) -> Iterator[None]:
    """First SIGINT/SIGTERM: finish the step and checkpoint. A second SIGINT stops at once
    (`at_once`; not under torchrun, whose launcher passes a terminal's Ctrl-C on to processes
    that have already seen it, and sends SIGKILL itself after its grace period)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signal_number: int, frame: Any) -> None:
        if at_once and flag.signal_number is not None and signal_number == signal.SIGINT:
            raise KeyboardInterrupt
        flag.request(signal_number)

    flag.notify = progress.message
    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signal_number, old in previous.items():
            signal.signal(signal_number, old)
        flag.notify = None
