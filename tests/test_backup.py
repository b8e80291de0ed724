"""Backup while submissions continue, restore on a fresh machine (and across databases)."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import stat
import threading
from pathlib import Path

import pytest
from contest_fixtures import NOW
from sqlalchemy import func, select

from hub import scorer
from leaderboard import audit, backup, ranking, submissions, teams
from leaderboard import store as store_mod
from leaderboard.models import AuditEntry, Quota, Submission
from leaderboard.scoring import split_salt_file
from sandbox.settings import PROJECT_ROOT, Paths

CH = "outpatient_forecast"
CONTEST = PROJECT_ROOT / "config" / "contest.toml"


def _race(store, demo, demo_contest, predictions, submit, n_teams=3):
    for i in range(n_teams):
        with store.session() as s:
            teams.create(s, demo_contest, f"t{i}", actor="org", members=(f"u{i}",), now=NOW)
    for i in range(n_teams):
        sub = submit(store, f"u{i}", CH, predictions(CH, noise=0.1 * (i + 1), seed=i))
        submissions.score(store, demo_contest, demo, sub.id)
    with store.session() as s:
        submissions.grant(s, demo_contest, "t0", CH, 3, reason="outage", by="org", day=NOW.date())


def _state(store, demo_contest) -> dict:
    ch = demo_contest.challenge(CH)
    with store.session() as s:
        board = [(r["team"], r["rank"], r["score"]) for r in ranking.public_standings(s, ch, now=NOW + dt.timedelta(1))]
        quotas = sorted((q.challenge, q.day, q.used, q.granted) for q in s.scalars(select(Quota)))
        verified = audit.verify(s)
    return {"board": board, "quotas": quotas, "audit": (verified.ok, verified.entries)}


def _fresh(tmp_path, name: str, url: str | None = None):
    root = tmp_path / name
    paths = Paths(root / "data", root / "private", PROJECT_ROOT / "datasets").ensure()
    return paths, store_mod.connect(paths, url or f"sqlite:///{root / 'contest.sqlite'}")


def test_a_restored_contest_has_the_same_leaderboard_quotas_and_audit(
    store, demo, demo_contest, predictions, submit, tmp_path
):
    _race(store, demo, demo_contest, predictions, submit)
    before = _state(store, demo_contest)
    manifest = backup.backup(store, demo, CONTEST, tmp_path / "bk")
    assert manifest["rows"]["submissions"] == 3 and not manifest["missing_submission_files"]
    paths, restored = _fresh(tmp_path, "restored")  # always SQLite: PostgreSQL → SQLite crosses databases
    backup.restore(tmp_path / "bk", restored, paths)
    assert _state(restored, demo_contest) == before
    # The contest's secret split salt came back with it (and only its owner may read it) ...
    salt = split_salt_file(paths.private_root)
    assert salt.read_bytes() == split_salt_file(demo.private_root).read_bytes()
    assert salt.stat().st_mode & 0o777 == 0o600
    # ... so every score is recomputed exactly from what the backup brought back: the same rows
    # are public (a new salt would split the test set anew and change every public score).
    with restored.session() as s:
        first = s.scalars(select(Submission).order_by(Submission.id)).first()
    assert restored.files.verify(first.sha256)
    rescored = ranking.rescore(restored, demo_contest, paths, CH, by="org", reason="after restore")
    assert rescored.scored == 3
    for change in rescored.changes:
        assert change["public_rank_before"] == change["public_rank_after"]
        assert change["public_score_after"] == pytest.approx(change["public_score_before"], rel=1e-12)
        assert change["private_rank_before"] == change["private_rank_after"]
    # New submissions get new ids after the restore.
    sub = submit(restored, "u1", CH, predictions(CH))
    assert sub.id == 4


def test_a_backup_taken_during_submissions_is_consistent(store, demo, demo_contest, predictions, submit, tmp_path):
    _race(store, demo, demo_contest, predictions, submit)
    path = predictions(CH, noise=0.3)
    stop = threading.Event()

    def keep_submitting():
        for i in range(40):
            if stop.is_set():
                return
            with contextlib.suppress(submissions.SubmissionRefused):
                submit(store, f"u{i % 3}", CH, path)

    worker = threading.Thread(target=keep_submitting)
    worker.start()
    try:
        backup.backup(store, demo, CONTEST, tmp_path / "bk")
    finally:
        stop.set()
        worker.join()
    paths, restored = _fresh(tmp_path, "restored")
    backup.restore(tmp_path / "bk", restored, paths)
    with restored.session() as s:
        assert audit.verify(s).ok
        subs = s.scalars(select(Submission)).all()
        received = s.execute(select(func.count()).where(AuditEntry.action == "submission.receive")).scalar_one()
        assert received == len(subs)  # rows and their audit entries come from the same instant
        for q in s.scalars(select(Quota)):
            charged = sum(1 for x in subs if x.team_id == q.team_id and x.quota_day == q.day and x.charged)
            assert q.used == charged
    # What was waiting for a scorer when the backup was taken is scored after the restore.
    scorer.Worker(restored, demo_contest, paths, scorer.Limits()).drain()
    with restored.session() as s:
        assert not s.execute(select(Submission).where(Submission.status.in_(submissions.PENDING))).first()


def test_restore_refuses_a_damaged_backup_and_a_non_empty_store(
    store, demo, demo_contest, predictions, submit, tmp_path
):
    _race(store, demo, demo_contest, predictions, submit, n_teams=1)
    backup.backup(store, demo, CONTEST, tmp_path / "bk")
    with pytest.raises(backup.BackupError, match="not empty"):
        backup.restore(tmp_path / "bk", store, demo)
    stored = next((tmp_path / "bk" / "submissions").rglob("*"))
    while stored.is_dir():
        stored = next(stored.iterdir())
    stored.chmod(0o600)
    stored.write_bytes(b"tampered")
    paths, fresh = _fresh(tmp_path, "fresh")
    with pytest.raises(backup.BackupError, match="missing or damaged"):
        backup.restore(tmp_path / "bk", fresh, paths)
    with fresh.session() as s:
        assert s.execute(select(func.count()).select_from(Submission)).scalar_one() == 0


def _modes(root: Path) -> dict[str, int]:
    """Every folder and file under ``root`` (itself as "."), with its permission bits; links left out."""
    return {
        str(p.relative_to(root)): stat.S_IMODE(p.lstat().st_mode)
        for p in [root, *root.rglob("*")]
        if not p.is_symlink()
    }


def test_a_backup_is_the_organizers_alone_even_in_a_folder_made_before(
    store, demo, demo_contest, predictions, submit, tmp_path
):
    """Issue 13, item 9: a backup holds the hidden solutions, every team's files and the sealed
    private scores; it used to be written with folders 0755 and files 0644."""
    _race(store, demo, demo_contest, predictions, submit, n_teams=1)
    dest = tmp_path / "bk"
    dest.mkdir()
    os.chmod(dest, 0o755)  # an empty folder made beforehand, readable by every account
    old_umask = os.umask(0o022)  # the usual umask: what is created by default is world-readable
    try:
        backup.backup(store, demo, CONTEST, dest)
    finally:
        os.umask(old_umask)
    modes = _modes(dest)
    for part in ("store/scores.jsonl", "contest.toml", "manifest.json"):
        assert part in modes
    assert any(k.startswith("solutions/") for k in modes) and any(k.startswith("submissions/") for k in modes)
    wrong = {k: oct(m) for k, m in modes.items() if m != (0o700 if (dest / k).is_dir() else 0o600)}
    assert not wrong, wrong
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("bk")] == ["bk"]  # no work folder left

    # A restore gives the open data back to everyone and keeps the rest to the service account.
    paths, restored = _fresh(tmp_path, "restored")
    backup.restore(dest, restored, paths)
    published = _modes(paths.data_root)
    files = {k: m for k, m in published.items() if (paths.data_root / k).is_file()}
    assert files and set(files.values()) == {0o444}, files
    versions = {k: m for k, m in published.items() if (paths.data_root / k).is_dir() and "/v" in f"/{k}"}
    assert versions and set(versions.values()) == {0o555}
    assert published["hospital_outpatient"] == 0o755  # the next build adds its version here
    private = {**_modes(paths.private_root / "solutions"), **_modes(restored.files.root)}
    assert private and not {k: oct(m) for k, m in private.items() if m & 0o077}


def test_hub_accounts_and_homes_are_backed_up_without_following_a_contestants_links(
    store, demo, demo_contest, predictions, submit, tmp_path
):
    from hub.accounts import AccountStore
    from leaderboard.backup_hub import HubBackupError, HubParts

    hub_db = f"sqlite:///{tmp_path / 'hub.sqlite'}"
    accounts = AccountStore(hub_db)
    accounts.create("ann", "a-long-password", approved=True, by="org")
    accounts.close()
    homes = tmp_path / "homes"
    (homes / "ann" / "work" / ".ipynb_checkpoints").mkdir(parents=True)
    (homes / "ann" / "model.ipynb").write_text('{"cells": []}')
    (homes / "ann" / "work" / "deep.ipynb").write_text('{"cells": [1]}')
    (homes / "ann" / "work" / ".ipynb_checkpoints" / "deep-checkpoint.ipynb").write_text("{}")
    (homes / "ann" / "data.csv").write_text("a,b\n" * 1000)
    secret = tmp_path / "not-anns.txt"
    secret.write_text("the organizer's")
    (homes / "ann" / "evil.ipynb").symlink_to(secret)  # a link: never followed
    (homes / "ann" / "linked").symlink_to(tmp_path, target_is_directory=True)
    os.mkfifo(homes / "ann" / "pipe.ipynb")  # reading it would block the backup

    notebooks = backup.backup(store, demo, CONTEST, tmp_path / "nb", HubParts(hub_db, homes))
    assert sorted(f for f in notebooks["files"] if f.startswith("homes/")) == [
        "homes/ann/model.ipynb",
        "homes/ann/work/deep.ipynb",
    ]
    report = notebooks["hub"]
    assert report["accounts"] == 1 and report["homes"] == "notebooks"
    assert report["home_sizes"]["ann"] == {
        "files": 4,
        "bytes": 13 + 14 + 2 + 4000,
        "notebooks": 2,
        "notebook_bytes": 27,
        "skipped": 3,  # the two links and the pipe
    }
    whole = backup.backup(store, demo, CONTEST, tmp_path / "all", HubParts(hub_db, homes, homes=True))
    assert "homes/ann/data.csv" in whole["files"] and "homes/ann/evil.ipynb" not in whole["files"]

    paths, restored = _fresh(tmp_path, "restored")
    target = HubParts(f"sqlite:///{tmp_path / 'restored' / 'hub.sqlite'}", tmp_path / "restored" / "homes")
    backup.restore(tmp_path / "all", restored, paths, hub=target)
    back = AccountStore(target.db_url)
    assert back.get("ann").approved and back.get("ann").password_hash.startswith("$2")
    back.close()
    assert (target.home_root / "ann" / "data.csv").read_text() == "a,b\n" * 1000
    assert stat.S_IMODE((target.home_root / "ann").stat().st_mode) == 0o700
    assert not (target.home_root / "ann" / "evil.ipynb").exists()

    paths2, other = _fresh(tmp_path, "again")
    with pytest.raises(HubBackupError, match="already has ann"):  # the same hub database, not empty
        backup.restore(tmp_path / "all", other, paths2, hub=target)
    with other.session() as s:
        assert s.execute(select(func.count()).select_from(Submission)).scalar_one() == 0  # nothing written


def test_the_backup_command_reports_the_homes_sizes_and_takes_whole_homes_on_request(run_cli, paths, monkeypatch):
    homes = paths.private_root.parent / "homes"
    (homes / "ann").mkdir(parents=True)
    (homes / "ann" / "model.ipynb").write_text('{"cells": []}')
    (homes / "ann" / "big.bin").write_bytes(b"\0" * (3 << 20))
    monkeypatch.setenv("CONTESTHUB_HOME_ROOT", str(homes))
    monkeypatch.delenv("CONTESTHUB_HUB_DB_URL", raising=False)
    out = run_cli("backup", str(paths.private_root.parent / "bk"))
    assert out.exit_code == 0, out.output
    assert "homes of 1 contestants: 3.0 MB in all, notebooks 0.0 MB; backed up: notebooks only (--homes for all)" in (
        out.output
    )
    assert "  ann: 2 files, 3.0 MB; 1 notebooks" in out.output
    assert (paths.private_root.parent / "bk" / "homes" / "ann" / "model.ipynb").exists()
    assert not (paths.private_root.parent / "bk" / "homes" / "ann" / "big.bin").exists()
    whole = run_cli("backup", str(paths.private_root.parent / "bk2"), "--homes")
    assert whole.exit_code == 0 and "backed up: whole homes" in whole.output
    assert (paths.private_root.parent / "bk2" / "homes" / "ann" / "big.bin").stat().st_size == 3 << 20
