"""Results anyone can check: commitments, the signed bundle of a revealed challenge, verify-results."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from contest_fixtures import NOW

from leaderboard import audit, publish, ranking, results, submissions, teams
from sandbox import clock
from sandbox.settings import Paths

CH = "outpatient_forecast"


@pytest.fixture
def roots(demo: Paths, tmp_path: Path) -> Paths:
    """Roots of this test's own over the demo's built data: its own salt, key, results folder."""
    p = Paths(tmp_path / "roots" / "data", tmp_path / "roots" / "private", demo.datasets_dir).ensure()
    for entry in demo.data_root.iterdir():
        if entry.name != results.RESULTS_DIR:
            (p.data_root / entry.name).symlink_to(entry)
    (p.private_root / "solutions").symlink_to(demo.private_root / "solutions")
    return p


@pytest.fixture
def revealed(store, roots, demo_contest, predictions, submit) -> Path:
    """A revealed demo challenge: commitments at set-up, three teams, the signed bundle."""
    with store.session() as s:
        made = results.commit(s, demo_contest, roots, by="org")
    assert CH in {c["challenge"] for c in made}
    for name, user, noise, seed in (("alpha", "ann", 0.3, 1), ("beta", "bob", 0.1, 2), ("gamma", "gus", 0.6, 3)):
        with store.session() as s:
            teams.create(s, demo_contest, name, actor="org", members=(user,), now=NOW)
        for k in range(2):
            sub = submit(store, user, CH, predictions(CH, noise=noise + k / 10, seed=seed + k), now=NOW)
            submissions.score(store, demo_contest, roots, sub.id)
    ch = demo_contest.challenge(CH)
    with store.session() as s:
        ranking.reveal(s, demo_contest, CH, by="org", now=ch.closes + dt.timedelta(hours=1))
    return results.publish_bundle(store, demo_contest, roots, CH, by="org")


def _verify(*args: str, home: Path) -> tuple[int, str]:
    """``contesthub verify-results`` with nothing but empty roots: no store, no contest, no salt."""
    from hub.cli import cli

    empty = ["--data-root", str(home / "data"), "--private-root", str(home / "private"), "--lang", "en"]
    got = CliRunner().invoke(cli, [*empty, "verify-results", *args])
    return got.exit_code, got.output


def _flip_one_byte(path: Path, at: int) -> None:
    data = bytearray(path.read_bytes())
    data[at] = ord("7") if data[at] != ord("7") else ord("8")
    path.chmod(stat.S_IRUSR | stat.S_IWUSR)
    path.write_bytes(bytes(data))


def test_the_signed_bundle_verifies_and_lists_finals_commitments_and_the_audit_head(
    revealed, roots, store, demo_contest, tmp_path
):
    doc = json.loads(revealed.read_text("utf-8"))
    assert doc["format"] == results.FORMAT and doc["challenge"]["id"] == CH
    assert [r["team"] for r in doc["board"]] == ["beta", "alpha", "gamma"]  # RMSE: least noise first
    assert len(doc["final_submissions"]) == 6 and all(len(f["sha256"]) == 64 for f in doc["final_submissions"])
    committed = doc["commitments"][-1]
    assert committed["metric"] == "rmse@1" and set(committed["scoring_files"]) == set(results.SCORING_CODE)
    assert len(committed["solution_sha256"]) == 64 and committed["split_rows"] == doc["split"]["rows"]
    assert len(doc["audit_head"]["hash"]) == 64
    published = json.loads((roots.data_root / results.RESULTS_DIR / "commitments.json").read_text())["commitments"]
    assert [c["solution_sha256"] for c in published if c["challenge"] == CH] == [committed["solution_sha256"]]
    assert publish.public_spec(demo_contest, roots)["results_public_key"] == doc["public_key"]  # the home page's
    key = results.key_file(roots.private_root)
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert "BEGIN PRIVATE KEY" not in revealed.read_text("utf-8")
    assert not list((roots.data_root / results.RESULTS_DIR).glob("*.pem"))

    home = tmp_path / "fresh"
    code, out = _verify(
        str(revealed),
        "--solutions",
        str(roots.private_root / "solutions"),
        "--submissions",
        str(store.files.root),
        "--public-key",
        doc["public_key"],
        home=home,
    )
    assert code == 0, out
    assert "results verified" in out and "submissions" in out and "board" in out
    assert not (home / "private" / "contest.sqlite").exists()


def test_one_byte_changed_in_a_solution_a_submission_or_the_board_fails_naming_the_file(
    revealed, roots, store, tmp_path
):
    doc = json.loads(revealed.read_text("utf-8"))
    home = tmp_path / "fresh"
    # A solution: a copy of the committed one with one byte changed.
    solutions = tmp_path / "solutions"
    shutil.copytree(roots.private_root / "solutions", solutions, symlinks=False)
    solution = solutions / doc["commitments"][-1]["solution_file"]
    _flip_one_byte(solution, solution.stat().st_size // 2)
    code, out = _verify(str(revealed), "--solutions", str(solutions), home=home)
    assert code == 1 and f"{solution}: the solution file is not the committed one" in out

    # A final submission's file.
    subs = tmp_path / "subs"
    shutil.copytree(store.files.root, subs, ignore=shutil.ignore_patterns("incoming"))
    final = doc["final_submissions"][0]
    file = subs / final["sha256"][:2] / final["sha256"]
    _flip_one_byte(file, file.stat().st_size - 3)
    code, out = _verify(
        str(revealed), "--solutions", str(roots.private_root / "solutions"), "--submissions", str(subs), home=home
    )
    assert code == 1
    assert f"{file}: submission {final['submission_id']} ({final['team']}): the file is not the one submitted" in out

    # The board: one digit of the first score.
    bundle = tmp_path / "bundle.json"
    raw = revealed.read_bytes()
    at = raw.index(b'"score": ', raw.index(b'"board"')) + len(b'"score": ')
    bundle.write_bytes(raw)
    _flip_one_byte(bundle, at)
    code, out = _verify(str(bundle), home=home)
    assert code == 1 and f"{bundle}: the signature does not match" in out
    assert "the board gives beta" in out  # and the board no longer follows from the finals' scores


def test_verify_results_runs_from_a_fresh_checkout_with_no_store(revealed, roots, store, tmp_path):
    """The console script in a new process with an empty CONTESTHUB_HOME: nothing of the contest but the files."""
    home = tmp_path / "nobody"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONTESTHUB_")} | {"CONTESTHUB_HOME": str(home)}
    script = Path(sys.executable).with_name("contesthub")
    got = subprocess.run(
        [
            str(script),
            "--lang",
            "zh",
            "verify-results",
            str(revealed),
            "--solutions",
            str(roots.private_root / "solutions"),
            "--submissions",
            str(store.files.root),
            "--json",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert got.returncode == 0, got.stderr
    verdict = json.loads(got.stdout)
    assert verdict["ok"] and verdict["checked"] == [
        "signature",
        "scoring code",
        "split",
        "solution",
        "submissions",
        "board",
    ]
    assert not (home / "private").exists()


def test_a_rebuilt_solution_adds_a_commitment_and_an_unchanged_one_does_not(store, roots, demo_contest):
    with store.session() as s:
        first = results.commit(s, demo_contest, roots, by="org")
    with store.session() as s:
        again = results.commit(s, demo_contest, roots, by="org")
    assert first and again == []
    with store.session() as s:
        assert len(results.commitments(s, CH)) == 1
    public = json.loads((roots.data_root / "contest.json").read_text())  # published with the rules
    assert "results_public_key" in public


def test_a_solution_changed_after_the_challenge_opened_is_named(revealed, store, demo_contest, roots, tmp_path):
    """A rebuilt solution adds a commitment (as ``commit`` records it); one made after the opening fails the check."""
    ch = demo_contest.challenge(CH)
    with store.session() as s:
        first = results.commitments(s, CH)[-1]
        changed = {k: v for k, v in first.items() if k not in ("audit_seq", "at", "audit_hash")}
        changed["solution_sha256"] = "f" * 64
        with clock.pinned(ch.opens + dt.timedelta(days=3)):
            audit.record(s, "org", results.COMMIT_ACTION, CH, changed)
    bundle = results.publish_bundle(store, demo_contest, roots, CH, by="org")
    code, out = _verify(str(bundle), home=tmp_path / "fresh")
    assert code == 1
    assert f"{bundle}: the solution, split or scoring code changed after the challenge opened" in out
