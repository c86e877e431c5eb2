"""Ctrl-C or SIGTERM while ``va`` starts: its modules take most of a second to load, and a stop then is
one line and exit 130, as it is later, not a traceback (Ctrl-C) or a bare kill (SIGTERM).

``va.cli`` imports this module before any other of the package and calls ``loaded()`` once its own
imports are done; ``va.cli.main`` then holds SIGTERM itself. Imported in a thread other than the main one
(where no handler can be set), it changes nothing.
"""

from __future__ import annotations

import signal
import sys
import threading
from types import FrameType

from va.errors import ExitCode  # an enum and two standard modules: loaded at once


def _stopped(signum: int, frame: FrameType | None) -> None:
    print("va: interrupted", file=sys.stderr, flush=True)
    raise SystemExit(ExitCode.INTERRUPTED)


_BEFORE: dict[int, object] = {}
if threading.current_thread() is threading.main_thread():
    for _signum in (signal.SIGINT, signal.SIGTERM):
        if signal.getsignal(_signum) is not signal.SIG_IGN:  # an ignored signal stays ignored
            _BEFORE[_signum] = signal.signal(_signum, _stopped)


def loaded() -> None:
    """The package is loaded: the handlers of before ``va`` started are back."""
    for signum, handler in _BEFORE.items():
        signal.signal(signum, handler)  # type: ignore[arg-type]
    _BEFORE.clear()
