"""Issue 7, suite 4: who may call what, and what nobody may see, on a real hub.

Every endpoint of the submission service is read from its OpenAPI description
(``hub/openapi.json``, which the service serves; ``test_the_description_lists_every_route``
keeps the two in step), so a new endpoint is covered here without touching this file. Each is
called with no token, with malformed tokens, with an expired token, with the hub-managed
services' own tokens, with a contestant's token on organizer endpoints and with another team's
token, and must answer 401 / 403 / 404 as a JSON error with Chinese and English messages, never
with the other team's rows.

Before the reveal no private score and no private rank may appear in any response of any
endpoint (organizers' own ``/admin`` private views aside), nor on the public Streamlit pages
rendered by headless Chromium: the private values are read from the store itself
(``leaderboard.ranking.private_standings(..., organizer=True)``) and searched for in every
body and every page's text and HTML.

Stored XSS: a team named ``<img src=x onerror=alert(1)>`` and files named
``<script>alert(1)</script>.csv`` and ``<img src=x onerror=alert(2)>.csv`` must be shown as
text, with no dialog opened, on the leaderboard, the team page and the organizer page.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import pytest
import requests
from hostile_files import EMERGENCY, FORECAST, ContestIds

from hub import runtime
from leaderboard import contest as contest_config
from leaderboard import i18n, ranking
from leaderboard import store as store_mod
from sandbox.settings import PROJECT_ROOT, Paths

OPENAPI = PROJECT_ROOT / "hub" / "openapi.json"
DESCRIPTION = json.loads(OPENAPI.read_text("utf-8"))
OPERATIONS = [(method.upper(), path, op) for path, item in DESCRIPTION["paths"].items() for method, op in item.items()]


def operations(keep=lambda method, path, op: True) -> list:
    """The described operations as pytest parameters (method, path, operation), with readable ids."""
    return [pytest.param(m, p, op, id=f"{m} {p}") for m, p, op in OPERATIONS if keep(m, p, op)]


CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = PROJECT_ROOT / "var" / "test-artifacts"
XSS_TEAM = "<img src=x onerror=alert(1)>"
XSS_FILE = "<script>alert(1)</script>.csv"
XSS_FILE_2 = "<img src=x onerror=alert(2)>.csv"


def public(op: dict) -> bool:
    return op.get("security") == []


def organizer_only(path: str) -> bool:
    return path.startswith("/api/admin/")


@dataclass
class Person:
    user: str
    password: str
    token: str
    team: str
    submissions: list[dict] = field(default_factory=list)


@dataclass
class World:
    hub: object
    org: str
    a: Person  # team alpha
    b: Person  # team beta: "another team" for alpha's data
    x: Person  # the team whose name is markup
    expired: str
    service_tokens: dict[str, str]

    @property
    def api(self) -> str:
        return f"{self.hub.url}/services/submit/api"


def call(w: World, method: str, path: str, auth: str | bytes | None, **kw) -> requests.Response:
    headers = {"Authorization": auth} if auth is not None else {}
    return requests.request(method, f"{w.api}/{path}", headers=headers, timeout=120, **kw)


def poll(w: World, token: str, sid: int) -> dict:
    deadline = time.monotonic() + 300
    while True:
        sub = call(w, "GET", f"submissions/{sid}", f"token {token}").json()
        if sub["status"] not in ("received", "validating") or time.monotonic() > deadline:
            return sub
        time.sleep(0.2)


def submit(w: World, p: Person, challenge: str, body: bytes, file_name: str, status: str = "scored") -> dict:
    r = call(
        w,
        "POST",
        f"challenges/{challenge}/submissions",
        f"token {p.token}",
        data=body,
        params={"file_name": file_name},
    )
    assert r.status_code == 202, r.text
    sub = poll(w, p.token, r.json()["id"])
    assert sub["status"] == status, sub
    p.submissions.append(sub)
    return sub


@pytest.fixture(scope="module")
def world(hub) -> World:
    if "submit" not in hub.services:
        pytest.skip("the submission service is not running in this hub (see the hub's output)")
    org = hub.new_token(hub.organizer, session=hub.organizer_session())
    ids = ContestIds.load(hub.settings.data_root)
    people = {}
    for key, team in (("a", f"alpha-{uuid.uuid4().hex[:6]}"), ("b", f"beta-{uuid.uuid4().hex[:6]}"), ("x", XSS_TEAM)):
        name, password, session = hub.account()
        r = requests.post(
            f"{hub.url}/services/submit/api/admin/teams",
            headers={"Authorization": f"token {org}"},
            json={"name": team, "members": [name]},
            timeout=60,
        )
        assert r.status_code == 201, r.text
        people[key] = Person(name, password, hub.new_token(name, session=session), team)
    # An expired token: made now, used after the rest of the set-up (at least 2 s later).
    r = hub.api(
        "POST",
        f"/users/{people['a'].user}/tokens",
        session=hub.login(people["a"].user, people["a"].password),
        json={"note": "expires at once", "expires_in": 1},
    )
    assert r.status_code == 201, r.text
    expired, made = r.json()["token"], time.monotonic()
    services = {s: runtime.service_token(hub.settings.runtime_dir, s) for s in hub.services}
    w = World(hub, org, people["a"], people["b"], people["x"], expired, services)

    forecast = [
        lambda i: str(100 + i % 37),
        lambda i: str(90 + (i * 13) % 41),
        lambda i: str(120 - i % 23),
    ]
    for p, value in zip((w.a, w.b, w.x), forecast, strict=True):
        rows = "".join(f"{d},{h},{value(i)}\n" for i, (d, h) in enumerate(ids.forecast))
        name = XSS_FILE if p is w.x else f"{p.team}-secret-{uuid.uuid4().hex[:8]}.csv"
        submit(w, p, FORECAST, ("date,hospital_id,outpatient_visits\n" + rows).encode(), name)
    for p, k in ((w.a, 7919), (w.b, 104729)):  # different files: the store keeps equal bytes once, for both
        rows = ids.rows(EMERGENCY, lambda i, k=k: f"{(i * k % 1000) / 1000:.3f}")
        body = ("visit_id,p_emergency\n" + "".join(f"{v},{q}\n" for v, q in rows)).encode()
        submit(w, p, EMERGENCY, body, f"{p.team}-probabilities.csv")
    submit(w, w.x, FORECAST, b"x,y\n1,2\n", XSS_FILE_2, status="invalid")
    time.sleep(max(0.0, 2.5 - (time.monotonic() - made)))
    return w


# --- the description and the routes ------------------------------------------------------------


def concrete(path: str, values: dict[str, str]) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: quote(str(values[m.group(1)]), safe=""), path)


def test_the_description_lists_every_route():
    """Each route of the service is described, with the methods it implements, and nothing else is."""
    from hub.submit_service import allowed_methods, make_app

    app = make_app(None, "/services/submit/")
    routes = [(rule.matcher.regex, rule.target) for rule in app.wildcard_router.rules]
    sample = {"challenge": "outpatient_forecast", "id": "7", "team": "t", "user": "u"}
    described: dict[str, set[str]] = {}
    for method, path, _ in OPERATIONS:
        described.setdefault(path, set()).add(method)
    matched = set()
    for path, methods in described.items():
        url = "/services/submit" + concrete(path, sample)
        hits = [(regex, handler) for regex, handler in routes if regex.fullmatch(url)]
        assert len(hits) == 1, (path, hits)
        regex, handler = hits[0]
        matched.add(regex.pattern)
        implemented = set(allowed_methods(handler))
        if "/members/{user}" in path:  # one handler serves .../members (POST) and .../members/{user} (DELETE)
            implemented = {"DELETE"}
        elif path.endswith("/members"):
            implemented = {"POST"}
        assert methods == implemented, (path, methods, implemented)
    assert matched == {regex.pattern for regex, _ in routes}, {regex.pattern for regex, _ in routes} - matched


def test_the_service_serves_this_description(world):
    served = call(world, "GET", "openapi.json", None)
    assert served.status_code == 200
    doc = served.json()
    assert {p: sorted(i) for p, i in doc["paths"].items()} == {p: sorted(i) for p, i in DESCRIPTION["paths"].items()}
    assert doc["servers"] == [{"url": "/services/submit"}]


# --- who may call what ------------------------------------------------------------------------


def request_args(w: World, method: str, path: str, op: dict, who: Person | None = None) -> dict:
    """A request to ``op`` that names alpha's data (its team, user, submission)."""
    a = w.a
    values = {"challenge": FORECAST, "id": a.submissions[0]["id"], "team": a.team, "user": a.user}
    kw: dict = {"method": method, "path": concrete(path, values).removeprefix("/api/")}
    content = op.get("requestBody", {}).get("content", {})
    if "application/octet-stream" in content:
        kw["data"] = b"date,hospital_id,visits\n2024-10-01,H0001,1\n"
    elif "application/json" in content:
        own = who is not None and who is a
        kw["json"] = {"submissions": [] if own else [a.submissions[0]["id"]]} if path.endswith("/selection") else {}
    return kw


def send(w: World, auth: str | bytes | None, method: str, path: str, op: dict, who: Person | None = None):
    kw = request_args(w, method, path, op, who)
    return call(w, kw.pop("method"), kw.pop("path"), auth, **kw)


def assert_error(r: requests.Response, status: int, codes: set[str]) -> None:
    assert r.status_code == status, (r.status_code, r.text[:500])
    assert r.headers["Content-Type"].startswith("application/json")
    doc = r.json()
    assert doc["code"] in codes and doc["status"] == status, doc
    assert doc["message_en"] and re.search(r"[\u4e00-\u9fff]", doc["message_zh"]), doc


@pytest.mark.parametrize(("method", "path", "op"), operations())
def test_without_a_token(world, method, path, op):
    r = send(world, None, method, path, op)
    if public(op):
        assert r.status_code == 200, r.text
    else:
        assert_error(r, 401, {"no-token"})


MALFORMED = {
    "garbage": "token not-a-real-token",
    "empty": "token ",
    "scheme-only": "token",
    "bearer-garbage": "Bearer abc.def.ghi",
    "basic-auth": "Basic b3JnYW5pemVyOnB3",
    "sql-ish": "token ' OR '1'='1",
    "very-long": "token " + "a" * 6000,
    "non-ascii": "token 令牌".encode(),
    "one-char-off": None,  # alpha's token with its last character changed
}


@pytest.mark.parametrize(("method", "path", "op"), operations(lambda m, p, op: not public(op)))
def test_with_malformed_tokens(world, method, path, op):
    for name, auth in MALFORMED.items():
        if auth is None:
            t = world.a.token
            auth = f"token {t[:-1]}{'0' if t[-1] != '0' else '1'}"
        r = send(world, auth, method, path, op)
        assert r.status_code == 401, (name, r.status_code, r.text[:300])
        assert_error(r, 401, {"no-token", "bad-token"})


@pytest.mark.parametrize(("method", "path", "op"), operations(lambda m, p, op: not public(op)))
def test_with_an_expired_token(world, method, path, op):
    assert_error(send(world, f"token {world.expired}", method, path, op), 401, {"bad-token"})


@pytest.mark.parametrize(("method", "path", "op"), operations(lambda m, p, op: not public(op)))
def test_with_a_services_own_token(world, method, path, op):
    """The hub-managed services' API tokens (kept in the hub's runtime folder) are not people."""
    assert "submit" in world.service_tokens
    for service, token in world.service_tokens.items():
        r = send(world, f"token {token}", method, path, op)
        assert r.status_code == 403, (service, r.status_code, r.text[:300])
        assert_error(r, 403, {"not-a-user"})


@pytest.mark.parametrize(("method", "path", "op"), operations(lambda m, p, op: not public(op)))
def test_with_a_users_token_that_lacks_access_to_the_service(world, method, path, op):
    """A contestant's own token limited to reading their name (a token for some other tool) is
    refused by jupyterhub's HubAuthenticated check: it lacks access:services!service=submit."""
    if not hasattr(world, "narrow"):
        r = world.hub.api(
            "POST",
            f"/users/{world.a.user}/tokens",
            token=world.a.token,
            json={"note": "narrow", "expires_in": 3600, "scopes": ["read:users:name!user"]},
        )
        assert r.status_code == 201, r.text
        world.narrow = r.json()["token"]
    assert_error(send(world, f"token {world.narrow}", method, path, op, who=world.a), 403, {"no-access"})


@pytest.mark.parametrize(("method", "path", "op"), operations(lambda m, p, op: organizer_only(p)))
def test_a_contestant_on_organizer_endpoints(world, method, path, op):
    for p in (world.a, world.b, world.x):
        assert_error(send(world, f"token {p.token}", method, path, op, who=p), 403, {"organizers-only"})


@pytest.mark.parametrize(
    ("method", "path", "op"), operations(lambda m, p, op: not public(op) and not organizer_only(p))
)
def test_another_teams_token_never_reaches_alphas_data(world, method, path, op):
    a, b = world.a, world.b
    r = send(world, f"token {b.token}", method, path, op, who=b)
    assert r.status_code < 500, r.text
    secrets = [a.user, *(s["sha256"] for s in a.submissions), *(s["file_name"] for s in a.submissions)]
    assert not [s for s in secrets if s in r.text], r.text[:1000]
    if path == "/api/submissions/{id}" or path.endswith("/selection"):
        assert_error(r, 404, {"not-found"})  # alpha's submission looks exactly like a missing one
    if path == "/api/submissions":
        assert r.status_code == 200 and r.json() and {row["team"] for row in r.json()} == {b.team}
    if path == "/api/me":
        assert r.json()["team"]["name"] == b.team and r.json()["team"]["members"] == [b.user]


# --- nothing private before the reveal ----------------------------------------------------------


@pytest.fixture(scope="module")
def sealed(world) -> dict:
    """The private scores and ranks, read from the store as an organizer would, and the text forms
    they could take in a response or on a page (minus any that a public score also takes)."""
    hub = world.hub
    paths = Paths(hub.settings.data_root, hub.settings.private_root, PROJECT_ROOT / "datasets")
    store = store_mod.connect(paths, migrate=False, readonly=True)
    contest = contest_config.load()
    private, public_scores = [], []
    try:
        with store.session() as s:
            for ch in contest.challenges:
                assert ranking.revealed(s, ch.id) is None
                private += [r["score"] for r in ranking.private_standings(s, ch, organizer=True)]
                public_scores += [r["score"] for r in ranking.public_standings(s, ch)]
    finally:
        store.dispose()
    assert len(private) >= 5, private  # three teams on the forecast, two on the emergency question

    def forms(v: float) -> set[str]:
        out = {repr(v), str(v)}
        for d in range(3, 9):
            out |= {f"{v:.{d}f}", f"{v:,.{d}f}", str(round(v, d))}
        return out

    shown_public = set().union(*(forms(v) for v in public_scores))
    needles = {f for v in private for f in forms(v) if len(f) >= 6 and not any(f in p for p in shown_public)}
    assert needles
    return {"needles": needles, "values": private}


# Times carry fractions of a second ("…:20.498712+00:00") that could look like a score.
TIMES = re.compile(r"\d\d:\d\d:\d\d\.\d+")


def leaks(text: str, sealed: dict) -> list[str]:
    """The private scores' text forms found in ``text`` (times left out)."""
    text = TIMES.sub(" ", text)
    return [n for n in sealed["needles"] if n in text]


PRIVATE_KEYS = re.compile(r"private|sealed", re.I)


def private_keys(doc, where: str = "") -> list[str]:
    """Keys naming something private whose value is not empty (``"private": null`` is allowed)."""
    found = []
    if isinstance(doc, dict):
        for k, v in doc.items():
            if PRIVATE_KEYS.search(k) and v not in (None, [], {}):
                found.append(f"{where}.{k}")
            found += private_keys(v, f"{where}.{k}")
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            found += private_keys(v, f"{where}[{i}]")
    return found


ORGANIZER_SEES_PRIVATE = {"privateStandings", "rescore"}  # the organizer's own views of the final ranking


@pytest.mark.parametrize(("method", "path", "op"), operations())
def test_no_private_score_or_rank_in_any_response(world, sealed, method, path, op):
    callers = {"nobody": None, "alpha": world.a, "beta": world.b, "xss-team": world.x, "organizer": "org"}
    for who, p in callers.items():
        if who == "organizer" and op.get("operationId") in ORGANIZER_SEES_PRIVATE:
            continue
        auth = None if p is None else f"token {world.org}" if p == "org" else f"token {p.token}"
        if p == "org" and organizer_only(path):  # names nobody, so nothing changes (a 400 or 404)
            kw = request_args(world, method, path, op)
            kw["path"] = (
                kw["path"]
                .replace(quote(world.a.team, safe=""), "no-such-team")
                .replace(quote(world.a.user, safe=""), "nobody")
            )
            r = call(world, kw.pop("method"), kw.pop("path"), auth, **kw)
        else:
            r = send(world, auth, method, path, op, who=p if isinstance(p, Person) else None)
        assert r.status_code < 500, (who, r.text[:500])
        leaked = leaks(r.text, sealed)
        assert not leaked, (who, leaked, r.text[:1000])
        if op.get("operationId") != "openapi":  # the description names the private views; it holds no data
            assert not private_keys(r.json()), (who, private_keys(r.json()))


# --- the Streamlit pages, in Chromium -----------------------------------------------------------


@dataclass
class Rendered:
    text: str
    html: str
    dialogs: list[str]
    markup_images: int  # <img src=x> elements: an injected one would be here


def browser_or_skip(world):
    if "leaderboard" not in world.hub.services:
        pytest.skip("the leaderboard service is not running in this hub")
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is not installed (python3 dev.py test installs it with apt-get as root)")


def open_page(page, url: str, wait_for: str | list[str], shot: str) -> Rendered:
    """Open ``url`` and wait until the page's text holds ``wait_for`` (or one of them)."""
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(url)
    texts = [wait_for] if isinstance(wait_for, str) else wait_for
    try:
        page.wait_for_function(f"{json.dumps(texts)}.some(t => document.body.textContent.includes(t))", timeout=120_000)
        page.wait_for_timeout(1500)  # let the rest of the script run render
    finally:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"access-{shot}.png"), full_page=True)
    return Rendered(page.text_content("body"), page.content(), dialogs, page.locator("img[src='x']").count())


@pytest.fixture(scope="module")
def pages(world) -> dict[str, Rendered]:
    browser_or_skip(world)
    from playwright.sync_api import sync_playwright

    base = f"{world.hub.url}/services/leaderboard"
    wanted = {
        "home": (f"{base}/", "2027"),
        **{f"board-{ch}": (f"{base}/leaderboard?challenge={ch}", world.a.team) for ch in (FORECAST, EMERGENCY)},
        "board-en": (f"{base}/leaderboard?challenge={FORECAST}&lang=en", world.b.team),
        **{f"team-{k}": (f"{base}/team?team={quote(p.team)}", p.team) for k, p in (("a", world.a), ("x", world.x))},
    }
    out = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
        )
        try:
            for name, (url, wait_for) in wanted.items():
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                out[name] = open_page(page, url, wait_for, name)
                page.close()
        finally:
            browser.close()
    return out


def test_public_pages_show_no_private_score_or_final_ranking(pages, sealed):
    # The final ranking's own columns (the notice that it is sealed may name it, so not "final ranking").
    final_words = {
        i18n.t(k, lang) for k in ("col_final_score", "col_shift", "col_public_rank") for lang in ("zh", "en")
    }
    for name, r in pages.items():
        for body in (r.text, r.html):
            assert not leaks(body, sealed), (name, leaks(body, sealed))
        assert not [w for w in final_words if w in r.text], (name, [w for w in final_words if w in r.text])


def test_a_team_named_with_markup_is_shown_as_text(pages):
    for name in ("board-outpatient_forecast", "team-x"):
        r = pages[name]
        assert XSS_TEAM in r.text, name  # the characters themselves, visible
        assert r.markup_images == 0 and r.dialogs == [], (name, r.dialogs)
    assert all(r.dialogs == [] for r in pages.values())


def test_a_file_name_with_markup_is_kept_as_its_base_name(world):
    """``<script>alert(1)</script>.csv`` holds a '/', so the service keeps what follows it, as a file's
    base name; ``<img src=x onerror=alert(2)>.csv`` is kept as it is. Both are stored as plain text."""
    names = [s["file_name"] for s in world.x.submissions]
    assert names == ["script>.csv", XSS_FILE_2], names
    listed = call(world, "GET", "admin/submissions", f"token {world.org}").json()
    assert set(names) <= {s["file_name"] for s in listed if s["team"] == XSS_TEAM}


PAGE_NOT_FOUND = "Page not found"  # Streamlit's answer for a page not registered for this visitor


def sign_in_and_open_the_organizer_page(world, user: str, password: str, shot: str) -> Rendered:
    from playwright.sync_api import sync_playwright

    hub = world.hub
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1200})
            dialogs: list[str] = []
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            page.goto(f"{hub.url}/hub/login")
            page.fill("input[name=username]", user)
            page.fill("input[name=password]", password)
            page.click("[type=submit]")
            page.wait_for_load_state()
            page.goto(f"{hub.url}/services/leaderboard/oauth_login")  # the hub's OAuth, back to the organizer page
            page.wait_for_load_state()
            if "/oauth2/authorize" in page.url:  # the hub asks once whether the leaderboard may identify us
                page.click("[type=submit]")
                page.wait_for_load_state()
            r = open_page(page, page.url, ["script>.csv", PAGE_NOT_FOUND], shot)
            r.dialogs += dialogs
            return r
        finally:
            browser.close()


def test_the_organizer_page_shows_file_names_as_text(world):
    """File names appear on the organizer page only (its live stream of submissions)."""
    browser_or_skip(world)
    r = sign_in_and_open_the_organizer_page(world, world.hub.organizer, world.hub.organizer_password, "organizer")
    assert PAGE_NOT_FOUND not in r.text
    assert "script>.csv" in r.text and XSS_FILE_2 in r.text and XSS_TEAM in r.text
    assert r.markup_images == 0 and r.dialogs == [], r.dialogs


# --- team membership: the contest store decides (issue 13, item 6) ----------------------------


def hub_group(w: World, group: str) -> list[str]:
    r = w.hub.api("GET", f"/groups/{quote(group, safe='')}", token=w.org)
    return r.json()["users"] if r.status_code == 200 else []


def wait_for_group(w: World, group: str, ok, timeout: float = 60) -> list[str]:
    """The hub group's members once ``ok(members)`` (the mirror runs in the background)."""
    deadline = time.monotonic() + timeout
    while not ok(users := hub_group(w, group)) and time.monotonic() < deadline:
        time.sleep(0.5)
    return users


def test_a_member_removed_with_the_cli_stays_out_of_the_team(world, run_cli, demo):
    """``contesthub teams remove`` leaves the hub group ``team-X`` behind for up to a minute;
    the submission service used to join the user to team X again from it at their next request."""
    w = world
    team = f"leavers-{uuid.uuid4().hex[:6]}"
    name, _, session = w.hub.account()
    token = f"token {w.hub.new_token(name, session=session)}"
    r = call(w, "POST", "admin/teams", f"token {w.org}", json={"name": team, "members": [name]})
    assert r.status_code == 201, r.text
    assert wait_for_group(w, f"team-{team}", lambda users: name in users) == [name]
    assert call(w, "GET", "me", token).json()["team"]["name"] == team

    root = Paths(demo.data_root, w.hub.settings.private_root, PROJECT_ROOT / "datasets")
    result = run_cli("teams", "remove", team, name, "--by", "org", root=root)
    assert result.exit_code == 0, result.output
    assert name in hub_group(w, f"team-{team}")  # not mirrored yet: the group still names them
    for _ in range(2):  # the second call would find them joined again, were they
        me = call(w, "GET", "me", token)
        assert me.status_code == 200 and me.json()["team"] is None, me.text
    refused = call(w, "GET", "submissions", token)
    assert refused.status_code == 409 and refused.json()["code"] == "no-team", refused.text
    assert "尚未加入队伍" in refused.json()["message_zh"] and "not in a team" in refused.json()["message_en"]
    upload = call(w, "POST", f"challenges/{FORECAST}/submissions", token, data=b"date,hospital_id,x\n")
    assert upload.status_code == 409 and upload.json()["code"] == "no-team", upload.text

    # The next reconciliation (here after the organizer's next change) takes them out of the group.
    r = call(w, "POST", "admin/teams", f"token {w.org}", json={"name": f"{team}-next"})
    assert r.status_code == 201, r.text
    assert wait_for_group(w, f"team-{team}", lambda users: name not in users) == []
    assert call(w, "GET", "me", token).json()["team"] is None
    listed = call(w, "GET", "admin/teams", f"token {w.org}").json()
    assert next(t for t in listed if t["name"] == team)["members"] == []


def test_a_hand_made_team_group_does_not_make_a_member(world):
    """With local accounts a hub group is only a mirror: adding oneself (or being added on the
    admin page) to ``team-X`` gives no seat in team X, and the mirror takes it away again."""
    w = world
    name, _, session = w.hub.account()
    token = f"token {w.hub.new_token(name, session=session)}"
    group = f"team-{w.b.team}"
    r = w.hub.api("POST", f"/groups/{quote(group, safe='')}/users", token=w.org, json={"users": [name]})
    assert r.status_code == 200, r.text
    me = call(w, "GET", "me", token)
    assert me.status_code == 200 and me.json()["team"] is None, me.text
    assert call(w, "GET", "submissions", token).status_code == 409
    r = call(w, "POST", "admin/teams", f"token {w.org}", json={"name": f"mirror-{uuid.uuid4().hex[:6]}"})
    assert r.status_code == 201, r.text
    assert wait_for_group(w, group, lambda users: name not in users) == [w.b.user]


def test_after_all_that_the_service_is_up_and_alpha_is_intact(world):
    r = call(world, "GET", "health", None)
    assert r.status_code == 200 and r.json()["ok"]
    mine = call(world, "GET", "submissions", f"token {world.a.token}").json()
    assert {s["id"] for s in world.a.submissions} <= {s["id"] for s in mine}
    assert {s["team"] for s in mine} == {world.a.team} and {s["user"] for s in mine} == {world.a.user}
    me = call(world, "GET", "me", f"token {world.a.token}").json()
    assert me["team"]["name"] == world.a.team and me["team"]["members"] == [world.a.user]
    assert dt.date.fromisoformat(me["quotas"][0]["day"])
