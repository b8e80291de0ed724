"""What became of a submission: the five statuses, named once.

The store (``submissions.status``), the submission service's JSON, the contestant's
``sandbox.submit``, the CLI, the pages and the benchmarks all speak of these; a submission moves
``received -> validating -> scored | invalid | error`` (a scorer that died puts it back to
``received``). Plain strings, not an enum: they are stored and sent as they are.
"""

from __future__ import annotations

RECEIVED = "received"  # accepted and stored, waiting for a scorer
VALIDATING = "validating"  # a scorer holds it
SCORED = "scored"
INVALID = "invalid"  # the file broke a rule; its errors say which
ERROR = "error"  # the platform failed it (a scorer kept dying, the file was damaged); refunded

ALL = (RECEIVED, VALIDATING, SCORED, INVALID, ERROR)
PENDING = (RECEIVED, VALIDATING)  # not finished: a client keeps asking
FINISHED = (SCORED, INVALID, ERROR)
REFUSED = (INVALID, ERROR)  # finished without a score
COUNTED = (RECEIVED, VALIDATING, SCORED)  # hold a unit of the daily quota
