"""Teams: who plays together, with the contest's rules on size, freezing and merging.

Every change goes through here (the CLI, the organizer API and the hub's group sync all
call these functions), so size limits, the freeze date, Kaggle's merge rule and the audit
log hold whichever door a change comes through. Each function works inside the caller's
transaction and records its audit entry in it.
"""

from __future__ import annotations

import datetime as dt
import re

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from leaderboard import audit
from leaderboard.contest import Contest
from leaderboard.models import AuditEntry, Member, Quota, Submission, Team
from sandbox import clock, statuses
from sandbox.errors import ContesthubError, NotFound

NAME = re.compile(r"^[^/\x00-\x1f\x7f]{1,100}$")
COUNTED = statuses.COUNTED  # submissions that hold quota


class TeamError(ContesthubError):
    code = "team-error"


def _check_open(contest: Contest, now: dt.datetime) -> None:
    if contest.teams_frozen(now):
        raise TeamError(
            f"teams were frozen at {contest.team_freeze:%Y-%m-%d %H:%M %Z}; "
            "no team can be formed, joined, left or merged any more",
            f"队伍已于 {contest.team_freeze:%Y-%m-%d %H:%M} 冻结，不能再组队、加入、退出或合并",
            code="teams-frozen",
        )


def get(session: Session, name: str) -> Team:
    team = session.execute(select(Team).where(Team.name == name)).scalar_one_or_none()
    if team is None or team.merged_into_id is not None:
        raise NotFound(f"no team {name!r}", f"没有队伍 {name!r}")
    return team


def team_of(session: Session, user: str) -> Team | None:
    member = session.get(Member, user)
    return member.team if member else None


def teams_of(session: Session, users: list[str]) -> dict[str, str]:
    """The team (name) of each of ``users`` that is in one."""
    if not users:
        return {}
    rows = session.execute(
        select(Member.user, Team.name).join(Team, Member.team_id == Team.id).where(Member.user.in_(users))
    )
    return dict(rows.all())


def create(
    session: Session,
    contest: Contest,
    name: str,
    *,
    actor: str,
    display_name: str | None = None,
    members: tuple[str, ...] = (),
    region: str | None = None,
    now: dt.datetime | None = None,
) -> Team:
    now = now or clock.now()
    _check_open(contest, now)
    name = name.strip()
    if not NAME.match(name):
        raise TeamError(
            f"team name {name!r} is not allowed: use 1–100 characters without '/' or control characters",
            f"队名 {name!r} 不可用：请使用 1–100 个字符，不含 '/' 和控制字符",
            code="team-name-invalid",
        )
    if session.execute(select(Team.id).where(Team.name == name)).first():
        raise TeamError(f"a team named {name!r} already exists", f"队名 {name!r} 已被使用", code="team-exists")
    team = Team(name=name, display_name=(display_name or name).strip()[:200], created_at=now, region=_region(region))
    session.add(team)
    session.flush()
    audit.record(session, actor, "team.create", name, {"display_name": team.display_name, "region": team.region})
    for user in members:
        add_member(session, contest, name, user, actor=actor, now=now)
    return team


def _region(region: str | None) -> str | None:
    region = (region or "").strip()
    if len(region) > 64 or not NAME.match(region or "x"):
        raise TeamError(
            f"region {region!r} is not allowed: use 1–64 characters without '/' or control characters",
            f"赛区 {region!r} 不可用：请使用 1–64 个字符，不含 '/' 和控制字符",
            code="region-invalid",
        )
    return region or None


def set_region(session: Session, contest: Contest, name: str, region: str | None, *, actor: str) -> Team:
    """Put a team in a region (赛区), which rounds may advance teams by; recorded. Only before
    the team freeze: after it, who plays where is settled."""
    _check_open(contest, clock.now())
    team = get(session, name)
    team.region = _region(region)
    audit.record(session, actor, "team.region", name, {"region": team.region})
    return team


def add_member(
    session: Session, contest: Contest, team_name: str, user: str, *, actor: str, now: dt.datetime | None = None
) -> Member:
    now = now or clock.now()
    _check_open(contest, now)
    team = get(session, team_name)
    current = team_of(session, user)
    if current is not None:
        if current.id == team.id:
            return session.get(Member, user)
        raise TeamError(
            f"{user} is already in team {current.name!r}; leave it first (or ask an organizer to merge the teams)",
            f"{user} 已在队伍 {current.name!r} 中；请先退出（或请组织方合并队伍）",
            code="already-in-team",
        )
    size = session.execute(select(func.count()).select_from(Member).where(Member.team_id == team.id)).scalar_one()
    if size >= contest.max_team_size:
        raise TeamError(
            f"team {team.name!r} already has {size} members, the most a team may have",
            f"队伍 {team.name!r} 已有 {size} 名成员，达到人数上限",
            code="team-full",
        )
    member = Member(user=user, team_id=team.id, joined_at=now)
    session.add(member)
    session.flush()
    audit.record(session, actor, "team.add_member", team.name, {"user": user})
    return member


def remove_member(
    session: Session, contest: Contest, team_name: str, user: str, *, actor: str, now: dt.datetime | None = None
) -> None:
    now = now or clock.now()
    _check_open(contest, now)
    team = get(session, team_name)
    member = session.get(Member, user)
    if member is None or member.team_id != team.id:
        raise NotFound(f"{user} is not in team {team.name!r}", f"{user} 不在队伍 {team.name!r} 中")
    session.delete(member)
    session.flush()
    audit.record(session, actor, "team.remove_member", team.name, {"user": user})


def was_removed(session: Session, team_name: str, user: str) -> bool:
    """Whether ``user`` was ever removed from ``team_name`` (read from the audit log).

    An identity provider's group keeps naming a removed member until someone changes it
    there; this is how the submission service knows not to bring them back in."""
    found = session.execute(
        select(AuditEntry.seq)
        .where(
            AuditEntry.action == "team.remove_member",
            AuditEntry.subject == team_name,
            AuditEntry.payload == audit.canonical({"user": user}),
        )
        .limit(1)
    ).first()
    return found is not None


def merge(
    session: Session, contest: Contest, into: str, other: str, *, actor: str, now: dt.datetime | None = None
) -> Team:
    """Merge ``other`` into ``into``: members and submissions move, ``other`` is retired.

    Kaggle's rule: for every challenge, the merged team's submissions so far may not exceed
    the daily quota times the days the challenge has been open (so merging cannot buy
    extra tries), and the merged team must respect the size limit.
    """
    now = now or clock.now()
    _check_open(contest, now)
    a, b = get(session, into), get(session, other)
    if a.id == b.id:
        raise TeamError("a team cannot be merged with itself", "队伍不能与自己合并", code="merge-invalid")
    members = session.execute(select(func.count()).where(Member.team_id.in_([a.id, b.id]))).scalar_one()
    if members > contest.max_team_size:
        raise TeamError(
            f"the merged team would have {members} members; at most {contest.max_team_size} are allowed",
            f"合并后队伍将有 {members} 名成员，超过上限 {contest.max_team_size}",
            code="team-full",
        )
    for ch in contest.challenges:
        used = session.execute(
            select(func.count()).where(
                Submission.team_id.in_([a.id, b.id]), Submission.challenge == ch.id, Submission.status.in_(COUNTED)
            )
        ).scalar_one()
        days = max(0, (contest.day(min(now, ch.closes)) - contest.day(ch.opens)).days + 1)
        if used > ch.daily_quota * days:
            raise TeamError(
                f"{ch.id}: the two teams made {used} submissions, more than a merged team could have made "
                f"({ch.daily_quota} a day × {days} days = {ch.daily_quota * days}); they cannot merge",
                f"{ch.id}：两队共提交 {used} 次，超过合并后队伍可提交的次数"
                f"（每天 {ch.daily_quota} 次 × {days} 天 = {ch.daily_quota * days}），不能合并",
                code="merge-over-quota",
            )
    for m in session.execute(select(Member).where(Member.team_id == b.id)).scalars():
        m.team_id = a.id
    moved = session.execute(select(Submission).where(Submission.team_id == b.id)).scalars().all()
    for s in moved:
        s.team_id = a.id
    _merge_quota_rows(session, a.id, b.id)
    b.merged_into_id = a.id
    session.flush()
    audit.record(session, actor, "team.merge", a.name, {"merged": b.name, "submissions_moved": len(moved)})
    return a


def _merge_quota_rows(session: Session, into_id: int, from_id: int) -> None:
    for q in session.execute(select(Quota).where(Quota.team_id == from_id)).scalars().all():
        target = session.get(Quota, (into_id, q.challenge, q.day))
        if target is None:
            session.add(Quota(team_id=into_id, challenge=q.challenge, day=q.day, used=q.used, granted=q.granted))
        else:
            target.used += q.used
            target.granted += q.granted
        session.delete(q)


def listing(session: Session) -> list[dict]:
    teams = session.execute(select(Team).where(Team.merged_into_id.is_(None)).order_by(Team.name)).scalars()
    return [
        {
            "name": t.name,
            "display_name": t.display_name,
            "members": [m.user for m in t.members],
            "region": t.region or "",
            "created_at": t.created_at.isoformat(),
        }
        for t in teams
    ]
