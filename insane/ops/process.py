"""What a process does at its end, and whether another one lives.

`process_alive(pid)` says whether a process exists (ours or another user's).

What must be undone when the process ends, however it ends short of SIGKILL:

`at_exit(action)` runs ``action`` at normal exit (atexit), and on SIGTERM, the signal systemd,
Docker and Kubernetes send, when the application has left that signal at its default: the
actions run, the default is put back and the signal raised again, so the process still dies of
SIGTERM as it would have. An application that handles SIGTERM itself keeps it (then its exit
runs the actions through atexit), and nothing is installed outside the main thread. Users: the
DPDK EAL (ports stopped, runtime directory removed) and the Prometheus target files.
"""

from __future__ import annotations

import atexit
import os
import signal
import threading
from collections.abc import Callable
from types import FrameType

_actions: list[Callable[[], None]] = []
#: Reentrant: the SIGTERM handler runs on the main thread, perhaps inside `at_exit` itself.
_lock = threading.RLock()


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` exists (ours or another user's)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def at_exit(action: Callable[[], None]) -> None:
    """Run ``action`` (idempotent) when the process exits or is terminated."""
    with _lock:
        if action in _actions:
            return
        _actions.append(action)
        if len(_actions) == 1:
            atexit.register(_run)
    if (
        threading.current_thread() is threading.main_thread()
        and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    ):
        signal.signal(signal.SIGTERM, _on_sigterm)


def _run() -> None:
    with _lock:
        actions = list(_actions)
    for action in reversed(actions):
        try:
            action()
        except Exception:  # one failed cleanup must not stop the others
            continue


def _on_sigterm(signum: int, _frame: FrameType | None) -> None:
    _run()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)
