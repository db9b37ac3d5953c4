"""SIGTERM and SIGINT during a migration: end the step as a failure does, never half-way.

A cancelled CI job or ``docker stop`` sends SIGTERM; Ctrl-C sends SIGINT.  Left to
Python's defaults, SIGTERM kills the process on the spot (no audit event, a non-atomic
step left wherever it was) and SIGINT raises ``KeyboardInterrupt`` wherever the code
happens to be.  While the migration lock is held, ``handled()`` turns both into
``Terminated``, raised in the main thread:

- in Python code (a script's loop, ``time.sleep``) it is raised at once;
- in a PostgreSQL statement, psycopg's wait loop sees it and cancels the query on the
  server (it does so for any ``KeyboardInterrupt``, of which ``Terminated`` is one);
- in a SQLite statement, which runs in C where Python cannot raise, the flag set here
  makes the connection's progress handler (``vendors/sqlite.py``) interrupt it.

The executor then ends the step: an atomic one is rolled back, a non-atomic one is
recorded as interrupted, the audit event is written, and the command exits 130
(SIGINT) or 143 (SIGTERM).  A second signal while that recording is under way only
sets the flag (``shielded``): the record of what happened must be written whole.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType
from typing import Any


class Terminated(KeyboardInterrupt):
    """A signal asked the process to stop (``signum``: SIGTERM or SIGINT)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


_received: list[int] = []  # signals seen since handled() began (the newest last)
_shield = threading.local()


def received() -> int | None:
    """The signal that asked us to stop, if one did (``None`` otherwise)."""
    return _received[-1] if _received else None


def pending_error() -> Terminated | None:
    """The ``Terminated`` a statement interrupted by the flag stands for, if any."""
    signum = received()
    return Terminated(signum) if signum is not None else None


def _handler(signum: int, frame: FrameType | None) -> None:
    _received.append(signum)
    if getattr(_shield, "depth", 0):
        return  # recording what happened: finish that first
    raise Terminated(signum)


@contextlib.contextmanager
def handled() -> Iterator[None]:
    """SIGTERM and SIGINT raise ``Terminated`` in the body (main thread only; elsewhere
    Python cannot install handlers, and the body runs with the defaults)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous: dict[int, Any] = {}
    _received.clear()
    for signum in (signal.SIGTERM, signal.SIGINT):
        previous[signum] = signal.signal(signum, _handler)
    try:
        yield
    finally:
        for number, old in previous.items():
            signal.signal(number, old)


@contextlib.contextmanager
def shielded() -> Iterator[None]:
    """A signal in the body is noted, not raised (the body records a failure)."""
    _shield.depth = getattr(_shield, "depth", 0) + 1
    try:
        yield
    finally:
        _shield.depth -= 1


def clear() -> None:
    _received.clear()


def as_container_init() -> None:
    """As PID 1 (a container's only process: ``docker run``, a Kubernetes Job's pod),
    the kernel ignores a signal that has no handler, so ``docker stop`` and a pod's
    deletion would wait out their grace period and then SIGKILL a run holding the
    lock.  There SIGTERM gets a handler outside ``handled()`` too: the command ends
    with 143, as it would anywhere else."""
    import os

    if os.getpid() != 1 or threading.current_thread() is not threading.main_thread():
        return

    def stop(signum: int, frame: FrameType | None) -> None:
        raise Terminated(signum)

    signal.signal(signal.SIGTERM, stop)
