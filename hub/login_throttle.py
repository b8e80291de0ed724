"""Slowing down password guessing without letting a stranger lock anyone out.

A lockout per name (N failures, then the name waits) lets anyone who knows a name keep its
owner out: ten wrong passwords for ``organizer`` from anywhere and the organizer's right one
is refused too. So failures are counted per **client** (the address the request came from)
and name, and a correct login from another client is never held back by them:

* **per client and name**: ``free_failures`` failures cost nothing; after that each attempt
  waits ``backoff`` seconds, doubling with every further failure, up to ``max_backoff``.
* **per client**, over all names (one address trying many names): the same after
  ``client_free_failures`` failures.
* **hub-wide**: when more than ``global_failures_per_minute`` logins fail in a minute (many
  addresses at once), every client that has failed recently waits ``global_wait`` seconds
  between attempts. A client with no recent failure is never held back by it.

An attempt is counted as a failure the moment it is let through (so parallel requests see
it) and taken back when the password was right. Waiting attempts are refused before any
password is checked: they cost no bcrypt time. Failures are forgotten ``forget_after``
seconds after a client's last one; at most ``max_entries`` clients and pairs are remembered
(the oldest are dropped first), so a flood of made-up names or addresses has a bound.

**Which client?** :func:`client_address`. The hub sits behind configurable-http-proxy, so
every request reaches it from the proxy, and the client's address is the last entry of
``X-Forwarded-For``, which the proxy *appends* (what the client sent itself stands to the
left of it). Tornado's own ``remote_ip`` (JupyterHub runs it with ``xheaders``) is not used:
it believes an ``X-Real-Ip`` header sent by the client, with which a client would be a new
client at every attempt. ``X-Forwarded-For`` is believed only from the hub's proxy, which is
recognised by the owner of the connection's other end (a local socket owned by the hub's own
account) or by ``trusted_proxies``. In the secure mode contestants' servers run as other
accounts of the same machine and reach the hub's port directly: such a connection's client is
that account, whatever its headers say.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Policy:
    """The numbers of the rules above (traits ``LocalAccountsAuthenticator.login_*`` set them)."""

    free_failures: int = 5
    backoff: float = 2.0
    max_backoff: float = 300.0
    client_free_failures: int = 30
    global_failures_per_minute: int = 120
    global_wait: float = 10.0
    forget_after: float = 900.0
    max_entries: int = 100_000


@dataclass
class _Record:
    failures: int = 0
    last: float = 0.0


@dataclass
class Throttle:
    """Failed-login bookkeeping of one hub (JupyterHub is one process: memory is enough).

    Called from the hub's event loop only, so without a lock."""

    policy: Policy = field(default_factory=Policy)
    clock: Callable[[], float] = time.monotonic
    _pairs: dict[tuple[str, str], _Record] = field(default_factory=dict)
    _clients: dict[str, _Record] = field(default_factory=dict)
    _recent: deque[float] = field(default_factory=deque)  # hub-wide failure times of the last minute

    def attempt(self, client: str, name: str) -> float:
        """Seconds ``client`` must still wait before trying ``name``; 0: go ahead (counted as a
        failure until :meth:`succeeded`)."""
        now = self.clock()
        pair = self._current(self._pairs, (client, name[:100]), now)
        mine = self._current(self._clients, client, now)
        p = self.policy
        waits = [0.0]
        if pair and pair.failures >= p.free_failures:
            waits.append(pair.last + self._backoff(pair.failures - p.free_failures) - now)
        if mine and mine.failures >= p.client_free_failures:
            waits.append(mine.last + self._backoff(mine.failures - p.client_free_failures) - now)
        if mine and self._busy(now):
            waits.append(mine.last + p.global_wait - now)
        wait = max(waits)
        if wait > 0:
            return wait
        self._count(self._pairs, (client, name[:100]), now, +1)
        self._count(self._clients, client, now, +1)
        self._recent.append(now)
        return 0.0

    def succeeded(self, client: str, name: str) -> None:
        """The attempt let through had the right password: it was no failure after all."""
        self._pairs.pop((client, name[:100]), None)
        mine = self._clients.get(client)
        if mine:
            mine.failures -= 1
            if mine.failures <= 0:
                del self._clients[client]
        if self._recent:
            self._recent.pop()  # one of the last minute's, whichever: the count is what matters

    def _backoff(self, extra_failures: int) -> float:
        return min(self.policy.max_backoff, self.policy.backoff * 2 ** min(extra_failures, 32))

    def _busy(self, now: float) -> bool:
        while self._recent and now - self._recent[0] > 60:
            self._recent.popleft()
        return len(self._recent) > self.policy.global_failures_per_minute

    def _current(self, table: dict, key, now: float) -> _Record | None:
        record = table.get(key)
        if record and now - record.last > self.policy.forget_after:
            del table[key]
            return None
        return record

    def _count(self, table: dict, key, now: float, step: int) -> None:
        record = table.pop(key, None) or _Record()
        record.failures += step
        record.last = now
        table[key] = record  # re-inserted: the dict's order is the order of last failures
        while len(table) > self.policy.max_entries:
            del table[next(iter(table))]  # the longest quiet


# --- which client: the address the hub's proxy saw ------------------------------------------


def client_address(request, *, trusted_proxies: list[str] = ()) -> str:
    """The address of the client behind ``request`` (a tornado request to the hub), unforgeable.

    ``trusted_proxies``: networks (``10.0.0.0/8``, ``192.0.2.7``) of further proxies whose
    ``X-Forwarded-For`` entries are believed too: a TLS terminator in front of the hub's
    proxy, or, on Kubernetes, the proxy pods' network."""
    peer = request.connection.context.address
    peer_ip = _plain(peer[0]) if isinstance(peer, tuple) and peer else ""
    networks = [ipaddress.ip_network(n, strict=False) for n in trusted_proxies]

    def trusted(ip: str) -> bool:
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return False
        return any(address in n for n in networks)

    if not peer_ip:  # a Unix socket: only the hub's own account reaches it
        return "unix"
    owner = _local_owner(request, peer)
    if owner is not None and owner != os.geteuid():
        # Another account of this machine (a contestant's server in secure mode) straight at
        # the hub's port: that account is the client, whatever its headers say.
        return f"local-account-{owner}"
    if owner is None and not trusted(peer_ip):
        return peer_ip
    client = peer_ip
    for entry in reversed(request.headers.get("X-Forwarded-For", "").split(",")):
        entry = _plain(entry.strip())
        if not entry:
            continue
        client = entry
        if not trusted(entry):
            break
    return client


def _plain(ip: str) -> str:
    """``::ffff:1.2.3.4`` as ``1.2.3.4``; anything that is no address as it is."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    mapped = getattr(address, "ipv4_mapped", None)
    return str(mapped or address)


def _local_owner(request, peer: tuple) -> int | None:
    """The uid owning the other end of ``request``'s connection, when it is a socket of this machine.

    Found once per connection (reading /proc/net/tcp costs milliseconds on a busy machine, and a
    socket's owner never changes): the keep-alive requests after the first reuse it."""
    connection = request.connection
    known = getattr(connection, "_contesthub_owner", _UNKNOWN)
    if known is not _UNKNOWN:
        return known
    try:
        server = connection.stream.socket.getsockname()
    except (AttributeError, OSError):
        return None
    owner = socket_owner((peer[0], peer[1]), (server[0], server[1]))
    with contextlib.suppress(AttributeError):
        connection._contesthub_owner = owner
    return owner


_UNKNOWN = object()


def socket_owner(local: tuple[str, int], remote: tuple[str, int]) -> int | None:
    """The uid owning the TCP socket ``local`` → ``remote`` of this machine (``/proc/net/tcp``);
    None when there is none (the other end is on another machine) or it cannot be told."""
    local_ip, remote_ip = ipaddress.ip_address(local[0]), ipaddress.ip_address(remote[0])
    mapped = getattr(local_ip, "ipv4_mapped", None)
    if mapped:  # an IPv4 client of a dual-stack server: its own socket is an IPv4 one
        local_ip, remote_ip = mapped, getattr(remote_ip, "ipv4_mapped", None) or remote_ip
    table = Path("/proc/net/tcp" if local_ip.version == 4 else "/proc/net/tcp6")
    want = (_proc_address(local_ip, local[1]), _proc_address(remote_ip, remote[1]))
    try:
        lines = table.read_text().splitlines()[1:]
    except OSError:
        return None
    for line in lines:
        fields = line.split()
        if len(fields) > 7 and (fields[1], fields[2]) == want:
            return int(fields[7])
    return None


def _proc_address(ip: ipaddress.IPv4Address | ipaddress.IPv6Address, port: int) -> str:
    """An address as /proc/net/tcp writes it: each 32-bit word in the machine's byte order."""
    packed = ip.packed
    step = -1 if sys.byteorder == "little" else 1
    words = b"".join(packed[i : i + 4][::step] for i in range(0, len(packed), 4))
    return f"{words.hex().upper()}:{port:04X}"
