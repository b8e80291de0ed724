"""The login throttle's rules (hub/login_throttle.py), on a clock the test moves.

The attack itself (a stranger's failures must not lock the organizer out, forged forwarding
headers must not help) runs against a real hub in tests/test_hub_accounts.py; here: the
backoff sequence, the per-client and hub-wide limits, memory bounds, and who may name the
client in ``X-Forwarded-For`` (a real tornado server, and a client running as another Unix
account, as a contestant's server does in secure mode).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading

import pytest
from tornado import httpserver, netutil, web

from hub.login_throttle import Policy, Throttle, client_address
from hub.settings import HubSettings, SettingsError


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def fail(t: Throttle, client: str, name: str) -> float:
    """One wrong password: the wait asked for (0: it was let through and counted)."""
    return t.attempt(client, name)


def test_a_client_waits_longer_after_each_failure_and_another_client_not_at_all():
    clock = Clock()
    t = Throttle(Policy(free_failures=3, backoff=2, max_backoff=20), clock=clock)
    assert [fail(t, "203.0.113.9", "organizer") for _ in range(3)] == [0, 0, 0]  # free
    waits = []
    for _ in range(6):
        wait = t.attempt("203.0.113.9", "organizer")
        assert wait > 0  # refused, and the refusal is not counted
        assert t.attempt("203.0.113.9", "organizer") == wait
        waits.append(wait)
        clock.now += wait
        assert fail(t, "203.0.113.9", "organizer") == 0
    assert waits == [2, 4, 8, 16, 20, 20]
    # The organizer, from elsewhere, is let through at once and their right password clears nothing of the stranger's.
    assert t.attempt("198.51.100.1", "organizer") == 0
    t.succeeded("198.51.100.1", "organizer")
    assert t.attempt("203.0.113.9", "organizer") == 20


def test_the_right_password_is_no_failure_and_failures_are_forgotten():
    clock = Clock()
    t = Throttle(Policy(free_failures=2, backoff=5, forget_after=600), clock=clock)
    for _ in range(50):  # logging in right again and again never waits
        assert t.attempt("192.0.2.1", "ann") == 0
        t.succeeded("192.0.2.1", "ann")
    fail(t, "192.0.2.1", "ann"), fail(t, "192.0.2.1", "ann")
    assert t.attempt("192.0.2.1", "ann") == 5
    clock.now += 601
    assert t.attempt("192.0.2.1", "ann") == 0


def test_one_client_trying_many_names_waits_too():
    clock = Clock()
    t = Throttle(Policy(free_failures=5, client_free_failures=4, backoff=3), clock=clock)
    assert [fail(t, "192.0.2.66", f"user{i}") for i in range(4)] == [0, 0, 0, 0]
    assert t.attempt("192.0.2.66", "user99") == 3  # a name it never tried
    assert t.attempt("192.0.2.67", "user99") == 0  # its neighbour is another client


def test_many_failures_hub_wide_slow_every_failing_client_but_no_new_one():
    clock = Clock()
    t = Throttle(Policy(global_failures_per_minute=5, global_wait=10), clock=clock)
    for i in range(6):
        assert fail(t, f"10.0.0.{i}", "organizer") == 0
        clock.now += 1
    assert t.attempt("10.0.0.0", "organizer") == pytest.approx(4)  # failed 6 s ago: 10 s between attempts
    assert t.attempt("10.0.0.5", "other") == pytest.approx(9)
    assert t.attempt("10.9.9.9", "organizer") == 0  # never failed: never held back
    t.succeeded("10.9.9.9", "organizer")
    clock.now += 61  # a quiet minute later the hub-wide rule is off again
    assert t.attempt("10.0.0.0", "organizer") == 0


def test_a_flood_of_made_up_names_and_addresses_is_bounded():
    t = Throttle(Policy(max_entries=100), clock=Clock())
    for i in range(5000):
        t.attempt(f"10.{i // 65536}.{i // 256 % 256}.{i % 256}", f"name-{i}" * 50)
    assert len(t._pairs) <= 100 and len(t._clients) <= 100
    assert all(len(name) <= 100 for _, name in t._pairs)


# --- who names the client ------------------------------------------------------------------------


class Echo(web.RequestHandler):
    def get(self) -> None:
        trusted = self.get_query_argument("trusted", "")
        self.finish({"client": client_address(self.request, trusted_proxies=[trusted] if trusted else [])})


@pytest.fixture(scope="module")
def echo_server():
    """A tornado server as JupyterHub runs its own (xheaders on), answering with the client it sees."""
    sockets = netutil.bind_sockets(0, "127.0.0.1")
    port = sockets[0].getsockname()[1]
    ready = threading.Event()
    box = {}

    async def serve() -> None:
        server = httpserver.HTTPServer(web.Application([(r"/", Echo)]), xheaders=True)
        server.add_sockets(sockets)
        box["loop"], box["stop"] = asyncio.get_running_loop(), asyncio.Event()
        ready.set()
        await box["stop"].wait()
        server.stop()
        await server.close_all_connections()

    thread = threading.Thread(target=asyncio.run, args=(serve(),), daemon=True)
    thread.start()
    assert ready.wait(10)
    yield f"http://127.0.0.1:{port}/"
    box["loop"].call_soon_threadsafe(box["stop"].set)
    thread.join(10)


ASK = """
import json, sys, urllib.request
req = urllib.request.Request(sys.argv[1], headers={"X-Forwarded-For": "6.6.6.6, 7.7.7.7", "X-Real-Ip": "8.8.8.8"})
print(json.load(urllib.request.urlopen(req, timeout=30))["client"])
"""


def ask(url: str, user: int | None = None) -> str:
    run = subprocess.run(
        [sys.executable, "-c", ASK, url], capture_output=True, text=True, timeout=60, user=user, cwd="/"
    )
    assert run.returncode == 0, run.stderr
    return run.stdout.strip()


def test_forwarding_headers_count_only_from_the_hubs_own_account_or_a_trusted_proxy(echo_server):
    # The hub's proxy runs as the hub's account: the last X-Forwarded-For entry is the one it added;
    # X-Real-Ip, which tornado itself would believe, is never read.
    assert ask(echo_server) == "7.7.7.7"
    # A trusted proxy in front of it: its entry is skipped, the one before it is the client.
    assert ask(echo_server + "?trusted=7.7.7.7") == "6.6.6.6"


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to connect as another Unix account")
def test_a_contestant_account_reaching_the_hub_port_directly_cannot_name_another_client(echo_server):
    """In secure mode contestants' servers run as their own accounts on this machine and can
    reach the hub's port without the proxy: what they put in the headers is not believed."""
    assert ask(echo_server, user=65534) == "local-account-65534"  # its failures are that account's
    assert ask(echo_server + "?trusted=7.7.7.7", user=65534) == "local-account-65534"


def test_trusted_proxies_are_checked_when_the_hub_starts():
    settings = HubSettings.load({"trusted_proxies": "10.0.0.0/8, 192.0.2.7"}, environ={})
    assert settings.trusted_proxy_networks == ["10.0.0.0/8", "192.0.2.7"]
    with pytest.raises(SettingsError, match="trusted_proxies: 'nonsense' is not an address") as refused:
        HubSettings.load({"trusted_proxies": "10.0.0.0/8,nonsense"}, environ={})
    assert "不是有效的地址或网段" in refused.value.zh
