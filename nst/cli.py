"""What every command-line entry point shares: one-line errors with exit 2, Ctrl-C with exit 130.

``kill`` (SIGTERM) and a closed terminal (SIGHUP) end a run as Ctrl-C does: the recorder marks run.json
``interrupted`` and keeps what was written. TensorFlow's import-time C++ log lines (absl, oneDNN) are
not ours to show: :func:`quiet_tensorflow_import` swallows them.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from typing import Callable

from nst.errors import UserError

# Signals that end a run like Ctrl-C: `kill`, and the terminal going away.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


def run_main(main: Callable[[list[str]], int], argv: list[str] | None = None) -> int:
    """Call ``main``; turn a UserError into ``error: ...`` + exit 2 and Ctrl-C (or kill) into exit 130."""
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = {s: signal.signal(s, _interrupt) for s in STOP_SIGNALS} if in_main_thread else {}
    try:
        return main(sys.argv[1:] if argv is None else argv)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        # the recorder says what it kept (nst.outputs.Interrupted); before it existed nothing was written
        said = str(exc) if exc.args else "nothing was written"
        print(f"\ninterrupted: {said}", file=sys.stderr)
        return 130
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _interrupt(signum, frame):
    raise KeyboardInterrupt


@contextlib.contextmanager
def quiet_tensorflow_import():
    """Import TensorFlow with file descriptor 2 pointed at /dev/null.

    TF 2.21 prints absl's "All log messages before absl::InitializeLog()" and a oneDNN notice from C++
    while it loads, whatever TF_CPP_MIN_LOG_LEVEL says; they would precede every run's log and every
    error line. Python-level errors raised by the import still surface, after the descriptor is back.
    """
    if "tensorflow" in sys.modules:
        yield
        return
    sys.stderr.flush()
    # A KeyboardInterrupt raised inside TF's import can be swallowed by a bare `except:` in some module it
    # imports, and the run would go on: hold Ctrl-C / kill until the import is over, then act on it.
    pending: list[int] = []
    held = ((signal.SIGINT, *STOP_SIGNALS) if threading.current_thread() is threading.main_thread() else ())
    previous = {s: signal.signal(s, lambda signum, frame: pending.append(signum)) for s in held}
    saved, null = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 2)
        import tensorflow  # noqa: F401  (the import whose noise this hides)
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)
        for s, handler in previous.items():
            signal.signal(s, handler)
    if pending:
        raise KeyboardInterrupt
    yield


def say(text: str) -> None:
    """Run log lines go to stderr, so stdout stays free for machine-readable output."""
    print(text, file=sys.stderr, flush=True)
