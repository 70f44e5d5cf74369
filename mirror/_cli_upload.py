"""``mirror upload``: local files into the Webin upload area (FTPS), each with its
``FILE.md5``; and what ``mirror submit`` shares with it (the login, the endpoint, the
uploads before a submission)."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from ._cli_output import _display
from ._exceptions import CredentialsError, ManifestError

if TYPE_CHECKING:
    from rich.console import Console

    from . import _models as m
    from ._credentials import Secret
    from .upload import (
        Endpoint,
        FileRef,
        Problem,
        Target,
        Uploader,
        UploadOutcome,
        UploadSettings,
    )


async def _upload(args: argparse.Namespace, err: Console) -> int:
    from . import _models as m
    from .upload import Uploader

    settings = upload_settings(args.endpoint, args.upload_state, workers=args.workers)
    targets = _targets(args.files, args.to)
    with _display(args, err) as display:
        async with Uploader(settings, display.handle) as uploader:
            outcomes = await uploader.run(targets)
        summary = _summary(outcomes)
        display.handle(m.RunFinished(summary=summary))
    if not args.json and (not args.quiet or summary.exit_code):
        _say_summary(summary, outcomes, settings, args, err)
    return summary.exit_code


def upload_endpoint(given: str | None) -> Endpoint:
    from ._registry import default_endpoints
    from .upload import parse_endpoint

    url = given or os.environ.get("MIRROR_WEBIN_UPLOAD_URL") or default_endpoints()["webin_upload"]
    try:
        return parse_endpoint(url)
    except ValueError as exc:
        raise ManifestError(f"--endpoint: {exc}", file="<command line>") from None


def webin_login(url: str) -> tuple[str, Secret]:
    """``WEBIN_USERNAME``/``WEBIN_PASSWORD``, else ``~/.netrc``'s entry for the host."""
    from ._credentials import Credentials

    creds = Credentials.from_environment()
    user, password = creds.get("WEBIN_USERNAME"), creds.get("WEBIN_PASSWORD")
    if user is None or password is None:
        found = creds.for_host(url)
        if found is not None and found[0] and found[1]:
            user, password = user or found[0], password or found[1]
    if user is None or password is None:
        raise CredentialsError(
            "WEBIN_USERNAME and WEBIN_PASSWORD are not set (or no ~/.netrc entry for the "
            "Webin host): the upload area needs your Webin account",
            hint="export WEBIN_USERNAME=Webin-NNNNN and WEBIN_PASSWORD",
        )
    return user.value, password


def upload_settings(
    endpoint: str | None, state: str | None, *, workers: int | None = None
) -> UploadSettings:
    from ._config import DEFAULT_HOSTS, HostLimit
    from .upload import UploadSettings, default_state_path

    where = upload_endpoint(endpoint)
    user, password = webin_login(where.url)
    limit = DEFAULT_HOSTS.get(where.host) or HostLimit(connections=4)
    return UploadSettings(
        endpoint=where,
        user=user,
        password=password,
        state=Path(state).expanduser() if state else default_state_path(),
        connections=workers or limit.connections,
    )


def area_path(directory: str | None, name: str) -> str:
    """``DIR/name`` in the area; ``DIR`` relative, without ``..`` (as webin-cli)."""
    if not directory:
        return name
    text = directory.replace("\\", "/").strip()
    parts = [p for p in text.split("/") if p not in ("", ".")]
    if text.startswith("/") or ".." in parts or not parts:
        raise ManifestError(
            f"--to {directory!r}: give a directory inside the upload area, relative and "
            "without '..' (e.g. --to run1/fastq)",
            file="<command line>",
        )
    return "/".join((*parts, name))


def _targets(files: list[str], directory: str | None) -> list[Target]:
    from .upload import Target

    targets: list[Target] = []
    seen: dict[str, Path] = {}
    for given in files:
        local = Path(given).expanduser().resolve()
        if not local.is_file():
            raise ManifestError(f"no such file: {given}", file="<command line>")
        remote = area_path(directory, local.name)
        if remote in seen and seen[remote] != local:
            raise ManifestError(
                f"{given} and {seen[remote]} would both be {remote} in the upload area",
                file="<command line>",
            )
        if remote not in seen:
            seen[remote] = local
            targets.append(Target(local=local, remote=remote))
    return targets


def _summary(outcomes: list[UploadOutcome]) -> m.Summary:
    from . import _models as m

    ok = [o for o in outcomes if o.error is None]
    return m.Summary(
        planned=len(outcomes),
        verified=len(ok),
        failed=len(outcomes) - len(ok),
        bytes=sum(o.size for o in ok),
        downloaded=sum(o.sent for o in outcomes),
        skipped=sum(1 for o in ok if o.skipped),
    )


def _say_summary(
    summary: m.Summary,
    outcomes: list[UploadOutcome],
    settings: UploadSettings,
    args: argparse.Namespace,
    err: Console,
) -> None:
    from ._display import human_bytes

    parts = [f"{summary.verified}/{summary.planned} files uploaded ({human_bytes(summary.bytes)})"]
    if summary.skipped:
        parts.append(f"{summary.skipped} already in the area")
    if summary.failed:
        parts.append(f"{summary.failed} failed")
    parts.append(f"sent {human_bytes(summary.downloaded)}")
    err.print("; ".join(parts), markup=False)
    if args.quiet:  # otherwise each was shown once already, as the run went
        for o in outcomes:
            if o.error is not None:
                err.print(f"failed: {o.target.local}: {o.error}", markup=False)
    directory = "/".join(area_path(args.to, "").split("/")[:-1]) if args.to else ""
    where = f"{settings.endpoint.url}/{directory + '/' if directory else ''}"
    err.print(f"area: {where}  state: {settings.state}", markup=False)
    if summary.exit_code:
        err.print("re-run the same command to resume what failed", markup=False)


async def ensure_in_area(
    documents: list[Path],
    *,
    endpoint: str | None,
    state: str | None,
    upload: bool,
    say: Callable[[str], None],
) -> None:
    """Raise ``UploadMismatch`` (naming every file) unless each file the documents name
    is in the area with its size and MD5; with ``upload``, send the local ones that are
    not first (``DOCUMENT``'s directory + ``filename``). Nothing to do, and no
    connection, for documents that name no file."""
    from . import _models as m
    from ._exceptions import UploadMismatch, joined
    from .upload import Target, Uploader, document_files

    wanted = {doc: document_files(doc) for doc in documents}
    if not any(wanted.values()):
        return
    settings = upload_settings(endpoint, state)

    def emit(event: m.Event) -> None:
        if isinstance(event, m.FileVerified) and not event.skipped:
            say(f"uploaded {event.path} ({event.md5})")
        elif isinstance(event, m.FileFailed) and event.final:
            say(f"upload failed: {event.path}: {event.reason}")

    async with Uploader(settings, emit) as uploader:
        problems = await _problems(uploader, wanted)
        if problems and upload:
            targets: list[Target] = []
            for doc, problem in problems:
                local = doc.parent / problem.ref.filename
                if local.is_file():
                    targets.append(Target(local=local, remote=problem.ref.filename))
            if targets:
                say(f"uploading {len(targets)} file(s) the documents name")
                await uploader.run(list({t.remote: t for t in targets}.values()))
                problems = await _problems(uploader, wanted)
    if problems:
        raise joined(
            [
                UploadMismatch(f"{doc}: {problem}; nothing was submitted", path=str(doc))
                for doc, problem in problems
            ]
        )


async def _problems(
    uploader: Uploader, wanted: dict[Path, list[FileRef]]
) -> list[tuple[Path, Problem]]:
    from .upload import check_files

    found: list[tuple[Path, Problem]] = []
    async with uploader.client() as ftp:
        for doc, refs in wanted.items():
            records = {ref.filename: await uploader.record(ref.filename) for ref in refs}
            found.extend((doc, p) for p in await check_files(ftp, refs, records))
    return found
