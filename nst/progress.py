"""The progress line: iteration, losses, speed and time left, on stderr.

On a terminal one line redraws in place; in a log (CI, a pipe) a line is printed every N iterations.
Tiled runs (prints, :mod:`nst.tiles`) add the tile and pass. Given the plan's ``work`` (pixels per
iteration and iterations of each scale), time left is estimated from the pixel-iterations still to do,
so coarse scales do not promise a print in seconds.
"""

from __future__ import annotations

import sys

from nst.events import Progress
from nst.plan import seconds_left


class ProgressPrinter:
    def __init__(self, total: int, every: int = 10, quiet: bool = False, stream=None,
                 work: list[tuple[int, int]] | None = None):
        self.total, self.every, self.quiet, self.work = total, every, quiet, work
        self.stream = stream or sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()

    def seconds_left(self, ev: Progress, total: int) -> float:
        if ev.seconds_left >= 0:  # the engine's estimate from its plan
            return ev.seconds_left
        if not self.work:  # a rough ETA: coarse scales are cheaper than the last
            return ev.seconds / ev.iteration * (total - ev.iteration)
        return seconds_left(self.work, ev.phase, ev.iteration, ev.seconds)

    def line(self, ev: Progress) -> str:
        width, total = 20, ev.total_iterations or self.total
        filled = int(width * min(ev.iteration, total) / total)
        per_it = ev.seconds / ev.iteration
        left = self.seconds_left(ev, total)
        terms = ", ".join(f"{k} {v:.3g}" for k, v in ev.terms.items())
        scale = f" scale {ev.phase + 1}/{ev.phases} {ev.size[1]}x{ev.size[0]}" if ev.phases > 1 else ""
        tile = f" tile {ev.tile}/{ev.tiles} pass {ev.tile_pass}/{ev.tile_passes}" if ev.tile else ""
        eta = f"{left / 60:.0f} min left" if left >= 600 else f"{left:.0f} s left"
        return (f"[{'#' * filled}{'.' * (width - filled)}] {ev.iteration}/{total}{scale}{tile} "
                f"total {ev.total:.4g} ({terms}) {per_it:.2f} s/it, {eta}")

    def __call__(self, ev: Progress) -> None:
        if self.quiet:
            return
        if self.tty:
            end = "\n" if ev.iteration == (ev.total_iterations or self.total) else ""
            self.stream.write("\r\033[K" + self.line(ev) + end)
            self.stream.flush()
        elif ev.iteration % self.every == 0 or ev.iteration in (1, ev.total_iterations or self.total):
            print(self.line(ev), file=self.stream, flush=True)

    def close(self) -> None:
        if self.tty and not self.quiet:
            self.stream.write("\n")
            self.stream.flush()
