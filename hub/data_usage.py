"""How much the public data service is used: downloads and API calls per dataset and day.

Only aggregates are kept (a count per day, dataset and kind); no address, no query, no time
of day. The service adds to the counts in memory and writes them every few seconds to
``usage.json`` in its cache folder (atomically), reading them back when it starts, so a
restart loses at most those seconds. The day is the clock's (``sandbox.clock``) date in the
contest's time zone (``CONTESTHUB_TZ``, default Asia/Shanghai). Served as ``api/usage.json``
and drawn as a chart on the leaderboard app's catalog page.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from pathlib import Path
from zoneinfo import ZoneInfo

from sandbox import clock

FILE = "usage.json"
KINDS = ("api", "download")


def data_cache_dir(private_root: Path) -> Path:
    """Where the hub's data service keeps its exports and counts (hub/services.py passes it on)."""
    return Path(private_root) / "hub" / "data-cache"


class Usage:
    def __init__(self, folder: Path, tz: str | None = None):
        self.path = Path(folder) / FILE
        self.tz = ZoneInfo(tz or os.environ.get("CONTESTHUB_TZ") or "Asia/Shanghai")
        self.counts: dict[str, dict[str, dict[str, int]]] = load(self.path.parent)
        self.lock = threading.Lock()
        self.dirty = False

    def count(self, dataset: str, kind: str) -> None:
        day = clock.now().astimezone(self.tz).date().isoformat()
        with self.lock:
            per = self.counts.setdefault(day, {}).setdefault(dataset, {k: 0 for k in KINDS})
            per[kind] = per.get(kind, 0) + 1
            self.dirty = True

    def save(self) -> None:
        with self.lock:
            if not self.dirty:
                return
            doc = json.dumps({"days": self.counts}, ensure_ascii=False, sort_keys=True)
            self.dirty = False
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".usage.")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(doc)
        os.replace(tmp, self.path)

    def rows(self, dataset: str | None = None) -> list[dict]:
        with self.lock:
            return rows(self.counts, dataset)


def load(folder: Path) -> dict:
    try:
        return json.loads((Path(folder) / FILE).read_text("utf-8"))["days"]
    except (OSError, ValueError, KeyError):
        return {}


def rows(counts: dict, dataset: str | None = None) -> list[dict]:
    """``[{day, dataset, api, download}]``, by day then dataset."""
    out = []
    for day in sorted(counts):
        for ds, per in sorted(counts[day].items()):
            if dataset is None or ds == dataset:
                out.append({"day": day, "dataset": ds, **{k: per.get(k, 0) for k in KINDS}})
    return out
