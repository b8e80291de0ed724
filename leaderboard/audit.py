"""The append-only, hash-chained audit log.

Every entry carries the hash of the one before it; the hash covers the entry's sequence
number, time, actor, action, subject and canonical JSON payload. Editing an entry breaks
its own hash, deleting or reordering entries breaks the chain, and cutting entries off the
end disagrees with ``audit_head``, which a writer updates in the same transaction as the
change it records. :func:`record` must be called inside that transaction, so an action and
its entry are committed together or not at all.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from leaderboard.models import AuditEntry, AuditHead
from sandbox import clock

GENESIS = "0" * 64


def canonical(payload: dict) -> str:
    return json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)


def entry_hash(prev_hash: str, seq: int, at: dt.datetime, actor: str, action: str, subject: str, payload: str) -> str:
    text = "\x1f".join([prev_hash, str(seq), at.astimezone(dt.UTC).isoformat(), actor, action, subject, payload])
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def record(session: Session, actor: str, action: str, subject: str, payload: dict | None = None) -> AuditEntry:
    """Append one entry; the head row is locked until the caller's transaction ends."""
    head = session.execute(select(AuditHead).where(AuditHead.id == 1).with_for_update()).scalar_one_or_none()
    if head is None:
        head = AuditHead(id=1, seq=0, hash=GENESIS)
        session.add(head)
    # Times are kept to the microsecond in both databases; hash what will be read back.
    at = clock.now()
    body = canonical(payload or {})
    seq = head.seq + 1
    digest = entry_hash(head.hash, seq, at, actor, action, subject, body)
    entry = AuditEntry(
        seq=seq, at=at, actor=actor, action=action, subject=subject, payload=body, prev_hash=head.hash, hash=digest
    )
    session.add(entry)
    head.seq, head.hash = seq, digest
    session.flush()
    return entry


@dataclass
class Verification:
    ok: bool
    entries: int
    problems: list[str]

    def to_dict(self) -> dict:
        return {"ok": self.ok, "entries": self.entries, "problems": self.problems}


def verify(session: Session) -> Verification:
    """Walk the chain from the start; report every broken link, edited entry and missing tail."""
    problems: list[str] = []
    prev, expected_seq, n = GENESIS, 1, 0
    for e in session.execute(select(AuditEntry).order_by(AuditEntry.seq)).scalars():
        n += 1
        if e.seq != expected_seq:
            problems.append(f"entry {expected_seq} is missing (next entry is {e.seq})")
        if e.prev_hash != prev:
            problems.append(f"entry {e.seq} does not follow the entry before it (deleted, inserted or reordered)")
        if entry_hash(e.prev_hash, e.seq, e.at, e.actor, e.action, e.subject, e.payload) != e.hash:
            problems.append(f"entry {e.seq} ({e.action} {e.subject}) was changed after it was written")
        prev, expected_seq = e.hash, e.seq + 1
    head = session.get(AuditHead, 1)
    if head is not None and (head.seq != expected_seq - 1 or head.hash != prev):
        problems.append(f"the log ends at entry {expected_seq - 1} but the head says {head.seq}: entries were removed")
    return Verification(ok=not problems, entries=n, problems=problems)
