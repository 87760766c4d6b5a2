"""What every command-line entry point shares: one-line errors with exit 2, Ctrl-C with exit 130."""

from __future__ import annotations

import sys
from typing import Callable

from nst.errors import UserError


def run_main(main: Callable[[list[str]], int], argv: list[str] | None = None) -> int:
    """Call ``main``; turn a UserError into ``error: ...`` + exit 2 and Ctrl-C into exit 130."""
    try:
        return main(sys.argv[1:] if argv is None else argv)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted: snapshots, losses.csv and run.json kept; no result.png written", file=sys.stderr)
        return 130


def say(text: str) -> None:
    """Run log lines go to stderr, so stdout stays free for machine-readable output."""
    print(text, file=sys.stderr, flush=True)
