"""Rules that had several copies which disagreed, now with one home each (issue 15).

Each test checks the corrected rule where a user meets it: the roster import and the login
agree on a user name; the submission service and the leaderboard agree on who organizes; the
hub, its services and the gateway agree on the team groups; the stored statuses are the ones
the CLI, the API description and the pages know; a challenge looks the same in the service,
the published contest.json and ``contest validate``; sizes and digests are read one way.
"""

from __future__ import annotations

import hashlib
import json
from types import SimpleNamespace

import pytest
from jupyterhub.auth import Authenticator

from hub import oauth
from hub.names import MAX_LENGTH, USERNAME_PATTERN
from hub.services import gateway_spec
from hub.settings import HubSettings, SettingsError, size_bytes
from leaderboard import roles
from leaderboard.i18n import MESSAGES
from sandbox import statuses
from sandbox.digests import sha256_file
from sandbox.settings import PROJECT_ROOT, Paths
from sandbox.sizes import format_bytes, parse_size

# --- user names ------------------------------------------------------------------------------


def test_a_roster_refuses_a_name_the_login_would_refuse(run_cli, paths, tmp_path):
    """The roster used to accept 64 characters while the login allowed 31: an imported account
    was made, and then could never log in."""
    longest, too_long = "a" * MAX_LENGTH, "b" * (MAX_LENGTH + 1)
    login = Authenticator(username_pattern=USERNAME_PATTERN)
    assert login.validate_username(longest) and not login.validate_username(too_long)

    root = Paths(paths.data_root, paths.private_root, PROJECT_ROOT / "datasets")
    roster = tmp_path / "roster.csv"
    roster.write_text(f"team,member,email\nalpha,{too_long},b@example.org\n", "utf-8")
    refused = run_cli("teams", "import", str(roster), root=root)
    assert refused.exit_code == 1
    assert "row 2, column member" in refused.output and f"1 to {MAX_LENGTH}" in refused.output

    roster.write_text(f"team,member,email\nalpha,{longest},a@example.org\n", "utf-8")
    accepted = run_cli("teams", "import", str(roster), "--by", "org", root=root)
    assert accepted.exit_code == 0, accepted.output
    assert longest in run_cli("teams", "list", root=root).output


# --- organizers ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("user", "organizer"),
    [
        ({"name": "root", "admin": True, "groups": []}, True),  # an admin outside the group
        ({"name": "org", "admin": False, "groups": ["organizers"]}, True),  # the group's role sets no flag
        ({"name": "ann", "admin": False, "groups": ["team-alpha"]}, False),
        (None, False),
    ],
)
def test_the_service_and_the_pages_agree_on_who_organizes(user, organizer):
    """The submission service asked for the group alone and refused an admin whom the
    leaderboard's organizer page let in."""
    from hub.submit_service import Base
    from leaderboard.views import hub_auth

    assert hub_auth.is_organizer(user) is organizer
    if user is not None:
        assert Base.organizer.fget(SimpleNamespace(identity=user)) is organizer


def test_the_organizer_group_follows_the_environment():
    env = {roles.ORGANIZER_GROUP_ENV: "jury"}
    assert roles.is_organizer({"groups": ["jury"]}, env)
    assert not roles.is_organizer({"groups": ["organizers"]}, env)


# --- team groups -----------------------------------------------------------------------------


def test_every_reader_of_the_team_prefix_reads_the_same_one(monkeypatch, tmp_path):
    monkeypatch.setenv(roles.TEAM_PREFIX_ENV, "squad-")
    settings = HubSettings.load(
        {"gateway_teams": {"alpha": {"max_workers": 1}}}, environ={"CONTESTHUB_HOME": str(tmp_path)}
    )
    spec = gateway_spec(settings)
    assert spec["team_group_prefix"] == "squad-" and "squad-alpha" in spec["limits"]
    assert oauth.team_prefix() == "squad-"
    assert roles.teams_of_groups(["team-b", "squad-a", "squad-"]) == ["a"]
    monkeypatch.delenv(roles.TEAM_PREFIX_ENV)
    assert roles.team_group("alpha") == "team-alpha"


# --- submission statuses -----------------------------------------------------------------------


def test_the_statuses_are_the_ones_the_api_the_cli_and_the_pages_know():
    from click.testing import CliRunner

    from hub.cli import cli

    api = json.loads((PROJECT_ROOT / "hub" / "openapi.json").read_text("utf-8"))
    assert api["components"]["schemas"]["Submission"]["properties"]["status"]["enum"] == list(statuses.ALL)
    helped = CliRunner().invoke(cli, ["submissions", "list", "--help"]).output
    assert all(s in helped for s in statuses.ALL), helped
    assert all(f"status_{s}" in MESSAGES for s in statuses.ALL)  # every status has its zh/en words
    assert set(statuses.PENDING) | set(statuses.FINISHED) == set(statuses.ALL)
    assert set(statuses.COUNTED) == set(statuses.ALL) - set(statuses.REFUSED)


# --- the public view of a challenge ----------------------------------------------------------


def test_a_challenge_looks_the_same_in_the_service_the_published_rules_and_the_cli(demo):
    from click.testing import CliRunner

    from hub.cli import cli
    from leaderboard import contest, publish

    c = contest.load()
    ch = c.challenges[0]
    view = publish.public_challenge(ch)
    assert view["test_table"] == f"{ch.dataset}.{ch.table}_test" and "hidden" not in json.dumps(view)
    published = next(x for x in publish.public_spec(c, demo)["challenges"] if x["id"] == ch.id)
    assert {k: published[k] for k in view} == view
    out = CliRunner().invoke(
        cli,
        ["--data-root", str(demo.data_root), "--private-root", str(demo.private_root), "contest", "validate", "--json"],
    )
    assert out.exit_code == 0, out.output
    listed = next(x for x in json.loads(out.output)["challenges"] if x["id"] == ch.id)
    assert {k: listed[k] for k in view} == view and listed["data"] == view["test_table"]


# --- sizes and digests -----------------------------------------------------------------------


def test_sizes_are_read_and_written_one_way():
    assert parse_size("2GiB") == size_bytes("x", "2G") == 2 * 2**30
    assert parse_size("512M") == parse_size("536870912") == 512 * 2**20
    with pytest.raises(ValueError):
        parse_size("lots")
    with pytest.raises(SettingsError, match="mem_limit"):
        size_bytes("mem_limit", "lots")
    assert [format_bytes(n) for n in (512, 1536, 5 * 2**20, 3 * 2**30)] == ["512 B", "1.5 KiB", "5.0 MiB", "3.0 GiB"]


def test_a_file_digest_is_its_sha256(tmp_path):
    body = bytes(range(256)) * 10_000  # more than one read
    path = tmp_path / "f.bin"
    path.write_bytes(body)
    assert sha256_file(path) == hashlib.sha256(body).hexdigest()
