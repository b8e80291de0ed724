"""The demo contest's schedule: open for submissions whenever ``contesthub up`` starts it.

A real contest file has absolute dates, and they stay exactly as written. The demo's file
(``config/contest.toml``) carries ``[demo] day = 2026-12-01``: its dates are a shape drawn
around that day, and they move by whole days (times of day kept, in the contest's time zone)
so that ``day`` falls on the demo's **anchor day**, recorded in
``<private root>/demo_schedule.json``:

* ``contesthub up`` records today as the anchor on the first start, so the demo opened a month
  ago and closes two months from now; should a demo be started again after its last challenge
  has closed, and nobody closed it on purpose, ``up`` makes today the anchor again (it rolls
  forward), so a newcomer never finds a demo that is over;
* ``contesthub contest demo close`` moves the anchor back so that every challenge closed
  yesterday: the review phase runs and the organizer can reveal. ``up`` leaves a demo closed
  this way closed;
* ``contesthub contest demo open`` makes today the anchor again.

Until an anchor is recorded (a test, a command run before the first ``up``) the anchor is
today. The anchor moves only by these commands, so a demo keeps one schedule across restarts.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sandbox import clock
from sandbox.errors import ContesthubError

if TYPE_CHECKING:
    from leaderboard.contest import Contest

FILE = "demo_schedule.json"
OPEN, CLOSED = "open", "closed"


@dataclass(frozen=True)
class Anchor:
    """Where the demo's ``[demo] day`` falls, and whether an organizer closed the demo on purpose."""

    day: dt.date
    state: str = OPEN
    at: dt.datetime | None = None
    by: str = ""

    def to_dict(self) -> dict:
        return {
            "day": self.day.isoformat(),
            "state": self.state,
            "at": self.at.isoformat() if self.at else None,
            "by": self.by,
        }


def path(private_root: Path) -> Path:
    return Path(private_root) / FILE


def read(private_root: Path) -> Anchor | None:
    """The recorded anchor, or None when none was recorded (or the file is unreadable)."""
    try:
        doc = json.loads(path(private_root).read_text("utf-8"))
        return Anchor(
            day=dt.date.fromisoformat(doc["day"]),
            state=CLOSED if doc.get("state") == CLOSED else OPEN,
            at=dt.datetime.fromisoformat(doc["at"]) if doc.get("at") else None,
            by=str(doc.get("by") or ""),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write(private_root: Path, anchor: Anchor) -> Anchor:
    """Record ``anchor`` atomically (a reader sees the old file or the new one, never half)."""
    Path(private_root).mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=private_root, prefix=".demo_schedule-", suffix=".json")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(anchor.to_dict(), f, indent=1)
    os.replace(tmp, path(private_root))
    return anchor


def anchor_day(private_root: Path | None, timezone: dt.tzinfo) -> dt.date:
    """The recorded anchor day, else today in the contest's time zone."""
    recorded = read(private_root) if private_root is not None else None
    return recorded.day if recorded else clock.now().astimezone(timezone).date()


def shift(moment: dt.datetime, days: int, timezone: dt.tzinfo) -> dt.datetime:
    """``moment`` moved by whole days on the contest's wall clock (10:00 stays 10:00 across DST)."""
    if not days:
        return moment
    local = moment.astimezone(timezone).replace(tzinfo=None) + dt.timedelta(days=days)
    return local.replace(tzinfo=timezone)


class DemoScheduleError(ContesthubError):
    code = "not-a-demo"


def _require_demo(contest: Contest) -> None:
    if contest.demo_day is None:
        raise DemoScheduleError(
            f"{contest.path.name} has fixed dates (no [demo] table): change its dates in the file instead",
            f"{contest.path.name} 的日期是固定的（没有 [demo] 表）：请直接修改文件中的日期",
        )


def start(contest: Contest, private_root: Path, by: str = "contesthub up") -> Anchor | None:
    """What ``contesthub up`` does before it starts the platform; the anchor now in force.

    Records today on the first start; rolls an open demo forward to today when its last
    challenge has closed. Returns None for a contest with fixed dates (nothing to do)."""
    if contest.demo_day is None:
        return None
    recorded = read(private_root)
    now = clock.now()
    if recorded is None or (recorded.state == OPEN and now >= contest.last_close):
        return write(private_root, Anchor(now.astimezone(contest.timezone).date(), OPEN, now, by))
    return recorded


def open_today(contest: Contest, private_root: Path, by: str) -> Anchor:
    """Make today the anchor: the demo is open again, as on its first day."""
    _require_demo(contest)
    now = clock.now()
    return write(private_root, Anchor(now.astimezone(contest.timezone).date(), OPEN, now, by))


def close(contest: Contest, private_root: Path, by: str) -> Anchor:
    """Move the anchor back so that every challenge closed yesterday (contest time): no more
    submissions, the review phase runs and the organizer can reveal. ``contest`` is the demo
    as loaded with the anchor in force now."""
    _require_demo(contest)
    now = clock.now()
    day = contest.anchor_day
    if now < contest.last_close:
        yesterday = now.astimezone(contest.timezone).date() - dt.timedelta(days=1)
        day += yesterday - contest.last_close.astimezone(contest.timezone).date()
    return write(private_root, Anchor(day, CLOSED, now, by))
