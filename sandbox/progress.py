"""Progress for long work: a bar per step, fed by DuckDB's own query progress.

Builds of national-scale tables take minutes; an organizer should see which step runs and
how far along it is, not a silent terminal. In tests and ``--json`` runs the reporter is
quiet.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import duckdb
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

from sandbox import clock


class Reporter:
    """Shows one line per step; ``sql`` steps get a live percentage."""

    def __init__(self, enabled: bool = True, console: Console | None = None):
        self.enabled = enabled
        self.console = console or Console(stderr=True)
        self._progress: Progress | None = None

    def __enter__(self) -> Reporter:
        if self.enabled:
            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                TaskProgressColumn(),
                TimeElapsedColumn(),
                console=self.console,
                transient=False,
            )
            self._progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self._progress:
            self._progress.__exit__(*exc)
            self._progress = None

    @contextmanager
    def step(self, label: str) -> Iterator[None]:
        if not self._progress:
            yield
            return
        task = self._progress.add_task(label, total=None)
        try:
            yield
        finally:
            self._progress.update(task, total=1, completed=1)

    def sql(self, con: duckdb.DuckDBPyConnection, statement: str, label: str) -> duckdb.DuckDBPyConnection:
        """Execute ``statement``, showing DuckDB's progress for it."""
        if not self._progress:
            return con.execute(statement)
        task = self._progress.add_task(label, total=100)
        done = threading.Event()

        def poll() -> None:
            while not clock.wait(done, 0.25):
                try:
                    pct = con.query_progress()
                except duckdb.Error:
                    continue
                if pct is not None and pct >= 0:
                    self._progress.update(task, completed=pct)

        watcher = threading.Thread(target=poll, daemon=True)
        watcher.start()
        try:
            return con.execute(statement)
        finally:
            done.set()
            watcher.join()
            self._progress.update(task, completed=100)


QUIET = Reporter(enabled=False)
