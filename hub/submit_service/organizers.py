"""Organizers' endpoints (``api/admin/...``): submissions of every team, teams and their
members, quota grants, the reveal, the private ranking and rescoring. Each handler checks
:meth:`Base.require_organizer` first, and does its work through :mod:`leaderboard.organizer`
or the contest engine, as the CLI does."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from functools import partial

from hub import scorer
from hub.submit_service.base import Base, Refusal, is_int, row_id, text_field
from leaderboard import organizer, ranking, submissions, teams
from leaderboard.scoring import ScoreResult
from sandbox import statuses

log = logging.getLogger("contesthub.submit")
MAX_GRANT = 100_000  # extra submissions an organizer can grant a team in one go
STATUSES = statuses.ALL


class AdminSubmissionsHandler(Base):
    async def get(self) -> None:
        self.require_organizer()

        limit = self.get_query_argument("limit", "200")
        status = self.get_query_argument("status", None)
        if not (limit.isascii() and limit.isdigit() and 1 <= int(limit) <= 5000) or status not in (None, *STATUSES):
            raise Refusal(
                400,
                "bad-query",
                f"limit must be 1–5000 and status one of {', '.join(STATUSES)}",
                f"limit 须为 1–5000，status 须为 {', '.join(STATUSES)} 之一",
            )
        challenge = self.get_query_argument("challenge", None)

        def listing() -> list[dict]:
            with self.ctx.store.read_session() as s:
                return organizer.submission_listing(s, challenge=challenge, status=status, limit=int(limit))

        self.send(await self.ctx.read(listing))


class GrantHandler(Base):
    async def post(self, team_name: str) -> None:
        self.require_organizer()
        doc = self.body_json()
        challenge = text_field(doc, "challenge", "grant-invalid")
        reason = text_field(doc, "reason", "grant-invalid")
        day_text = text_field(doc, "day", "grant-invalid", required=False)
        extra = doc.get("extra")
        try:
            day = dt.date.fromisoformat(day_text) if day_text else None
        except ValueError:
            day = False
        if not is_int(extra, 1, MAX_GRANT) or day is False:
            raise Refusal(
                400,
                "grant-invalid",
                f'send {{"challenge", "extra": 1–{MAX_GRANT}, "reason", "day": "YYYY-MM-DD" (optional)}}',
                f'请发送 {{"challenge", "extra": 1–{MAX_GRANT}, "reason", "day": "YYYY-MM-DD"（可选）}}',
            )

        def grant() -> dict:
            with self.ctx.store.session() as s:
                g = submissions.grant(
                    s, self.ctx.contest, team_name, challenge, extra, reason=reason, by=self.user, day=day
                )
                return {"team": team_name, "challenge": g.challenge, "day": g.day, "extra": g.extra, "reason": g.reason}

        self.send(await self.ctx.write(grant), 201)


class TeamsHandler(Base):
    """Organizers: list teams, or create one (``{"name", "display_name"?, "members"?}``)."""

    async def get(self) -> None:
        self.require_organizer()
        self.send(await self.ctx.read(self._listing))

    def _listing(self) -> list[dict]:
        with self.ctx.store.read_session() as s:
            return teams.listing(s)

    async def post(self) -> None:
        self.require_organizer()
        doc = self.body_json()
        name = text_field(doc, "name", "team-name-invalid")
        display_name = text_field(doc, "display_name", "team-name-invalid", required=False)
        members = doc.get("members") or []
        if not isinstance(members, list) or not all(isinstance(m, str) and m.strip() for m in members):
            raise Refusal(400, "bad-members", "members must be a list of user names", "members 必须是用户名列表")

        def create() -> str:
            with self.ctx.store.session() as s:
                return teams.create(
                    s, self.ctx.contest, name, actor=self.user, display_name=display_name, members=tuple(members)
                ).name

        name = await self.ctx.write(create)
        self.ctx.sync_groups_later()
        listing = await self.ctx.read(self._listing)
        self.send(next(t for t in listing if t["name"] == name), 201)


class TeamMembersHandler(Base):
    """Organizers: ``POST {"user"}`` adds a member, ``DELETE .../members/<user>`` removes one."""

    async def post(self, team_name: str) -> None:
        self.require_organizer()
        user = text_field(self.body_json(), "user", "bad-members")
        await self.ctx.write(self._change, teams.add_member, team_name, user)
        self.ctx.sync_groups_later()
        self.send({"team": team_name, "added": user}, 201)

    async def delete(self, team_name: str, user: str) -> None:
        self.require_organizer()
        await self.ctx.write(self._change, teams.remove_member, team_name, user)
        self.ctx.sync_groups_later()
        self.send({"team": team_name, "removed": user})

    def _change(self, change, team_name: str, user: str) -> None:
        with self.ctx.store.session() as s:
            change(s, self.ctx.contest, team_name, user, actor=self.user)


class TeamMergeHandler(Base):
    """Organizers: ``POST {"other"}`` merges team ``other`` into this one (Kaggle's quota rule)."""

    async def post(self, team_name: str) -> None:
        self.require_organizer()
        other = text_field(self.body_json(), "other", "merge-invalid")

        def merge() -> list[str]:
            with self.ctx.store.session() as s:
                merged = teams.merge(s, self.ctx.contest, team_name, other, actor=self.user)
                return [m.user for m in merged.members]

        members = await self.ctx.write(merge)
        self.ctx.sync_groups_later()
        self.send({"team": team_name, "merged": other, "members": members})


class RevealHandler(Base):
    async def post(self, ch_id: str) -> None:
        self.require_organizer()

        # Intervals and tied groups take a while: computed in the background, read by the pages.
        ctx = self.ctx
        done = await ctx.write(
            organizer.reveal, ctx.store, ctx.contest, ctx.paths, ch_id, by=self.user, report_in=ctx.jobs
        )
        self.send(done, 201)


class PrivateStandingsHandler(Base):
    async def get(self, ch_id: str) -> None:
        self.require_organizer()
        ch = self.ctx.contest.challenge(ch_id)

        def standings() -> list[dict]:
            with self.ctx.store.read_session() as s:
                return ranking.private_standings(s, ch, organizer=True)

        self.send(await self.ctx.read(standings))


class RescoreHandler(Base):
    async def post(self, ch_id: str) -> None:
        self.require_organizer()
        reason = self.body_json().get("reason")
        if not isinstance(reason, str) or not reason.strip():
            raise Refusal(400, "reason-required", "say why you rescore (reason)", "请说明重新评分的原因（reason）")
        reason = reason.strip()
        run = partial(self._rescore, ch_id, reason)
        result = await asyncio.get_running_loop().run_in_executor(self.ctx.jobs, run)
        self.send(organizer.rescore_summary(result), 201)

    def _rescore(self, ch_id: str, reason: str) -> ranking.RescoreResult:
        """(the jobs thread) Every file scored as the scorer pool scores: in a child process with limits."""
        ctx = self.ctx
        child = scorer.ScoringChild(scorer.Limits.from_env(), scorer.spill_folder(ctx.paths, "rescore"))

        def score(ch, path, paths) -> ScoreResult:
            outcome = child.run(scorer.score_in, ch, path, paths)
            if outcome.result is not None:
                return outcome.result
            why = outcome.error.en if outcome.error is not None else f"the scoring process died ({outcome.died})"
            log.error("rescoring %s: %s", path.name, why)
            return ScoreResult(valid=False, errors=[{"code": "scoring-failed", "message_en": why}])

        try:
            return ranking.rescore(ctx.store, ctx.contest, ctx.paths, ch_id, by=self.user, reason=reason, score=score)
        finally:
            child.close()


class RescoreDecisionHandler(Base):
    async def post(self, rescore_id: str) -> None:
        self.require_organizer()
        publish = self.body_json().get("publish")
        if not isinstance(publish, bool):
            raise Refusal(
                400,
                "bad-decision",
                'send {"publish": true} or {"publish": false}',
                '请发送 {"publish": true} 或 {"publish": false}',
            )
        rid = row_id(rescore_id, "pending rescore", "待确认的重新评分")

        self.send(await self.ctx.write(organizer.decide_rescore, self.ctx.store, rid, by=self.user, publish=publish))


default_handlers = [
    (r"/admin/submissions", AdminSubmissionsHandler),
    (r"/admin/teams", TeamsHandler),
    (r"/admin/teams/([^/]+)/members", TeamMembersHandler),
    (r"/admin/teams/([^/]+)/members/([^/]+)", TeamMembersHandler),
    (r"/admin/teams/([^/]+)/merge", TeamMergeHandler),
    (r"/admin/teams/([^/]+)/grants", GrantHandler),
    (r"/admin/challenges/([\w-]+)/reveal", RevealHandler),
    (r"/admin/challenges/([\w-]+)/private", PrivateStandingsHandler),
    (r"/admin/challenges/([\w-]+)/rescores", RescoreHandler),
    (r"/admin/rescores/(\d+)", RescoreDecisionHandler),
]
