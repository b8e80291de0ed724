"""Load (issue 7, suite 2): the deadline rush against a real hub, proxy and submission service.

The scenario is benchmarks/deadline_rush.py's: concurrent contestants (two per team, each
with their own JupyterHub token) upload predictions through the hub's proxy and wait for
their scores as ``sandbox.submit`` does; most teams have a large grant from the organizer,
a few keep a small quota and run out of it during the rush; a sampler reads the leaderboard
every second. Afterwards the contest store is read and must show that nothing was lost (every
202 is stored with its verified file and finished), every refusal was a quota refusal of a
team whose quota was full, quotas are exact, and the audit log verifies.

* ``test_deadline_rush_smoke``: 20 streams for 5 s, in the normal suite.
* ``test_deadline_rush_full``: 200 streams for 60 s (slow: ``pytest --run-slow``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# The scenario and its prediction files are the benchmark's own (benchmarks/deadline_rush.py).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import _hub
import deadline_rush

from hub.testing import HubDriver


@pytest.fixture(scope="module")
def platform(hub) -> HubDriver:
    if "submit" not in hub.services:
        pytest.skip("the submission service is not running in this hub (see the hub's output)")
    return hub  # the same driver (hub.testing) as the benchmark's


@pytest.fixture(scope="module")
def files(demo) -> _hub.Predictions:
    return _hub.Predictions(demo)


def rush_and_check(platform: HubDriver, files: _hub.Predictions, cfg: deadline_rush.RushConfig) -> dict:
    rush = deadline_rush.run(platform, cfg, files)
    checked = deadline_rush.check(platform, rush)
    fig = deadline_rush.figures(rush, checked)
    deadline_rush.report(fig)  # shown when a test fails (and with -s)
    assert fig["problems"] == {}, fig["problems"]
    assert fig["errors by step"] == {}, fig["errors by step"]
    valid, broken = fig["accepted valid / broken"]
    assert valid > 0 and broken > 0, fig["accepted valid / broken"]
    assert fig["store: by status"] == {"scored": valid, "invalid": broken}
    # Every team with a small quota ran out of it, and was told so; no other team was refused.
    assert fig["store: limited teams never refused"] == []
    assert fig["refused (429 quota-exceeded)"] > 0
    assert set(fig["refused by reason"]) == {"429 quota-exceeded"}
    for name, s in fig["leaderboard during the rush"].items():
        assert s["n"] > 0 and s["non-200"] == 0, (name, s)
    return fig


def test_deadline_rush_smoke(platform, files):
    cfg = deadline_rush.RushConfig(streams=20, seconds=5, limited=2, invalid_share=0.2, wait_for_score=120)
    fig = rush_and_check(platform, files, cfg)
    # Each limited team: exactly its daily quota and grant accepted, as the store says.
    assert fig["accepted (202)"] >= 2 * (5 + cfg.limited_grant)


@pytest.mark.slow
def test_deadline_rush_full(platform, files):
    cfg = deadline_rush.RushConfig(streams=200, seconds=60, limited=10)
    fig = rush_and_check(platform, files, cfg)
    assert fig["accepted (202)"] >= 10 * (5 + cfg.limited_grant)
