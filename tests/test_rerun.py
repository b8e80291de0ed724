"""Issue 19: re-running the finalists' notebooks (``contesthub verify-run``).

The outpatient forecast's starter notebook (deterministic: DuckDB averages) runs as a contestant
would run it, and two teams submit what it saved, with the notebook kept as provenance: alpha the
file as it came out, beta the file with one prediction edited by hand. ``verify-run`` runs each
notebook again in a clean sandbox with no network and compares: alpha's is reproduced, beta's
differs, and both verdicts are in the store, the audit log and on the organizer page.
"""

from __future__ import annotations

import hashlib
import json

import nbformat
import pandas as pd
import pytest
from click.testing import CliRunner
from contest_fixtures import NOW
from nbclient import NotebookClient
from sqlalchemy import select

from hub.cli import cli
from leaderboard import provenance, rerun, submissions, teams
from leaderboard.models import AuditEntry, Rerun
from sandbox import provenance as kernel_provenance
from sandbox.settings import PROJECT_ROOT, Paths

CH = "outpatient_forecast"
STARTER = PROJECT_ROOT / "sandbox" / "notebooks" / f"{CH}.ipynb"


@pytest.fixture
def roots(demo: Paths, tmp_path) -> Paths:
    """The demo's built data (only read) with a private root of this test's own (its salt, its re-runs)."""
    p = Paths(demo.data_root, tmp_path / "private", demo.datasets_dir).ensure()
    (p.private_root / "solutions").symlink_to(demo.private_root / "solutions")
    return p


@pytest.fixture
def starter_output(roots, tmp_path, monkeypatch):
    """The file the starter notebook saves, run as a contestant runs it (without its submit cell)."""
    home = tmp_path / "home"
    home.mkdir()
    nb = nbformat.read(STARTER, as_version=4)
    nb.cells = [c for c in nb.cells if "submit" not in c.metadata.get("tags", [])]
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("CONTESTHUB_DATA_ROOT", str(roots.data_root))
    monkeypatch.setenv("CONTESTHUB_THREADS", "2")
    for name in ("CONTESTHUB_MEMORY_LIMIT", "CONTESTHUB_SPILL_DIR", "MEM_LIMIT", "CPU_LIMIT"):
        monkeypatch.delenv(name, raising=False)
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(home)}}).execute()
    return home / f"submission_{CH}.csv"


def _submit_with_notebook(store, demo_contest, roots, submit, user: str, path):
    sub = submit(store, user, CH, path)
    submissions.score(store, demo_contest, roots, sub.id)
    raw = STARTER.read_bytes()
    listing = kernel_provenance.packages()
    provenance.attach(
        store,
        user,
        sub.id,
        {
            "packages": listing,
            "packages_sha256": kernel_provenance.packages_sha256(listing),
            "notebook": {
                "name": STARTER.name,
                "sha256": hashlib.sha256(raw).hexdigest(),
                "size": len(raw),
                "content": raw.decode("utf-8"),
            },
            "reads": [],
        },
    )
    return sub.id


def test_a_starter_notebook_reproduces_and_a_hand_edited_file_differs(
    store, demo_contest, roots, submit, starter_output, tmp_path, monkeypatch
):
    for name, user in (("alpha", "ann"), ("beta", "bob"), ("gamma", "gus")):
        with store.session() as s:
            teams.create(s, demo_contest, name, actor="org", members=(user,), now=NOW)
    alpha = _submit_with_notebook(store, demo_contest, roots, submit, "ann", starter_output)
    edited = pd.read_csv(starter_output)
    edited.loc[7, "outpatient_visits"] += 1.0  # one row changed by hand
    hand = tmp_path / "edited.csv"
    edited.to_csv(hand, index=False)
    beta = _submit_with_notebook(store, demo_contest, roots, submit, "bob", hand)
    gamma = submit(store, "gus", CH, starter_output).id  # uploaded from a terminal: no notebook recorded
    submissions.score(store, demo_contest, roots, gamma)

    runs = tmp_path / "runs"
    runs.mkdir()
    verdicts = {v["team"]: v for v in rerun.verify_run(store, demo_contest, roots, CH, by="org", work_root=runs)}
    assert verdicts["alpha"]["verdict"] == "reproduced", verdicts["alpha"]
    assert verdicts["alpha"]["detail"]["rows_differing"] == 0 and verdicts["alpha"]["detail"]["same_packages"]
    assert verdicts["beta"]["verdict"] == "differs", verdicts["beta"]
    assert verdicts["beta"]["detail"]["rows_differing"] == 1
    assert verdicts["beta"]["detail"]["largest_difference"] == pytest.approx(1.0)
    assert verdicts["gamma"]["verdict"] == "failed"
    assert verdicts["gamma"]["detail"]["why"] == "no notebook was recorded with this submission"

    with store.session() as s:
        rows = {r.submission_id: r for r in s.scalars(select(Rerun))}
        assert rows[alpha].verdict == "reproduced" and rows[beta].verdict == "differs"
        assert "re-run: predictions kept" in rows[alpha].log and "notebook finished" in rows[alpha].log
        entries = s.scalars(select(AuditEntry).where(AuditEntry.action == "submission.rerun")).all()
        assert {json.loads(e.payload)["verdict"] for e in entries} == {"reproduced", "differs", "failed"}
        assert {e.subject for e in entries} == {f"{CH}/{alpha}", f"{CH}/{beta}", f"{CH}/{gamma}"}

    only = rerun.verify_run(store, demo_contest, roots, CH, team="beta", by="org", work_root=runs)
    assert [(v["team"], v["verdict"]) for v in only] == [("beta", "differs")]
    with store.session() as s:
        latest = {v["team"]: v["verdict"] for v in rerun.latest(s, CH)}
    assert latest == {"alpha": "reproduced", "beta": "differs", "gamma": "failed"}
    assert not list(runs.iterdir())  # each sandbox is removed after its run

    monkeypatch.setenv("CONTESTHUB_DB_URL", store.url)  # the command, on the same store
    monkeypatch.setenv("CONTESTHUB_DATA_ROOT", str(roots.data_root))
    monkeypatch.setenv("CONTESTHUB_PRIVATE_ROOT", str(roots.private_root))
    got = CliRunner().invoke(cli, ["--lang", "en", "verify-run", CH, "--team", "gamma", "--by", "org"])
    assert got.exit_code == 0, got.output
    assert "failed / 运行失败" in got.output and "no notebook was recorded" in got.output
    wrong = CliRunner().invoke(cli, ["--lang", "en", "verify-run", CH, "--team", "nobody"])
    assert wrong.exit_code == 1 and "nobody" in wrong.output and "Traceback" not in wrong.output


def test_the_sandbox_has_no_network_no_private_folders_and_a_time_limit(roots, tmp_path):
    from leaderboard.scoring import split_salt

    split_salt(roots.private_root)  # a secret the notebook must not read
    homes = tmp_path / "homes"
    (homes / "eve").mkdir(parents=True)
    (homes / "eve" / "secret.ipynb").write_text("{}")
    probe = nbformat.v4.new_notebook()
    probe.cells = [
        nbformat.v4.new_code_cell(
            "import socket, sandbox\n"
            "names = socket.if_nameindex()\n"
            "try:\n"
            "    socket.create_connection(('1.1.1.1', 53), timeout=3)\n"
            "    reached = True\n"
            "except OSError:\n"
            "    reached = False\n"
            "print('interfaces', sorted(n for _, n in names), 'reached', reached)\n"
            "import os; print('home', sorted(n for n in os.listdir(os.path.expanduser('~')) if n[0] != '.'))\n"
            f"print('private', os.listdir({str(roots.private_root)!r}))\n"
            f"print('homes', os.listdir({str(homes)!r}))\n"
            "try:\n"
            f"    open({str(roots.data_root / 'planted.txt')!r}, 'w')\n"
            "    print('data root written')\n"
            "except OSError as exc:\n"
            "    print('data root read-only', exc.errno)\n"
            "sandbox.submit('outpatient_forecast', sandbox.sql("
            "'SELECT date, hospital_id, 1.0 AS outpatient_visits FROM hospital_outpatient.daily_visits_test').df())"
        )
    ]
    limits = rerun.RunLimits(seconds=120, memory=4 << 30)
    hide = (roots.private_root, homes)
    run = rerun.run_notebook(
        nbformat.writes(probe).encode(), "probe.ipynb", roots.data_root, tmp_path / "w1", limits, hide
    )
    assert run.error is None, run.log
    assert "private []" in run.log and "homes []" in run.log  # the split salt, the solutions, others' homes: unseen
    assert "data root read-only 30" in run.log  # EROFS
    assert (roots.private_root / "secrets" / "split_salt").exists() and (homes / "eve" / "secret.ipynb").exists()
    assert "interfaces ['lo'] reached False" in run.log
    assert "home ['probe.ipynb']" in run.log  # the notebook and nothing else (the kernel's own dot-files aside)
    assert run.predictions is not None and run.predictions.read_text().startswith("date,hospital_id")

    slow = nbformat.v4.new_notebook()
    slow.cells = [nbformat.v4.new_code_cell("import time; time.sleep(600)")]
    quick = rerun.RunLimits(seconds=10, memory=4 << 30)
    run = rerun.run_notebook(nbformat.writes(slow).encode(), "slow.ipynb", roots.data_root, tmp_path / "w2", quick)
    assert run.error == "over its time limit of 10 s" and run.predictions is None
