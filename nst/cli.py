"""What every command-line entry point shares: one-line errors with exit 2, Ctrl-C with exit 130."""

from __future__ import annotations

import signal
import sys
import threading
from typing import Callable

from nst.errors import UserError


def run_main(main: Callable[[list[str]], int], argv: list[str] | None = None) -> int:
    """Call ``main``; turn a UserError into ``error: ...`` + exit 2 and Ctrl-C (or kill) into exit 130."""
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _interrupt) if in_main_thread else None  # `kill` = tidy Ctrl-C
    try:
        return main(sys.argv[1:] if argv is None else argv)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted: snapshots, losses.csv and run.json kept; no result.png written", file=sys.stderr)
        return 130
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def say(text: str) -> None:
    """Run log lines go to stderr, so stdout stays free for machine-readable output."""
    print(text, file=sys.stderr, flush=True)
