"""Terminal progress for long work: one refreshing line on a terminal, plain lines otherwise."""

from __future__ import annotations

import sys
import time
from typing import TextIO


def format_duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


class Progress:
    """Reports (epoch, step, loss, accuracy, images/s, time left) at a bounded rate.

    images/s is measured over the steps since the previous report, so it includes everything the
    loop does; the time left extrapolates the rate of steps since the first report.

    On a terminal the line is redrawn in place ~5 times a second; when output goes to a file or a
    pipe a plain line is printed every `plain_interval` seconds, so logs stay readable.
    """

    def __init__(
        self,
        total_steps: int,
        stream: TextIO | None = None,
        enabled: bool = True,
        plain_interval: float = 15.0,
    ) -> None:
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.interactive = enabled and hasattr(self.stream, "isatty") and self.stream.isatty()
        self.total_steps = total_steps
        self.plain_interval = plain_interval
        self.interval = 0.2 if self.interactive else plain_interval
        self._last = 0.0
        self._start_time = time.perf_counter()
        self._start_step: int | None = None

    def update(
        self,
        epoch: int,
        epochs: int,
        step: int,
        loss: float,
        accuracy: float,
        images: int,
    ) -> None:
        """Called after every step with the step's image count; prints at a bounded rate."""
        if not self.enabled:
            return
        now = time.perf_counter()
        if self._start_step is None:  # the first step only starts the clocks
            self._start_step, self._start_time = step, now
            self._window_time, self._window_images, self._last = now, 0, now
            return
        self._window_images += images
        if now - self._last < self.interval:
            return
        self._last = now
        images_per_second = self._window_images / max(now - self._window_time, 1e-9)
        self._window_time, self._window_images = now, 0
        done = step - self._start_step
        left = (now - self._start_time) / done * (self.total_steps - step) if done > 0 else 0.0
        line = (
            f"epoch {epoch}/{epochs}  step {step}/{self.total_steps}  loss {loss:.4f}  "
            f"acc {accuracy:.4f}  {images_per_second:,.0f} img/s  left {format_duration(left)}"
        )
        self._write(line)

    def message(self, text: str) -> None:
        """A line that stays (epoch summaries, notices)."""
        if not self.enabled:
            return
        if self.interactive:
            self.stream.write("\r\033[K")
        self.stream.write(text + "\n")
        self.stream.flush()

    def _write(self, line: str) -> None:
        if self.interactive:
            self.stream.write("\r\033[K" + line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.interactive and self.enabled:
            self.stream.write("\r\033[K")
            self.stream.flush()
