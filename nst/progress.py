"""The progress line: iteration, losses, speed and time left, on stderr.

On a terminal one line redraws in place; in a log (CI, a pipe) a line is printed every N iterations.
"""

from __future__ import annotations

import sys

from nst.events import Progress


class ProgressPrinter:
    def __init__(self, total: int, every: int = 10, quiet: bool = False, stream=None):
        self.total, self.every, self.quiet = total, every, quiet
        self.stream = stream or sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()

    def line(self, ev: Progress) -> str:
        width = 20
        filled = int(width * ev.iteration / self.total)
        per_it = ev.seconds / ev.iteration
        left = per_it * (self.total - ev.iteration)  # a rough ETA: coarse scales are cheaper than the last
        terms = ", ".join(f"{k} {v:.3g}" for k, v in ev.terms.items())
        scale = f" scale {ev.phase + 1}/{ev.phases} {ev.size[1]}x{ev.size[0]}" if ev.phases > 1 else ""
        return (f"[{'#' * filled}{'.' * (width - filled)}] {ev.iteration}/{self.total}{scale} "
                f"total {ev.total:.4g} ({terms}) {per_it:.2f} s/it, {left:.0f} s left")

    def __call__(self, ev: Progress) -> None:
        if self.quiet:
            return
        if self.tty:
            end = "\n" if ev.iteration == self.total else ""
            self.stream.write("\r\033[K" + self.line(ev) + end)
            self.stream.flush()
        elif ev.iteration % self.every == 0 or ev.iteration in (1, self.total):
            print(self.line(ev), file=self.stream, flush=True)

    def close(self) -> None:
        if self.tty and not self.quiet:
            self.stream.write("\n")
            self.stream.flush()
