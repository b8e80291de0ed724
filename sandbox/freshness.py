"""When each published dataset is due again: its last build plus its update cycle.

``update_frequency`` (the catalog's update cycle, 更新周期) says how often the publisher renews
a dataset; a dataset is due at its latest version's build time plus that cycle (calendar
months and years, not fixed day counts) and overdue once the clock (``sandbox.clock``) has
passed that moment. ``irregular`` and ``never`` have no due date. Shown by
``contesthub datasets freshness``, the public data service's dataset entries and the
leaderboard app's catalog page.
"""

from __future__ import annotations

import datetime as dt

from dateutil.relativedelta import relativedelta

from sandbox import clock

CYCLES = {
    "daily": relativedelta(days=1),
    "weekly": relativedelta(weeks=1),
    "monthly": relativedelta(months=1),
    "quarterly": relativedelta(months=3),
    "annual": relativedelta(years=1),
}


def of_entry(e: dict, now: dt.datetime | None = None) -> dict:
    """``{last_build, update_frequency, due, overdue, overdue_days}`` of one catalog entry."""
    now = now or clock.now()
    built = dt.datetime.fromisoformat(e["built_at"])
    cycle = CYCLES.get(e.get("update_frequency", ""))
    due = built + cycle if cycle else None
    late = due is not None and due < now
    return {
        "last_build": e["built_at"],
        "update_frequency": e.get("update_frequency"),
        "due": due.isoformat(timespec="seconds") if due else None,
        "overdue": late,
        "overdue_days": (now - due).days if late else 0,
    }


def report(cat: dict, now: dt.datetime | None = None) -> list[dict]:
    """Every published dataset's freshness, the overdue first, longest overdue first."""
    now = now or clock.now()
    rows = [{"id": ds_id, **of_entry(d["entry"], now)} for ds_id, d in cat["datasets"].items()]
    return sorted(rows, key=lambda r: (not r["overdue"], -r["overdue_days"], r["due"] or "9999", r["id"]))
