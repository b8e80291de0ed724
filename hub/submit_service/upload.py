"""``POST api/challenges/{id}/submissions``: a file streamed to disk, checked against the team's
quota, rate and storage before its first byte is kept, and accepted in one transaction."""

from __future__ import annotations

import logging
import re

from tornado import ioloop, web

from hub.submit_service.base import Base
from leaderboard import submissions
from leaderboard.store import StorageFailed, UploadTooLarge, store_unavailable
from sandbox.errors import ContesthubError
from sandbox.submission_checks import TOO_LARGE_WHAT_TO_DO

log = logging.getLogger("contesthub.submit")


# A refused upload's body (no token, unknown challenge, over the size limit, ...) is still read
# up to this size and dropped as it arrives, so the client, and the hub's proxy in between,
# finish sending and then read the JSON refusal. HTTP/1.1 clients read no answer before their
# body is sent: a server that answers and hangs up mid-body leaves them a reset connection (the
# proxy turns it into its own 503 page). A body declared larger than this gets the refusal at
# once and the connection is closed.
DRAIN_LIMIT = 1 << 30


@web.stream_request_body
class UploadHandler(Base):
    """``POST api/challenges/{id}/submissions``: the raw file as the body, streamed to disk.

    Nothing of the body is held in memory: each piece goes to the upload sink (hashed and
    counted, refused past the contest's limit) or, once the upload is refused, nowhere.
    """

    sink = None
    refused: BaseException | None = None
    uploader_team: tuple[int, str] | None = None  # (id, name) of the uploader's team, found before the body

    async def prepare(self) -> None:
        if self.request.method != "POST":
            await super().prepare()
            return  # answered with 405 by tornado; no upload is opened
        limit = self.ctx.contest.upload_limit
        length = _content_length(self.request)
        try:
            await super().prepare()
            ch = self.ctx.contest.challenge(self.path_args[0])  # an unknown challenge fails before any byte is stored
            if length is not None and length > limit:
                raise UploadTooLarge(
                    f"the file is {length / (1 << 20):.1f} MiB; the limit is {limit >> 20} MiB; "
                    + TOO_LARGE_WHAT_TO_DO[0],
                    f"文件大小为 {length / (1 << 20):.1f} MiB，超过上限 {limit >> 20} MiB；" + TOO_LARGE_WHAT_TO_DO[1],
                )
            if length != 0:  # (an empty body is refused as such in post())
                # Before a byte is stored, in a read (joining the identity provider's team first): a
                # closed challenge, a used-up quota, a team uploading too fast or out of storage.
                self.uploader_team = await self.in_team(lambda s, team: self._precheck(s, team, ch.id, length))
        except Exception as exc:
            if not (isinstance(exc, ContesthubError) or store_unavailable(exc)) or (
                length is not None and length > DRAIN_LIMIT
            ):
                raise
            self.refused = exc  # answered in post(), once the body has been read and dropped
            self.request.connection.set_max_body_size(DRAIN_LIMIT)
            return
        # Without a Content-Length (chunked), the sink enforces the limit and the rest is dropped.
        self.request.connection.set_max_body_size(limit + 1 if length is not None else DRAIN_LIMIT)
        self.sink = self.ctx.store.files.open_upload(limit)

    def _precheck(self, session, team, ch_id: str, size: int | None) -> tuple[int, str]:
        submissions.precheck(session, self.ctx.contest, team, ch_id, size=size)
        return team.id, team.name

    def data_received(self, chunk: bytes) -> None:
        if self.sink is None:
            return  # refused: the rest of the body is dropped
        try:
            self.sink.write(chunk)
        except (UploadTooLarge, StorageFailed) as exc:  # the sink has deleted what it had written
            self.sink, self.refused = None, exc

    def on_connection_close(self) -> None:
        self._abort()  # the client went away mid-upload: no partial file remains
        super().on_connection_close()

    def on_finish(self) -> None:
        self._abort()  # whatever ended the request, no upload is left in the upload area

    def _abort(self) -> None:
        sink, self.sink = self.sink, None
        if sink is not None:
            sink.abort()

    async def post(self, ch_id: str) -> None:
        if self.refused is not None:
            raise self.refused
        # The whole body is in: from here on the upload is this method's (nothing else deletes it).
        upload, self.sink = self.sink.close(), None
        if upload.size == 0 or self.uploader_team is None:
            upload.path.unlink(missing_ok=True)
            raise ContesthubError("the upload is empty", "上传的文件为空", code="empty-file")
        provenance = {k: self.get_query_argument(k, None) for k in ("notebook", "kernel", "sandbox_version", "client")}
        file_name = _safe_name(self.get_query_argument("file_name", "") or "submission")
        team_id, team_name = self.uploader_team
        # Charged, recorded and kept (or refused, and deleted); the scorer pool takes it from the store.
        try:  # the slow part of keeping it (an fsync), in parallel with other uploads' and outside any lock
            await ioloop.IOLoop.current().run_in_executor(self.ctx.disk, self.ctx.store.files.stage, upload)
        except OSError as exc:
            upload.path.unlink(missing_ok=True)
            log.error("an upload of %s could not be written: %s", self.user, exc)
            raise StorageFailed() from None
        incoming = submissions.Incoming(self.user, ch_id, upload, file_name, provenance, staged=True)
        sub = await self.ctx.accept(incoming)
        # As accepted (no score yet), without reading it back: a merge of the team in between
        # would make that read refuse a submission that is charged and kept.
        doc = submissions.public_view(sub, None, team=team_name)
        self.ctx.pending.add(doc, team_id, self.user)  # its polls are answered from memory
        self.send(doc, status=202)


def _content_length(request) -> int | None:
    """The declared body size, or None for a chunked body (tornado has refused malformed values)."""
    value = request.headers.get("Content-Length")
    return int(value) if value is not None else None


def _safe_name(name: str) -> str:
    """The file's base name as the client gave it, without paths or control characters."""
    base = re.split(r"[\\/]", name)[-1]
    return re.sub(r"[\x00-\x1f\x7f]", "", base)[:255] or "submission"


default_handlers = [
    (r"/challenges/([\w-]+)/submissions", UploadHandler),
]
