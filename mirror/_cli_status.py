"""``mirror status`` and ``mirror verify``: read a pull's state store, no network."""

from __future__ import annotations

import argparse
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._cli_output import (
    EXIT_FAILED,
    EXIT_OK,
    _dir,
    _has_state,
    _json,
    _manifest,
)
from ._display import human_bytes
from ._exceptions import ManifestError
from ._models import TaskStatus

if TYPE_CHECKING:
    from ._state._sqlite_reads import StatusReads


def _pull_dest(args: argparse.Namespace) -> Path:
    """The ``dest`` of ``status``/``verify``: ``--dest``, else the manifest's."""
    if args.dest:
        return _dir(args.dest)
    if args.manifest is None:
        raise ManifestError(
            f"give the manifest or --dest DIR (the directory 'mirror run' or "
            f"'mirror get' filled): mirror {args.command} --dest DIR",
            file="<command line>",
        )
    return _manifest(args).dest


def _status_dest(args: argparse.Namespace) -> Path:
    """``dest`` for status: from the manifest's ``dest`` alone when it reads simply (the
    rest is run's and plan's to validate), else as :func:`_pull_dest` finds it."""
    if not args.dest and args.manifest is not None:
        from ._manifest_dest import manifest_dest

        found = manifest_dest(args.manifest)
        if found is not None:
            return found
    return _pull_dest(args)


def _status(args: argparse.Namespace) -> int | Coroutine[Any, Any, int]:
    """The status, read at once from a SQLite store as it stands; else the coroutine that
    opens the store as a run would (PostgreSQL, or a store that opening would change)."""
    from ._state._base import sqlite_location

    dest = _status_dest(args)
    if args.state is None and not _has_state(dest):
        print(f"no state yet under {dest}: run 'mirror run' or 'mirror get' there first")
        return EXIT_OK
    where = sqlite_location(args.state, dest)
    if where is not None:
        from ._state._sqlite_reads import read_status

        reads = read_status(*where, lease=args.lease)
        if reads is not None:
            return _show(args, reads)
    return _status_async(args, dest)


async def _status_async(args: argparse.Namespace, dest: Path) -> int:
    from ._state import open_store
    from ._state._sqlite_reads import StatusReads

    store = await open_store(args.state, dest)
    try:
        # The whole pull: every file any run or process of it planned, not only the last.
        reads = StatusReads(
            counts=await store.counts(None),
            failed=[f async for f in store.files(None, status=TaskStatus.FAILED)],
            problems=await store.problems(),
            members=await store.members(lease=args.lease),
            running=[f async for f in store.files(None, status=TaskStatus.RUNNING)],
        )
    finally:
        await store.aclose()
    return _show(args, reads)


def _show(args: argparse.Namespace, reads: StatusReads) -> int:
    from ._state import gone

    counts, failed, problems = reads.counts, reads.failed, reads.problems
    # The processes taking part now, and what they hold.
    # A process of this host that died without leaving is not taking part.
    members = [m for m in reads.members if not gone(m.host, m.pid)]
    running = reads.running
    now = time.time()
    # A file whose holder died (its lease ran out, or its process on this host is gone)
    # waits for the next process: pending, as far as the user is concerned.
    live = {m.id for m in members}
    stale = [f for f in running if f.holder not in live or (f.lease_until or 0) < now]
    if stale:
        running = [f for f in running if f not in stale]
        n, b = counts[TaskStatus.RUNNING]
        gone_bytes = sum(f.bytes if f.bytes is not None else (f.size or 0) for f in stale)
        counts[TaskStatus.RUNNING] = (n - len(stale), b - gone_bytes)
        n, b = counts[TaskStatus.PENDING]
        counts[TaskStatus.PENDING] = (n + len(stale), b + gone_bytes)
    if args.json:
        print(
            _json(
                {
                    "event": "status",
                    **{s.value: {"files": n, "bytes": b} for s, (n, b) in counts.items()},
                    "failures": [{"path": f.path, "reason": f.reason} for f in failed],
                    "errors": [m for k, m in problems if k == "error"],
                    "refused": [m for k, m in problems if k == "refused"],
                    "members": [
                        {
                            "host": m.host,
                            "pid": m.pid,
                            "heartbeat": round(m.heartbeat, 3),
                            "held": m.held,
                            "planning": m.planning,
                        }
                        for m in members
                    ],
                    "in_progress": [
                        {
                            "path": f.location,
                            "holder": _holder(f.holder),
                            "lease_until": f.lease_until,
                        }
                        for f in running
                    ],
                }
            )
        )
    else:
        for status in (
            TaskStatus.VERIFIED,
            TaskStatus.RUNNING,
            TaskStatus.PENDING,
            TaskStatus.FAILED,
        ):
            n, b = counts[status]
            if n or status is not TaskStatus.RUNNING:
                print(f"{status.value:<9} {n:>8} files {human_bytes(b):>12}")
        if members:
            print(f"members   {len(members):>8} (processes taking part now)")
            for m in members:
                seen = time.strftime("%H:%M:%S", time.localtime(m.heartbeat))
                print(
                    f"  {m.host} pid {m.pid}\tlast heartbeat {seen} "
                    f"({max(0.0, now - m.heartbeat):.0f} s ago)\tholds {m.held} "
                    f"file{'s' if m.held != 1 else ''}" + ("\tplanning" if m.planning else "")
                )
        for f in running:
            left = (f.lease_until or now) - now
            state = f"lease {left:.0f} s left" if left > 0 else "lease expired: waiting for a taker"
            print(f"{f.location}\trunning\t{_holder(f.holder)}, {state}")
        for kind, message in problems:
            what = "credentials refused" if kind == "refused" else "not planned"
            print(f"{message.split(':', 1)[0]}\t{what}\t{message.split(':', 1)[-1].strip()}")
        for f in failed:
            print(f"{f.location}\tfailed\t{f.reason or ''}")
    if failed or counts[TaskStatus.PENDING][0] or counts[TaskStatus.RUNNING][0] or problems:
        return EXIT_FAILED
    return EXIT_OK


def _holder(member: str | None) -> str:
    """``host pid N`` of a member id (``host:pid:token``)."""
    if not member:
        return "no one"
    parts = member.rsplit(":", 2)
    return f"{parts[0]} pid {parts[1]}" if len(parts) == 3 else member


async def _verify(args: argparse.Namespace) -> int:
    from ._verify import verify_local

    dest = _pull_dest(args)
    if args.state is None and not _has_state(dest):
        raise ManifestError(
            "no state store here (.mirror/state.sqlite): nothing was mirrored into it",
            file=str(dest),
        )
    checked, bad = await verify_local(dest, args.state)
    for path, reason in bad:
        print(f"{path}\tmismatch\t{reason}")
    print(
        f"{checked} files re-hashed, {len(bad)} mismatched"
        + ("; they are marked pending: 'mirror run' fetches them again" if bad else "")
    )
    return EXIT_FAILED if bad else EXIT_OK
