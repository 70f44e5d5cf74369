"""Webin's live state: accounts, the objects each has submitted, the submission queue."""

from __future__ import annotations

import collections
import datetime
import hmac
from collections.abc import Iterable
from dataclasses import dataclass, replace

from aiohttp import web

from ._doc import KINDS, Action, Document, DocumentError, Format, Submitted
from ._options import WebinOptions
from ._records import (
    HOLD_INFO,
    ROLLED_BACK,
    TEST_INFO,
    Receipt,
    ReceiptObject,
    WebinObject,
    WebinStats,
)

__all__ = ["WEBIN", "WebinState"]

_DUPLICATE = "The object being added already exists in the submission account with accession"

# First accession of each series: numbers of the size the real ones have now, so a
# client's patterns see realistic accessions. Project and study take one of each.
_FIRST = {
    "ERA": 30900001,
    "PRJEB": 81900001,
    "ERP": 165900001,
    "ERS": 31600001,
    "SAMEA": 131600001,
    "ERX": 12800001,
    "ERR": 13800001,
    "ERZ": 25900001,
}
# "All submitted studies, projects and samples become public on that date"; runs,
# experiments and analyses follow their study, so only these carry holdUntilDate.
_HELD = frozenset({"project", "study", "sample"})
_HOLD_YEARS = 2
# Actions on an existing object named by ``target``; HOLD is one when it has a target.
_TARGETED = {"RELEASE": "PUBLIC", "CANCEL": "CANCELLED", "HOLD": "PRIVATE"}
# Real actions the emulator does not model; a submission using one fails, loudly.
_UNSUPPORTED = frozenset({"SUPPRESS", "KILL", "PROTECT", "ROLLBACK"})
_KIND_BY_NAME = {kind.name: kind for kind in KINDS}
_KIND_ORDER = {kind.name: index for index, kind in enumerate(KINDS)}


@dataclass(kw_only=True, slots=True)
class _Queued:
    account: str
    receipt: Receipt
    format: Format
    polls: int = 0


@dataclass(frozen=True, kw_only=True, slots=True)
class _Submission:
    account: str
    alias: str
    accession: str
    keys: tuple[tuple[str, str, str], ...]  # the objects it added or changed


def _generated_alias(now: datetime.datetime) -> str:
    # As the service names a submission sent without an alias.
    return f"SUBMISSION-{now:%d-%m-%Y-%H:%M:%S}:{now.microsecond // 1000:03d}"


def _years_later(day: datetime.date, years: int) -> datetime.date:
    try:
        return day.replace(year=day.year + years)
    except ValueError:  # 29 February
        return day.replace(year=day.year + years, day=28)


class WebinState:
    """Per-account objects by (type, alias), accessions, and the queued submissions.

    Submissions are atomic: one failing object fails the whole submission and
    nothing is created. A queued submission is processed when it is queued (as the
    service works through its queue whether or not anyone polls); its receipt is
    withheld for the first ``poll_pending`` polls.
    """

    def __init__(self, options: WebinOptions | None = None) -> None:
        options = options if options is not None else WebinOptions()
        self._accounts = dict(options.accounts)
        self.poll_pending = options.poll_pending
        self._objects: dict[tuple[str, str, str], WebinObject] = {}
        self._submissions: dict[tuple[str, str], _Submission] = {}
        self._issued: list[str] = []
        self._queued: dict[str, _Queued] = {}
        self._next = dict(_FIRST)
        self._stats = WebinStats()

    def authenticate(self, account: str, password: str) -> bool:
        expected = self._accounts.get(account)
        return expected is not None and hmac.compare_digest(expected.encode(), password.encode())

    def refused(self) -> None:
        self._count(unauthorized=1)

    def submit(
        self, account: str, doc: Document | DocumentError, *, today: datetime.date
    ) -> Receipt:
        """Process a ``/submit`` document now and return its receipt."""
        receipt = self._process(account, doc, today, "")
        if receipt.success and receipt.submission_accession and "RECEIPT" not in receipt.actions:
            self._issued.append(receipt.submission_accession)
        self._count(submits=1, receipts=1)
        return receipt

    def enqueue(
        self, account: str, doc: Document | DocumentError, fmt: Format, *, today: datetime.date
    ) -> str:
        """Queue a document; its id (an ERA, the receipt's submission accession if it
        succeeds) is what ``/submit/poll/{id}`` takes."""
        sid = self._allocate("ERA")
        self._issued.append(sid)
        self._queued[sid] = _Queued(
            account=account, receipt=self._process(account, doc, today, sid), format=fmt
        )
        self._count(queued=1)
        return sid

    def poll(self, account: str, sid: str) -> tuple[Receipt, Format] | None:
        """The receipt once ready, None while pending; KeyError for an id the account
        does not own."""
        queued = self._queued.get(sid.strip().upper())
        if queued is None or queued.account != account:
            raise KeyError(sid)
        self._count(polls=1)
        if queued.polls < self.poll_pending:
            queued.polls += 1
            return None
        self._count(receipts=1)
        return queued.receipt, queued.format

    def stats(self) -> WebinStats:
        return self._stats

    def submissions(self) -> list[str]:
        return list(self._issued)

    def objects(self, account: str | None = None) -> list[WebinObject]:
        return [o for o in self._objects.values() if account is None or o.account == account]

    def _count(self, **deltas: int) -> None:
        self._stats = replace(
            self._stats, **{name: getattr(self._stats, name) + n for name, n in deltas.items()}
        )

    def _allocate(self, prefix: str) -> str:
        number = self._next[prefix]
        self._next[prefix] = number + 1
        return f"{prefix}{number}"

    def _find(self, account: str, accession: str) -> WebinObject | None:
        wanted = accession.strip().upper()
        for found in self._objects.values():
            if found.account == account and wanted in (found.accession, found.external_accession):
                return found
        return None

    def _process(
        self, account: str, doc: Document | DocumentError, today: datetime.date, sid: str
    ) -> Receipt:
        now = datetime.datetime.now(datetime.UTC)
        if isinstance(doc, DocumentError):
            return Receipt(success=False, date=now, errors=(doc.message,), infos=(TEST_INFO,))
        types = tuple(action.type for action in doc.actions) or ("ADD",)
        if "RECEIPT" in types:
            return self._reissue(account, doc, now)
        errors = [
            f"The {t} action is not supported by the emulator." for t in types if t in _UNSUPPORTED
        ]
        modify, validate = "MODIFY" in types, "VALIDATE" in types
        if modify and "ADD" in types:
            errors.append("The ADD and MODIFY actions cannot be combined.")
        hold = self._hold_date(doc.actions, today, errors)
        targets = [a for a in doc.actions if a.type in _TARGETED and (a.target or a.type != "HOLD")]
        if not doc.objects and not targets:
            errors.append("The submission contains no objects.")
        alias = doc.submission_alias or _generated_alias(now)
        earlier = self._submissions.get((account, doc.submission_alias))
        if earlier is not None:
            errors.append(
                f'In submission, alias:"{alias}", accession:"". '
                f'{_DUPLICATE}: "{earlier.accession}".'
            )
        listed = [self._check(account, item, modify, hold, errors) for item in doc.objects]
        if not modify:
            counts = collections.Counter((o.kind.name, o.alias) for o in doc.objects if o.alias)
            errors += [
                f'In {kind}, alias: "{alias}". The alias is used by more than one {kind} '
                "in this submission."
                for (kind, alias), n in counts.items()
                if n > 1
            ]
        changed = [self._target(account, action, today, errors) for action in targets]
        if errors or validate:
            # Nothing is created; the receipt still lists the objects, unaccessioned.
            infos = (ROLLED_BACK, TEST_INFO) if errors and not validate else (TEST_INFO,)
            unassigned = tuple(replace(o, accession="", external_accession="") for o in listed)
            return Receipt(
                success=not errors,
                date=now,
                objects=unassigned if not modify else tuple(listed),
                submission_alias=alias,
                errors=tuple(errors),
                infos=infos,
                actions=types,
            )
        sid = sid or self._allocate("ERA")
        added = [self._commit(account, o, sid) for o in listed] if not modify else listed
        applied = [self._apply(account, o, hold) for o in added] if modify else added
        keys = [(account, o.kind.name, o.alias) for o in applied]
        for target, action in zip(changed, targets, strict=True):
            assert target is not None  # an unknown target is an error, handled above
            keys.append(self._retarget(target, action, today))
        self._submissions[(account, alias)] = _Submission(
            account=account, alias=alias, accession=sid, keys=tuple(keys)
        )
        infos = (HOLD_INFO, TEST_INFO) if "HOLD" in types else (TEST_INFO,)
        return Receipt(
            success=True,
            date=now,
            objects=tuple(self._listing(keys)),
            submission_alias=alias,
            submission_accession=sid,
            infos=infos,
            actions=types,
        )

    def _hold_date(
        self, actions: Iterable[Action], today: datetime.date, errors: list[str]
    ) -> datetime.date | None:
        for action in actions:
            if action.type == "HOLD" and not action.target:
                return self._parse_hold(action.hold_until, today, errors)
        return None

    @staticmethod
    def _parse_hold(value: str | None, today: datetime.date, errors: list[str]) -> datetime.date:
        latest = _years_later(today, _HOLD_YEARS)
        if value is None:  # "HOLD without a date: public in two years"
            return latest
        try:
            day = datetime.date.fromisoformat(value[:10])
        except ValueError:
            errors.append(f'Invalid hold date "{value}": expected YYYY-MM-DD.')
            return latest
        if day > latest:
            errors.append(f"The hold date {day} is more than two years in the future.")
        return day

    def _check(
        self,
        account: str,
        item: Submitted,
        modify: bool,
        hold: datetime.date | None,
        errors: list[str],
    ) -> ReceiptObject:
        kind = item.kind
        held = hold if kind.name in _HELD else None
        if modify:
            found = self._find(account, item.accession) if item.accession else None
            found = found or self._objects.get((account, kind.name, item.alias))
            if found is None or found.kind != kind.name:
                errors.append(
                    f'In {kind.name}, alias: "{item.alias}". The object being updated '
                    "does not exist in the submission account."
                )
                return ReceiptObject(kind=kind, alias=item.alias, hold_until=held)
            return self._receipt_object(found)
        if not item.alias:
            errors.append(f"In {kind.name}: the alias is missing.")
        existing = self._objects.get((account, kind.name, item.alias))
        if existing is not None:
            errors.append(
                f'In {kind.name}, alias: "{item.alias}". {_DUPLICATE}: "{existing.accession}".'
            )
        return ReceiptObject(kind=kind, alias=item.alias, hold_until=held)

    def _target(
        self, account: str, action: Action, today: datetime.date, errors: list[str]
    ) -> WebinObject | None:
        if not action.target:
            errors.append(f"The {action.type} action needs a target accession.")
            return None
        if action.type == "HOLD":
            self._parse_hold(action.hold_until, today, errors)
        found = self._find(account, action.target)
        if found is None:
            errors.append(f'The object "{action.target}" does not exist in the submission account.')
        return found

    def _commit(self, account: str, item: ReceiptObject, sid: str) -> ReceiptObject:
        kind = item.kind
        accession = self._allocate(kind.prefix)
        external = self._allocate(kind.external) if kind.external else ""
        self._objects[account, kind.name, item.alias] = WebinObject(
            account=account,
            kind=kind.name,
            alias=item.alias,
            accession=accession,
            external_accession=external,
            hold_until=item.hold_until,
            submission=sid,
        )
        return replace(item, accession=accession, external_accession=external)

    def _apply(
        self, account: str, item: ReceiptObject, hold: datetime.date | None
    ) -> ReceiptObject:
        # MODIFY with HOLD moves the release date of the held types.
        key = (account, item.kind.name, item.alias)
        if hold is not None and item.kind.name in _HELD:
            self._objects[key] = replace(self._objects[key], hold_until=hold)
        return item

    def _retarget(
        self, target: WebinObject, action: Action, today: datetime.date
    ) -> tuple[str, str, str]:
        key = (target.account, target.kind, target.alias)
        hold = {
            "HOLD": self._parse_hold(action.hold_until, today, []),
            "RELEASE": None,  # public now: no release date left
        }.get(action.type, target.hold_until)
        self._objects[key] = replace(target, status=_TARGETED[action.type], hold_until=hold)
        return key

    def _listing(self, keys: Iterable[tuple[str, str, str]]) -> list[ReceiptObject]:
        unique = dict.fromkeys(keys)
        found = [self._receipt_object(self._objects[key]) for key in unique]
        return sorted(found, key=lambda o: _KIND_ORDER[o.kind.name])

    @staticmethod
    def _receipt_object(found: WebinObject) -> ReceiptObject:
        return ReceiptObject(
            kind=_KIND_BY_NAME[found.kind],
            alias=found.alias,
            accession=found.accession,
            external_accession=found.external_accession,
            status=found.status,
            hold_until=found.hold_until,
        )

    def _reissue(self, account: str, doc: Document, now: datetime.datetime) -> Receipt:
        """RECEIPT: the receipt of an earlier submission (by alias or accession) again,
        with its objects as they are now: how a client recovers a lost receipt."""
        actions = tuple(action.type for action in doc.actions)
        target = next((a.target for a in doc.actions if a.type == "RECEIPT"), None) or ""
        found = next(
            (
                s
                for s in self._submissions.values()
                if s.account == account and target in (s.alias, s.accession.upper())
            ),
            None,
        )
        if found is None or len(actions) > 1:
            error = (
                "The RECEIPT action cannot be combined with other actions."
                if len(actions) > 1
                else f'The submission "{target}" does not exist in the submission account.'
            )
            return Receipt(
                success=False, date=now, errors=(error,), infos=(TEST_INFO,), actions=actions
            )
        return Receipt(
            success=True,
            date=now,
            objects=tuple(self._listing(found.keys)),
            submission_alias=found.alias,
            submission_accession=found.accession,
            infos=(TEST_INFO,),
            actions=actions,
        )


WEBIN = web.AppKey("mirror_emulator_webin", WebinState)
