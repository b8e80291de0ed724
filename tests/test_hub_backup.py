"""Issue 19: a backup restored into empty roots brings back a contestant who logs in and finds their notebooks.

Hub A runs: a contestant signs up, is approved, starts a server and saves a notebook and a
scratch file in their home. ``backup`` takes the store, the hub's accounts and the notebooks
(the size report counts the scratch file, which only ``--homes`` would take). Everything is
restored into new, empty roots; hub B starts on them without a new organizer being made; the
contestant logs in with their old password and finds the notebook, byte for byte; the organizer's
old password works too.
"""

from __future__ import annotations

import requests
from hub_fixtures import RunningHub, hub_settings, running_hub

from hub.launcher import HubProcess
from leaderboard import backup
from leaderboard import store as store_mod
from leaderboard.backup_hub import HubParts
from sandbox.settings import PROJECT_ROOT, Paths

NOTEBOOK = "我的模型.ipynb"


def _contents(hub: RunningHub, name: str, token: str, path: str = "", **kw) -> requests.Response:
    return requests.request(
        kw.pop("method", "GET"),
        f"{hub.url}/user/{name}/api/contents/{path}",
        headers={"Authorization": f"token {token}"},
        timeout=60,
        **kw,
    )


def test_a_restored_backup_brings_back_a_contestant_who_finds_their_notebooks(demo, tmp_path):
    a = hub_settings(tmp_path / "a", demo.data_root, services="none")
    notebook = {
        "cells": [{"cell_type": "markdown", "metadata": {}, "source": "# 门诊量预测 / outpatient forecast"}],
        "metadata": {},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    with running_hub(a, tmp_path / "a.log") as hub:
        name, password, session = hub.account()
        token = hub.new_token(name, session=session)
        hub.spawn(name, token)
        put = _contents(hub, name, token, NOTEBOOK, method="PUT", json={"type": "notebook", "content": notebook})
        assert put.status_code in (200, 201), put.text
        scratch = {"type": "file", "format": "text", "content": "x" * 100_000}
        assert _contents(hub, name, token, "scratch.txt", method="PUT", json=scratch).status_code in (200, 201)
        saved = (a.home_root / name / NOTEBOOK).read_bytes()
        notebooks = {p.name for p in (a.home_root / name).glob("*.ipynb")}  # the starters handed out too
        assert NOTEBOOK in notebooks
        organizer_password = hub.organizer_password

        paths_a = Paths(demo.data_root, a.private_root, PROJECT_ROOT / "datasets")
        store = store_mod.connect(paths_a)
        try:  # taken while the hub runs
            manifest = backup.backup(
                store,
                paths_a,
                PROJECT_ROOT / "config" / "contest.toml",
                tmp_path / "backup",
                hub=HubParts(a.db_url, a.home_root),
            )
        finally:
            store.dispose()
    report = manifest["hub"]
    assert report["accounts"] == 2 and report["homes"] == "notebooks"  # the organizer and the contestant
    sizes = report["home_sizes"][name]
    assert sizes["notebooks"] == len(notebooks) and sizes["bytes"] >= sizes["notebook_bytes"] + 100_000
    assert f"homes/{name}/{NOTEBOOK}" in manifest["files"] and f"homes/{name}/scratch.txt" not in manifest["files"]

    b = hub_settings(tmp_path / "b", tmp_path / "b" / "data", services="none")
    paths_b = Paths(b.data_root, b.private_root, PROJECT_ROOT / "datasets").ensure()
    restored = store_mod.connect(paths_b)
    try:
        backup.restore(tmp_path / "backup", restored, paths_b, hub=HubParts(b.db_url, b.home_root))
    finally:
        restored.dispose()
    assert (b.home_root / name / NOTEBOOK).read_bytes() == saved

    process = HubProcess(b, log=tmp_path / "b.log").start()  # no new organizer: the old one came back
    try:
        process.wait_ready(120)
        hub_b = RunningHub(b, process, b.organizer, organizer_password)
        session_b = hub_b.login(name, password)
        token_b = hub_b.new_token(name, session=session_b)
        hub_b.spawn(name, token_b)
        listing = _contents(hub_b, name, token_b)
        assert listing.status_code == 200, listing.text
        found = {c["name"] for c in listing.json()["content"] if c["type"] == "notebook"}
        assert found == notebooks and "scratch.txt" not in {c["name"] for c in listing.json()["content"]}
        got = _contents(hub_b, name, token_b, NOTEBOOK)
        assert got.json()["content"]["cells"][0]["source"] == notebook["cells"][0]["source"]
        hub_b.organizer_session()  # the organizer's password from hub A
        _, refused = hub_b.try_login(name, "not-the-password")
        assert refused.status_code != 302
    finally:
        process.stop()
