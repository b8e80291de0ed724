"""Contestants' endpoints: who am I, the challenges, a team's submissions (with the long poll
for a score), the final selection and the public leaderboard."""

from __future__ import annotations

import logging
import time

from hub.submit_service.base import Base, Refusal, is_int, row_id
from leaderboard import provenance, ranking, submissions
from leaderboard.publish import public_challenge
from sandbox import statuses

log = logging.getLogger("contesthub.submit")


class MeHandler(Base):
    async def get(self) -> None:
        contest = self.ctx.contest

        def team_doc(s, team) -> dict:
            return {
                "team": {
                    "name": team.name,
                    "display_name": team.display_name,
                    "members": [m.user for m in team.members],
                },
                "quotas": [submissions.quota(s, contest, team, ch.id) for ch in contest.challenges],
            }

        try:
            doc = await self.in_team(team_doc)  # joins the identity provider's team on first contact
        except Refusal as exc:
            if exc.code != "no-team":
                raise
            doc = {"team": None, "quotas": []}
        self.send({"user": self.user, "organizer": self.organizer, **doc})


class ChallengesHandler(Base):
    def get(self) -> None:
        self.send([public_challenge(ch) for ch in self.ctx.contest.challenges])


class SubmissionsHandler(Base):
    async def get(self) -> None:
        challenge = self.get_query_argument("challenge", None)
        self.send(await self.in_team(lambda s, team: submissions.for_team(s, team, challenge), poll=True))


# The longest a client may ask the service to hold its poll (``?wait=``, seconds).
MAX_WAIT = 30


class SubmissionHandler(Base):
    """``GET api/submissions/{id}[?wait=seconds]``: the submission as its team sees it.

    While it is pending the answer comes from the service's watch (no store transaction); with
    ``wait`` the service holds the request until it is finished or ``wait`` seconds have passed
    (a long poll: ``sandbox.submit`` asks once per submission instead of twice a second)."""

    async def get(self, submission_id: str) -> None:
        sid = row_id(submission_id, "submission", "提交")
        wait = self.get_query_argument("wait", "0")
        if not (wait.isascii() and wait.isdigit() and int(wait) <= MAX_WAIT):
            raise Refusal(400, "bad-query", f"wait must be 0–{MAX_WAIT} seconds", f"wait 须为 0–{MAX_WAIT} 秒")
        deadline = time.monotonic() + int(wait)
        while True:
            doc = self.ctx.pending.answer(sid, self.user)  # still pending at the last refresh: no store transaction
            if doc is None:
                doc, team_id = await self.in_team(
                    lambda s, team: (submissions.one_for_team(s, team, sid), team.id), poll=True
                )
                self.ctx.pending.add(doc, team_id, self.user)  # pending: its next polls are answered from memory
            left = deadline - time.monotonic()
            if doc["status"] not in statuses.PENDING or left <= 0 or self.request.connection.stream.closed():
                break
            await self.ctx.until_finished(sid, left)
        self.send(doc)


class SelectionHandler(Base):
    async def put(self, ch_id: str) -> None:
        ids = self.body_json().get("submissions")
        if not isinstance(ids, list) or not all(is_int(i) for i in ids):
            raise Refusal(400, "bad-selection", 'send {"submissions": [ids]}', '请发送 {"submissions": [编号]}')

        def select() -> list[int]:
            with self.ctx.store.session() as s:
                self.team(s)
                return submissions.select_final(s, self.ctx.contest, self.user, ch_id, ids)

        chosen = await self.ctx.write(select)
        self.send({"challenge": ch_id, "selected": chosen})


class LeaderboardHandler(Base):
    async def get(self, ch_id: str) -> None:
        ch = self.ctx.contest.challenge(ch_id)

        def standings() -> dict:
            with self.ctx.store.read_session() as s:
                rows = ranking.public_standings(s, ch)
                private = ranking.private_standings(s, ch) if ranking.revealed(s, ch.id) else None
            return {"challenge": ch.id, "public": rows, "private": private}

        # The same for every caller: computed at most once a second however many ask.
        self.send(await self.ctx.board(ch.id, standings))


class ProvenanceHandler(Base):
    """``POST api/submissions/{id}/provenance``: the notebook, packages and tables read, sent by
    ``sandbox.submit`` right after its upload; kept once (leaderboard/provenance.py)."""

    async def post(self, submission_id: str) -> None:
        sid = row_id(submission_id, "submission", "提交")
        doc = self.body_json()
        kept = await self.ctx.write(provenance.attach, self.ctx.store, self.user, sid, doc)
        self.send(kept, status=201)


default_handlers = [
    (r"/me", MeHandler),
    (r"/challenges", ChallengesHandler),
    (r"/challenges/([\w-]+)/selection", SelectionHandler),
    (r"/challenges/([\w-]+)/leaderboard", LeaderboardHandler),
    (r"/submissions", SubmissionsHandler),
    (r"/submissions/(\d+)", SubmissionHandler),
    (r"/submissions/(\d+)/provenance", ProvenanceHandler),
]
