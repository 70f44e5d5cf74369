"""Webin's records: submitted objects, receipts, counters, and the receipts' fixed messages."""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from ._doc import ObjectKind

__all__ = [
    "DEFAULT_WEBIN_ACCOUNTS",
    "HOLD_INFO",
    "ROLLED_BACK",
    "TEST_INFO",
    "Receipt",
    "ReceiptObject",
    "WebinObject",
    "WebinStats",
]

#: The emulator's one default account (the docs write Webin-xxxx).
DEFAULT_WEBIN_ACCOUNTS: Mapping[str, str] = MappingProxyType({"Webin-12345": "webin-password"})
# The receipts' messages, word for word as the test service writes them.
TEST_INFO = "This submission is a TEST submission and will be discarded within 24 hours"
HOLD_INFO = "All objects in this submission are set to private status (HOLD)."
ROLLED_BACK = "Submission has been rolled back."


@dataclass(frozen=True, kw_only=True, slots=True)
class WebinObject:
    """An object a Webin account has submitted (``emu.webin.objects()``)."""

    account: str
    kind: str  # "project", "study", "sample", "experiment", "run" or "analysis"
    alias: str
    accession: str
    external_accession: str = ""  # a sample's SAMEA, a project's ERP, a study's PRJEB
    status: str = "PRIVATE"
    hold_until: datetime.date | None = None
    submission: str = ""  # the ERA of the submission that added it


@dataclass(frozen=True, kw_only=True, slots=True)
class ReceiptObject:
    kind: ObjectKind
    alias: str
    accession: str = ""  # empty: not assigned (a failed or VALIDATE submission)
    external_accession: str = ""
    status: str = "PRIVATE"
    hold_until: datetime.date | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class Receipt:
    success: bool
    date: datetime.datetime
    objects: tuple[ReceiptObject, ...] = ()
    submission_alias: str = ""
    submission_accession: str = ""
    errors: tuple[str, ...] = ()
    infos: tuple[str, ...] = ()
    actions: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True, slots=True)
class WebinStats:
    """Counters since the emulator started (``emu.webin.stats()``).

    ``submits``: documents POSTed to ``/submit``; ``queued``: to ``/submit/queue``;
    ``polls``: authorised polls of a known id; ``receipts``: receipts handed out
    (every sync answer, every poll answered 200); ``unauthorized``: 401 answers.
    """

    submits: int = 0
    queued: int = 0
    polls: int = 0
    receipts: int = 0
    unauthorized: int = 0
