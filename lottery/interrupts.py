"""Ctrl-C during training reaches the caller as KeyboardInterrupt, whatever Lightning does with it.

Lightning catches KeyboardInterrupt inside `fit`/`validate`/`test`, ignores SIGINT from then on, and
either calls `sys.exit(1)` (2.5 and later) or returns with `trainer.interrupted` set (earlier), which
would start the next level. `propagate` turns both back into KeyboardInterrupt, so that the `lottery`
command prints how to resume and exits with 130, and restores the SIGINT handler.
"""
from __future__ import annotations

import contextlib
import signal
import threading


@contextlib.contextmanager
def propagate(trainer):
    """Raise KeyboardInterrupt after a Lightning call that was interrupted by Ctrl-C."""
    main = threading.current_thread() is threading.main_thread()
    handler = signal.getsignal(signal.SIGINT) if main else None
    try:
        yield
    except SystemExit as e:
        if isinstance(e.__context__, KeyboardInterrupt):  # Lightning's sys.exit(1) while handling Ctrl-C
            raise KeyboardInterrupt from None
        raise
    finally:
        if main and handler is not None and signal.getsignal(signal.SIGINT) != handler:
            signal.signal(signal.SIGINT, handler)
    if trainer.interrupted:  # older Lightning: the call returned as if it had finished
        raise KeyboardInterrupt
