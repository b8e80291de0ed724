"""The one clock (``sandbox.clock``): pinned in tests, and right under a moved clock."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import threading
import time

import pytest
from contest_fixtures import LIBFAKETIME, moved_clock

from sandbox import clock
from sandbox.settings import PROJECT_ROOT


def test_a_pinned_clock_reads_the_pinned_moment_and_runs_again_after():
    moment = dt.datetime(2030, 1, 2, 3, 4, tzinfo=dt.timezone(dt.timedelta(hours=8)))
    with clock.pinned(moment):
        assert clock.now() == moment and clock.now().tzinfo == dt.UTC
    assert clock.pinned_moment() is None and abs(clock.timestamp() - time.time()) < 5
    with pytest.raises(ValueError, match="aware"):
        clock.pin(dt.datetime(2030, 1, 2))


def test_wait_returns_when_the_event_is_set_or_the_time_is_up():
    event = threading.Event()
    started = time.monotonic()
    assert clock.wait(event, 0.2) is False and time.monotonic() - started >= 0.2
    threading.Timer(0.1, event.set).start()
    started = time.monotonic()
    assert clock.wait(event, 30) is True and time.monotonic() - started < 5


WAITS = """
import threading, time
from sandbox import clock
started = time.monotonic()
set_later = threading.Event()
threading.Thread(target=lambda: (time.sleep(0.3), set_later.set())).start()  # not a Timer: it waits with Event.wait
print(clock.wait(threading.Event(), 0.5), clock.wait(set_later, 60), round(time.monotonic() - started))
"""


@pytest.mark.skipif(not LIBFAKETIME.exists(), reason="needs libfaketime (`python3 dev.py test` installs it)")
def test_waits_keep_their_length_under_a_moved_clock():
    """A scorer's 0.2 s idle wait (``Event.wait``) lasted years under libfaketime: glibc's
    ``sem_clockwait`` is not moved with the clock. ``clock.wait`` is."""
    env = moved_clock({**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}, dt.datetime(2031, 6, 1, 3, tzinfo=dt.UTC))
    r = subprocess.run([sys.executable, "-c", WAITS], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["False", "True", "1"]
