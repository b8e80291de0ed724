"""One error hierarchy for every surface.

Every failure a user can cause is a :class:`ContesthubError` with a stable ``code`` and a
message in Chinese and English that says what was wrong and what to do. The CLI prints it
as one line and exits 1; services turn it into ``{"status", "code", "message"}`` JSON.
Anything else that escapes is a bug and may show a traceback to organizers only.
"""

from __future__ import annotations

from dataclasses import dataclass


class ContesthubError(Exception):
    """A failure caused by input or state the user can fix."""

    code = "error"
    # The HTTP status a service answers it with (a refusal of the request as sent, unless a
    # subclass says otherwise: 404 for what does not exist, 429 for too many, ...).
    http_status = 400

    def __init__(self, en: str, zh: str | None = None, *, code: str | None = None, details: object = None):
        super().__init__(en)
        self.en = en
        self.zh = zh or en
        if code:
            self.code = code
        self.details = details

    def message(self, lang: str = "zh") -> str:
        return self.zh if lang.startswith("zh") else self.en

    def to_dict(self, lang: str = "zh") -> dict:
        return {"code": self.code, "message": self.message(lang), "message_en": self.en, "message_zh": self.zh}


class NotFound(ContesthubError):
    code = "not-found"
    http_status = 404


@dataclass(frozen=True)
class Problem:
    """One mistake in a file a person wrote: where it is, what is wrong, what is expected."""

    file: str
    path: str
    what: str
    expected: str = ""

    def __str__(self) -> str:
        tail = f"; expected {self.expected}" if self.expected else ""
        return f"{self.file}: {self.path or '(top level)'}: {self.what}{tail}"


class ProblemsError(ContesthubError):
    """Mistakes in a file a person wrote, all of them at once, each with its place."""

    what_en, what_zh = "the file", "文件"

    def __init__(self, problems: list[Problem]):
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        n = len(self.problems)
        super().__init__(
            f"{n} problem(s) in {self.what_en}:\n{lines}",
            f"{self.what_zh}有 {n} 处问题：\n{lines}",
            details=[p.__dict__ for p in self.problems],
        )


class DescriptorError(ProblemsError):
    """A dataset descriptor (``datasets/<id>/dataset.yaml``) has mistakes."""

    code = "descriptor-invalid"
    what_en, what_zh = "dataset descriptors", "数据集描述文件"


class SourceError(ContesthubError):
    """The raw source of a table cannot be read at all (encoding, format, header)."""

    code = "source-error"


class QualityGateError(ContesthubError):
    """Rows failed validation and the descriptor says bad rows fail the build."""

    code = "quality-gate"


class PrivacyGateError(ContesthubError):
    """Publishing would reveal a group smaller than k, or an identifier is not de-identified."""

    code = "privacy-gate"
