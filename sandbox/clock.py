"""The one clock: every "now" in contesthub comes from :func:`now`.

Contest rules are about time (a challenge opens and closes, a quota day ends at midnight in
the contest's time zone, a demo schedule starts when the demo is first brought up), so time
is an input like any other. Code asks :func:`now`; a test pins it with :func:`pinned` (or
:func:`pin`) instead of comparing a fixed date with the wall clock, and a whole process
tree can be moved with libfaketime (``faketime '2031-06-01 03:00:00' pytest ...``), which
this module reads through like any other clock.

Durations (timeouts, latencies) are not dates: they use :func:`time.monotonic`, and a
thread that waits for an event or a timeout waits with :func:`wait`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import threading
import time
from collections.abc import Iterator

_pinned: dt.datetime | None = None
# How often :func:`wait` looks at its event: the most a stop request waits to be seen.
WAIT_SLICE = 0.05


def now() -> dt.datetime:
    """The current moment, aware and in UTC (the pinned one while a test pins it)."""
    return _pinned if _pinned is not None else dt.datetime.now(dt.UTC)


def pinned_moment() -> dt.datetime | None:
    """The moment a test pinned, or None while the clock runs. A cache keys on it, so that a
    pinned clock never reads a result computed at another moment."""
    return _pinned


def timestamp() -> float:
    """:func:`now` as POSIX seconds, for comparing with file times."""
    return now().timestamp()


def pin(moment: dt.datetime | None) -> None:
    """Stop the clock at ``moment`` (an aware datetime); ``None`` lets it run again."""
    global _pinned
    if moment is not None and moment.tzinfo is None:
        raise ValueError("pin an aware datetime (with a time zone), not a naive one")
    _pinned = moment.astimezone(dt.UTC) if moment is not None else None


@contextlib.contextmanager
def pinned(moment: dt.datetime) -> Iterator[dt.datetime]:
    """Within the block the clock reads ``moment``; afterwards it reads what it read before."""
    before = _pinned
    pin(moment)
    try:
        yield moment
    finally:
        pin(before)


def wait(event: threading.Event, seconds: float) -> bool:
    """Wait until ``event`` is set or ``seconds`` have passed; whether it was set.

    Not ``event.wait(seconds)``: Python's timed waits end at an instant of the monotonic clock
    through glibc's ``sem_clockwait``, which libfaketime does not move while it moves the
    clock, so under a moved clock (the suite's date-bomb runs, a rehearsal of the contest at
    another date) a 0.2 s wait lasted years. Sleeping in short slices is right under any clock.
    """
    deadline = time.monotonic() + seconds
    while not event.is_set():
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        time.sleep(min(left, WAIT_SLICE))
    return True
