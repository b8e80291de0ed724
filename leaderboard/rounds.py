"""Rounds that gate: 初赛 → 复赛 → 决赛.

A contest file's ``[[rounds]]`` group its challenges (see :mod:`leaderboard.contest`). The first
round is open to every team; a later round admits only the teams the round before it
*advanced*. Advancing is one recorded organizer action, ``contesthub rounds advance ROUND``,
allowed once every challenge of ROUND is revealed (its final rankings are public): it applies
the round's rule to the final rankings and writes one ``advancements`` row per team and one
audit entry naming them all. A refused team spends nothing: the check runs before the quota is
charged (:func:`leaderboard.submissions.accept`).

The rule: ``top`` teams of each challenge's final ranking (``by = "challenge"``; a team that
made it on several challenges is listed once), or the ``top`` best sums of final ranks over
the round's challenges (``by = "rank_sum"``; a team missing from a challenge counts as one place
behind that ranking's last; equal sums go to the better single rank, then the team name).
With ``per_region`` the rule applies within each region (赛区) the teams carry; a team without
a region is in the region ``""``. Final rankings break equal scores by the earlier submission
(leaderboard/ranking.py), so ``top`` teams means exactly that many, whatever the ties.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict

from sqlalchemy import select
from sqlalchemy.orm import Session

from leaderboard import audit, ranking
from leaderboard.contest import Contest, Round
from leaderboard.models import Advancement, Team
from sandbox import clock
from sandbox.errors import ContesthubError


class RoundError(ContesthubError):
    code = "round-invalid"


def gate(session: Session, contest: Contest, team_id: int, challenge_id: str) -> Round | None:
    """The round that does not admit this team to ``challenge_id``, or None when it may play."""
    rnd = contest.round_of(challenge_id)
    if rnd is None or contest.previous_round(rnd.id) is None:
        return None
    return None if session.get(Advancement, (rnd.id, team_id)) is not None else rnd


def advanced(session: Session, round_id: str) -> list[dict]:
    """The teams admitted to ``round_id`` (empty for the first round: every team may enter)."""
    rows = session.execute(
        select(Advancement, Team.name, Team.display_name)
        .join(Team, Team.id == Advancement.team_id)
        .where(Advancement.round == round_id)
        .order_by(Advancement.region, Team.name)
    ).all()
    return [
        {
            "team": name,
            "display_name": display,
            "region": a.region or "",
            "from_round": a.from_round,
            "basis": dict(a.basis or {}),
            "at": a.at,
            "by": a.by,
        }
        for a, name, display in rows
    ]


def _regions(session: Session) -> dict[str, str]:
    return {n: r or "" for n, r in session.execute(select(Team.name, Team.region)).all()}


def decide(session: Session, contest: Contest, round_id: str) -> list[dict]:
    """Who the rule of ``round_id`` advances, from its final rankings (organizer view; nothing written).

    Each: ``team``, ``region`` and ``basis`` (why)."""
    rnd = contest.round(round_id)
    if rnd.advance is None:
        raise RoundError(
            f"round {rnd.id} is the last round: nobody advances from it",
            f"{rnd.title['zh']} 是最后一轮，没有晋级",
            code="no-next-round",
        )
    rule = rnd.advance
    region = _regions(session)
    boards = {cid: ranking.private_standings(session, contest.challenge(cid), organizer=True) for cid in rnd.challenges}

    def group(team: str) -> str:
        return region.get(team, "") if rule.per_region else ""

    chosen: dict[str, dict] = {}
    if rule.by == "challenge":
        for cid, rows in boards.items():
            taken: dict[str, int] = defaultdict(int)
            for r in rows:
                g = group(r["team"])
                if taken[g] < rule.top:
                    taken[g] += 1
                    chosen.setdefault(r["team"], {"challenge": cid, "rank": r["rank"], "region_rank": taken[g]})
    else:
        ranks: dict[str, dict[str, int]] = defaultdict(dict)
        for cid, rows in boards.items():
            for r in rows:
                ranks[r["team"]][cid] = r["rank"]
        sums = {team: {cid: got.get(cid, len(boards[cid]) + 1) for cid in boards} for team, got in ranks.items()}
        order = sorted(sums, key=lambda team: (sum(sums[team].values()), min(sums[team].values()), team))
        taken = defaultdict(int)
        for team in order:
            g = group(team)
            if taken[g] < rule.top:
                taken[g] += 1
                chosen[team] = {"rank_sum": sum(sums[team].values()), "ranks": sums[team], "region_rank": taken[g]}
    return [{"team": team, "region": region.get(team, ""), "basis": basis} for team, basis in chosen.items()]


def advance(
    session: Session, contest: Contest, round_id: str, *, by: str, now: dt.datetime | None = None
) -> list[dict]:
    """Record who enters the round after ``round_id`` (once, after all its challenges are revealed)."""
    now = now or clock.now()
    rnd = contest.round(round_id)
    nxt = contest.next_round(rnd.id)
    sealed = [cid for cid in rnd.challenges if ranking.revealed(session, cid) is None]
    if sealed:
        raise RoundError(
            f"round {rnd.id}: reveal {', '.join(sealed)} first; teams advance on the final rankings",
            f"{rnd.title['zh']}：请先公布 {', '.join(sealed)}；晋级依据最终排名",
            code="round-not-revealed",
        )
    if nxt is None or rnd.advance is None:
        raise RoundError(
            f"round {rnd.id} is the last round: nobody advances from it",
            f"{rnd.title['zh']} 是最后一轮，没有晋级",
            code="no-next-round",
        )
    if session.execute(select(Advancement.team_id).where(Advancement.from_round == rnd.id).limit(1)).first():
        raise RoundError(
            f"round {rnd.id} has already advanced its teams to {nxt.id}",
            f"{rnd.title['zh']} 的晋级名单已经确定",
            code="already-advanced",
        )
    chosen = decide(session, contest, rnd.id)
    ids = dict(session.execute(select(Team.name, Team.id)).all())
    for c in chosen:
        session.add(
            Advancement(
                round=nxt.id,
                team_id=ids[c["team"]],
                from_round=rnd.id,
                region=c["region"] or None,
                basis=c["basis"],
                at=now,
                by=by,
            )
        )
    session.flush()
    audit.record(
        session,
        by,
        "round.advance",
        rnd.id,
        {
            "to": nxt.id,
            "rule": {"top": rnd.advance.top, "by": rnd.advance.by, "per_region": rnd.advance.per_region},
            "teams": sorted(c["team"] for c in chosen),
        },
    )
    return chosen
