"""Conditional data (有条件开放): who applied, who may read, until when, and every read.

A team applies for a conditional dataset with a purpose, the challenge or application it
serves and the version of the dataset's data-use agreement it accepted (the text is in the
descriptor, ``access.agreement``). Organizers, and the publishing body's reviewers where the
descriptor names their hub group (``access.reviewers``), approve with an expiry, reject with
a reason or revoke. Each step is one transaction with its entry in the hash-chained audit
log (:mod:`leaderboard.audit`), so ``contesthub audit verify`` covers every grant.

What a grant opens is decided here and enforced elsewhere: the spawners give a sandbox the
roots of the datasets its team may read (:func:`readable_datasets`), and in secure mode
``hub/conditional_acl.py`` opens each dataset's root to the approved teams' Unix groups and
closes it at expiry and revocation (:func:`expire_due`, run by the hub's sync).

Reads are logged by the platform in ``access_events`` (grants, server starts that mount a
dataset, queries through the sandbox API that name it); organizers see them per dataset and
team, the public only counts (:func:`public_counts`).
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from leaderboard import audit, teams
from leaderboard.models import AccessEvent, AccessRequest, Team
from sandbox import clock
from sandbox.descriptor import Dataset
from sandbox.errors import ContesthubError, NotFound

#: Longest texts a team may write (bounded input).
MAX_PURPOSE = 2000
MAX_SERVES = 200
MAX_REASON = 1000
#: Event kinds the platform records.
KINDS = ("grant", "server-start", "query")


class AccessError(ContesthubError):
    code = "access-error"


def _conditional(ds: Dataset) -> Dataset:
    if ds.tier != "conditional":
        raise AccessError(
            f"dataset {ds.id!r} is {ds.tier}, not conditional: there is nothing to apply for",
            f"数据集 {ds.id!r} 不是有条件开放数据（{ds.tier}），无需也不能申请",
            code="not-conditional",
        )
    return ds


def _text(value: str, limit: int, what_en: str, what_zh: str) -> str:
    value = (value or "").strip()
    if not value:
        raise AccessError(f"{what_en} is empty; write it", f"{what_zh}为空，请填写", code="access-field-missing")
    if len(value) > limit:
        raise AccessError(
            f"{what_en} has {len(value)} characters; at most {limit}",
            f"{what_zh}共 {len(value)} 个字符，最多 {limit} 个",
            code="access-field-too-long",
        )
    return value


def _subject(req: AccessRequest) -> str:
    return f"{req.dataset}/{req.team.name}"


def get(session: Session, request_id: int) -> AccessRequest:
    req = session.get(AccessRequest, request_id)
    if req is None:
        raise NotFound(f"no access request {request_id}", f"没有编号为 {request_id} 的数据申请")
    return req


def request(
    session: Session, ds: Dataset, user: str, *, purpose: str, serves: str, agreement_version: str
) -> AccessRequest:
    """A member of a team applies for ``ds`` on the team's behalf."""
    _conditional(ds)
    team = teams.team_of(session, user)
    if team is None or team.merged_into_id is not None:
        raise AccessError(
            f"{user!r} is in no team; only a team applies for conditional data",
            f"{user!r} 不属于任何队伍；有条件开放数据须以队伍名义申请",
            code="no-team",
        )
    current = ds.agreement["version"]
    if agreement_version != current:
        raise AccessError(
            f"the data-use agreement of {ds.id!r} is version {current}; read it and accept that version "
            f"(you accepted {agreement_version!r})",
            f"{ds.id!r} 的数据使用协议当前为 {current} 版；请阅读并接受该版本（你接受的是 {agreement_version!r}）",
            code="agreement-version",
        )
    purpose = _text(purpose, MAX_PURPOSE, "the purpose", "用途")
    serves = _text(serves, MAX_SERVES, "the challenge or application it serves", "所服务的赛题或应用")
    open_ = session.execute(
        select(AccessRequest).where(
            AccessRequest.dataset == ds.id,
            AccessRequest.team_id == team.id,
            AccessRequest.status.in_(("pending", "approved")),
        )
    ).scalar_one_or_none()
    if open_ is not None:
        raise AccessError(
            f"team {team.name!r} already has request {open_.id} for {ds.id!r} ({open_.status})",
            f"队伍 {team.name!r} 已有数据集 {ds.id!r} 的申请 {open_.id}（{open_.status}）",
            code="access-request-exists",
        )
    req = AccessRequest(
        team_id=team.id,
        team=team,
        dataset=ds.id,
        purpose=purpose,
        serves=serves,
        agreement_version=current,
        requested_by=user,
        requested_at=clock.now(),
        status="pending",
    )
    session.add(req)
    session.flush()
    audit.record(
        session,
        user,
        "access.request",
        _subject(req),
        {"request": req.id, "purpose": purpose, "serves": serves, "agreement_version": current},
    )
    return req


def may_decide(reviewers: str | None, *, organizer: bool, groups: set[str] | frozenset[str] = frozenset()) -> bool:
    """Organizers decide every request; the publishing body's reviewers (the hub group the
    descriptor names, ``access.reviewers``) those for its datasets."""
    return organizer or (reviewers is not None and reviewers in groups)


def _pending(req: AccessRequest, action: str) -> None:
    if req.status != "pending":
        action_zh = {"approved": "批准", "rejected": "驳回"}[action]
        raise AccessError(
            f"request {req.id} is {req.status}; only a pending request can be {action}",
            f"申请 {req.id} 的状态为 {req.status}；只有待审批的申请可以{action_zh}",
            code="access-not-pending",
        )


def approve(session: Session, ds: Dataset, request_id: int, by: str, *, expires_at: dt.datetime) -> AccessRequest:
    """Grant the team access until ``expires_at`` (no later than the descriptor's ``max_days``)."""
    req = get(session, request_id)
    if req.dataset != ds.id:
        raise AccessError(f"request {request_id} is for {req.dataset!r}", f"申请 {request_id} 针对 {req.dataset!r}")
    _pending(req, "approved")
    now = clock.now()
    if expires_at <= now:
        raise AccessError(
            f"the expiry {expires_at:%Y-%m-%d %H:%M %Z} is not in the future",
            f"到期时间 {expires_at:%Y-%m-%d %H:%M} 不在将来",
            code="access-expiry",
        )
    max_days = (ds.meta.get("access") or {}).get("max_days")
    latest = now + dt.timedelta(days=max_days or 0)
    if max_days and expires_at > latest:
        raise AccessError(
            f"{ds.id!r} may be granted for at most {max_days} days (until {latest:%Y-%m-%d})",
            f"{ds.id!r} 的授权期限最长 {max_days} 天（至 {latest:%Y-%m-%d}）",
            code="access-expiry",
        )
    req.status, req.decided_by, req.decided_at, req.expires_at = "approved", by, now, expires_at
    audit.record(
        session,
        by,
        "access.approve",
        _subject(req),
        {"request": req.id, "expires_at": expires_at.isoformat(), "agreement_version": req.agreement_version},
    )
    log_event(session, req.dataset, req.team, by, "grant", {"request": req.id, "expires_at": expires_at.isoformat()})
    return req


def reject(session: Session, request_id: int, by: str, *, reason: str) -> AccessRequest:
    req = get(session, request_id)
    _pending(req, "rejected")
    reason = _text(reason, MAX_REASON, "the reason", "理由")
    req.status, req.decided_by, req.decided_at, req.reason = "rejected", by, clock.now(), reason
    audit.record(session, by, "access.reject", _subject(req), {"request": req.id, "reason": reason})
    return req


def revoke(session: Session, request_id: int, by: str, *, reason: str) -> AccessRequest:
    req = get(session, request_id)
    if req.status != "approved":
        raise AccessError(
            f"request {req.id} is {req.status}; only an approved request can be revoked",
            f"申请 {req.id} 的状态为 {req.status}；只有已批准的申请可以撤销",
            code="access-not-approved",
        )
    reason = _text(reason, MAX_REASON, "the reason", "理由")
    req.status, req.decided_by, req.decided_at, req.reason = "revoked", by, clock.now(), reason
    audit.record(session, by, "access.revoke", _subject(req), {"request": req.id, "reason": reason})
    return req


def expire_due(session: Session, now: dt.datetime | None = None) -> list[AccessRequest]:
    """Mark approved requests past their expiry as expired (one audit entry each)."""
    now = now or clock.now()
    due = (
        session.execute(
            select(AccessRequest)
            .where(AccessRequest.status == "approved", AccessRequest.expires_at <= now)
            .order_by(AccessRequest.id)
        )
        .scalars()
        .all()
    )
    for req in due:
        req.status = "expired"
        audit.record(
            session, "platform", "access.expire", _subject(req), {"request": req.id, "expires_at": str(req.expires_at)}
        )
    return list(due)


def active_grants(session: Session, now: dt.datetime | None = None) -> dict[str, set[str]]:
    """``{dataset: {team name, ...}}`` of the grants in force now (expiry checked here too)."""
    now = now or clock.now()
    rows = session.execute(
        select(AccessRequest.dataset, Team.name)
        .join(Team, AccessRequest.team_id == Team.id)
        .where(AccessRequest.status == "approved", AccessRequest.expires_at > now)
    )
    out: dict[str, set[str]] = {}
    for dataset, team in rows:
        out.setdefault(dataset, set()).add(team)
    return out


def readable_datasets(session: Session, user: str, now: dt.datetime | None = None) -> list[str]:
    """The conditional datasets ``user``'s team may read now."""
    team = teams.team_of(session, user)
    if team is None:
        return []
    return sorted(d for d, names in active_grants(session, now).items() if team.name in names)


def state(req: AccessRequest, now: dt.datetime | None = None) -> str:
    """What a team sees: pending, approved, rejected, revoked or expired (even before the sync)."""
    now = now or clock.now()
    if req.status == "approved" and req.expires_at is not None and req.expires_at <= now:
        return "expired"
    return req.status


def listing(session: Session, *, team: str | None = None, dataset: str | None = None) -> list[dict]:
    query = select(AccessRequest).join(Team, AccessRequest.team_id == Team.id).order_by(AccessRequest.id)
    if team:
        query = query.where(Team.name == team)
    if dataset:
        query = query.where(AccessRequest.dataset == dataset)
    now = clock.now()
    return [
        {
            "id": r.id,
            "dataset": r.dataset,
            "team": r.team.name,
            "state": state(r, now),
            "purpose": r.purpose,
            "serves": r.serves,
            "agreement_version": r.agreement_version,
            "requested_by": r.requested_by,
            "requested_at": r.requested_at.isoformat(),
            "decided_by": r.decided_by,
            "decided_at": r.decided_at.isoformat() if r.decided_at else None,
            "expires_at": r.expires_at.isoformat() if r.expires_at else None,
            "reason": r.reason,
        }
        for r in session.execute(query).scalars()
    ]


# --- the access log ------------------------------------------------------------------------


def log_event(session: Session, dataset: str, team: Team | None, user: str, kind: str, detail: dict) -> AccessEvent:
    if kind not in KINDS:
        raise ValueError(f"unknown access event kind {kind!r}")
    event = AccessEvent(
        at=clock.now(), dataset=dataset, team_id=team.id if team else None, user=user, kind=kind, detail=detail
    )
    session.add(event)
    session.flush()
    return event


def events(session: Session, *, dataset: str | None = None, team: str | None = None, limit: int = 500) -> list[dict]:
    """The log for organizers, newest first."""
    query = (
        select(AccessEvent, Team.name)
        .outerjoin(Team, AccessEvent.team_id == Team.id)
        .order_by(AccessEvent.id.desc())
        .limit(limit)
    )
    if dataset:
        query = query.where(AccessEvent.dataset == dataset)
    if team:
        query = query.where(Team.name == team)
    return [
        {"at": e.at.isoformat(), "dataset": e.dataset, "team": name, "user": e.user, "kind": e.kind, "detail": e.detail}
        for e, name in session.execute(query)
    ]


def public_counts(session: Session) -> dict[str, dict[str, int]]:
    """What the public sees: per dataset, teams approved now and reads by kind; no names."""
    out: dict[str, dict[str, int]] = {}
    for dataset, names in active_grants(session).items():
        out.setdefault(dataset, {})["teams_approved"] = len(names)
    rows = session.execute(
        select(AccessEvent.dataset, AccessEvent.kind, func.count()).group_by(AccessEvent.dataset, AccessEvent.kind)
    )
    for dataset, kind, n in rows:
        out.setdefault(dataset, {})[kind] = n
    return out
