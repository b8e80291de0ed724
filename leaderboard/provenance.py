"""A submission's provenance, as its kernel reported it (``sandbox/provenance.py`` sends it).

Kept once per submission, by the contestant who uploaded it, in ``submission_provenance``:
the notebook's name, the digest and size of its saved file, and its content in the file store
(content-addressed, immutable, like submission files), the environment's package list with its
digest, the Python version, and the datasets, versions and tables the kernel read. Every field
is checked and bounded here (the service's 1 MiB body limit bounds the whole). The team sees its
own on the team page; organizers see everyone's.
"""

from __future__ import annotations

import io
import re

from sqlalchemy import select
from sqlalchemy.orm import Session

from leaderboard import teams
from leaderboard.models import Submission, SubmissionProvenance
from leaderboard.store import Store
from sandbox.errors import ContesthubError, NotFound


class ProvenanceRecorded(ContesthubError):
    """A submission's provenance is sent once: a second one conflicts with what is kept."""

    code = "provenance-recorded"
    http_status = 409


MAX_NOTEBOOK = 768 * 1024
MAX_PACKAGES, MAX_PACKAGE_TEXT = 2000, 200
MAX_READS = 200
HEX64 = re.compile(r"[0-9a-f]{64}")
CONTROL = re.compile(r"[\x00-\x1f\x7f]")  # no database stores a NUL in a text column; none belongs in a name
MAX_SIZE = 1 << 40


class BadProvenance(ContesthubError):
    code = "bad-provenance"


def _bad(field: str, en: str, zh: str) -> BadProvenance:
    return BadProvenance(f"provenance field {field!r}: {en}", f"来源信息字段 {field!r}：{zh}")


def _text(doc: dict, field: str, limit: int, *, required: bool = False) -> str | None:
    value = doc.get(field)
    if value is None and not required:
        return None
    if not isinstance(value, str) or len(value) > limit:
        raise _bad(field, f"must be text of at most {limit} characters", f"须为不超过 {limit} 个字符的文本")
    if field != "content" and CONTROL.search(value):
        raise _bad(field, "must not hold control characters", "不能包含控制字符")
    return value


def _digest(doc: dict, field: str) -> str:
    value = doc.get(field)
    if not isinstance(value, str) or not HEX64.fullmatch(value):
        raise _bad(field, "must be a SHA-256 in 64 lowercase hex digits", "须为 64 位小写十六进制的 SHA-256")
    return value


def clean(doc: object) -> dict:
    """The provenance a kernel sent, checked field by field (raises BadProvenance naming the field)."""
    if not isinstance(doc, dict):
        raise _bad("(body)", "must be a JSON object", "须为 JSON 对象")
    packages = doc.get("packages")
    if not isinstance(packages, list) or len(packages) > MAX_PACKAGES:
        raise _bad("packages", f"must be a list of at most {MAX_PACKAGES} entries", f"须为至多 {MAX_PACKAGES} 项的列表")
    if not all(isinstance(p, str) and len(p) <= MAX_PACKAGE_TEXT and not CONTROL.search(p) for p in packages):
        raise _bad("packages", f"each entry: text of at most {MAX_PACKAGE_TEXT} characters", "每项须为短文本")
    reads = doc.get("reads", [])
    if not isinstance(reads, list) or len(reads) > MAX_READS:
        raise _bad("reads", f"must be a list of at most {MAX_READS} entries", f"须为不超过 {MAX_READS} 项的列表")
    clean_reads = []
    for r in reads:
        if not (
            isinstance(r, dict)
            and isinstance(r.get("dataset"), str)
            and isinstance(r.get("table"), str)
            and isinstance(r.get("version"), int)
            and not isinstance(r.get("version"), bool)
            and 0 <= r["version"] < MAX_SIZE
            and len(r["dataset"]) <= 64
            and len(r["table"]) <= 128
            and not CONTROL.search(r["dataset"] + r["table"])
        ):
            raise _bad("reads", "each entry: {dataset, version, table}", "每项须为 {dataset, version, table}")
        clean_reads.append({"dataset": r["dataset"], "version": r["version"], "table": r["table"]})
    out = {
        "packages": packages,
        "packages_sha256": _digest(doc, "packages_sha256"),
        "python": _text(doc, "python", 32) or "",
        "reads": clean_reads,
        "notebook": None,
    }
    nb = doc.get("notebook")
    if nb is not None:
        if not isinstance(nb, dict):
            raise _bad("notebook", "must be an object", "须为对象")
        size = nb.get("size")
        if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size < MAX_SIZE:
            raise _bad("notebook.size", "must be a whole number of bytes", "须为字节数（整数）")
        content = _text(nb, "content", MAX_NOTEBOOK)
        if content is not None and len(content.encode("utf-8")) > MAX_NOTEBOOK:
            raise _bad("notebook.content", f"is larger than {MAX_NOTEBOOK} bytes", f"超过 {MAX_NOTEBOOK} 字节")
        out["notebook"] = {
            "name": _text(nb, "name", 255, required=True),
            "sha256": _digest(nb, "sha256"),
            "size": size,
            "content": content,
            "outputs_stripped": bool(nb.get("outputs_stripped", False)),
        }
    return out


def attach(store: Store, user: str, submission_id: int, doc: object) -> dict:
    """Keep the provenance of ``user``'s own submission (once). The notebook's content goes to
    the file store first: content-addressed, so a transaction that then fails leaves nothing wrong."""
    prov = clean(doc)
    nb = prov["notebook"]
    stored = None
    if nb is not None and nb["content"] is not None:
        data = nb["content"].encode("utf-8")
        upload = store.files.receive(io.BytesIO(data), MAX_NOTEBOOK)
        store.files.keep(upload)
        stored = upload.sha256
    with store.session() as s:
        team = teams.team_of(s, user)
        sub = s.get(Submission, submission_id)
        if sub is None or team is None or sub.team_id != team.id or sub.user != user:
            raise NotFound(
                f"no submission {submission_id} of yours", f"你没有编号为 {submission_id} 的提交"
            )  # another's submission looks exactly like a missing one
        if s.get(SubmissionProvenance, submission_id) is not None:
            raise ProvenanceRecorded(
                f"the provenance of submission {submission_id} is already recorded",
                f"提交 {submission_id} 的来源信息已记录",
            )
        row = SubmissionProvenance(
            submission_id=submission_id,
            notebook_name=nb["name"] if nb else None,
            notebook_sha256=nb["sha256"] if nb else None,
            notebook_size=nb["size"] if nb else None,
            notebook_stored=stored,
            outputs_stripped=bool(nb and nb["outputs_stripped"]),
            packages_sha256=prov["packages_sha256"],
            packages=prov["packages"],
            python=prov["python"],
            reads=prov["reads"],
        )
        s.add(row)
        s.flush()
        return view(row)


def view(row: SubmissionProvenance) -> dict:
    return {
        "submission_id": row.submission_id,
        "notebook": row.notebook_name,
        "notebook_sha256": row.notebook_sha256,
        "notebook_size": row.notebook_size,
        "notebook_stored": row.notebook_stored,
        "outputs_stripped": row.outputs_stripped,
        "packages_sha256": row.packages_sha256,
        "packages": len(row.packages),
        "python": row.python,
        "reads": row.reads,
        "recorded_at": row.recorded_at.isoformat() if row.recorded_at else None,
    }


def of(session: Session, submission_ids: list[int]) -> dict[int, dict]:
    """The provenance of these submissions that have one, by submission id."""
    if not submission_ids:
        return {}
    rows = session.execute(
        select(SubmissionProvenance).where(SubmissionProvenance.submission_id.in_(list(submission_ids)))
    ).scalars()
    return {r.submission_id: view(r) for r in rows}
