"""``mirror submit``: documents to ENA through Webin REST V2, receipts next to them."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from rich.console import Console

from ._cli_output import (
    EXIT_FAILED,
    EXIT_OK,
    _json,
)
from ._config import HostLimit, Timeouts
from ._exceptions import CredentialsError, ManifestError
from ._registry import default_endpoints

PRODUCTION_WEBIN = "https://www.ebi.ac.uk/ena/submit/webin-v2"


async def _submit(args: argparse.Namespace, err: Console) -> int:
    from ._credentials import Credentials
    from ._http import Http
    from .submit.webin import Submission, existing_accession, submit_all

    base = (
        args.endpoint
        or os.environ.get("MIRROR_WEBIN_URL")
        or (PRODUCTION_WEBIN if args.production else default_endpoints()["webin"])
    )
    if not base.startswith(("http://", "https://")):
        raise ManifestError(f"--endpoint {base!r}: expected an http(s) URL", file="<command line>")
    missing = [d for d in args.documents if not _is_file(d)]
    if missing:
        raise ManifestError(f"no such document: {missing[0]}", file="<command line>")
    creds = Credentials.from_environment()
    user, password = creds.get("WEBIN_USERNAME"), creds.get("WEBIN_PASSWORD")
    if user is None or password is None:
        found = creds.for_host(base)
        if found is not None and found[0] and found[1]:
            user, password = user or found[0], password or found[1]
    if user is None or password is None:
        raise CredentialsError(
            "WEBIN_USERNAME and WEBIN_PASSWORD are not set (or no ~/.netrc entry for the "
            "Webin host): Webin submissions need your Webin account"
        )
    how = Submission(
        base=base.rstrip("/"),
        username=user.value,
        password=password,
        queue=args.queue,
        validate=args.validate,
        poll_interval=args.poll_interval,
    )
    say = (
        (lambda line: None)
        if args.json or args.quiet
        else (lambda line: err.print(line, markup=False))
    )
    # The files the documents name must be in the upload area first: a submission that
    # names a missing file is refused by ENA only later, by e-mail (research notes 3.8).
    from ._cli_upload import ensure_in_area

    await ensure_in_area(
        list(args.documents),
        endpoint=args.upload_endpoint,
        state=args.upload_state,
        upload=args.upload,
        say=(lambda line: None) if args.json else (lambda line: err.print(line, markup=False)),
    )
    target = "production" if base.rstrip("/") == PRODUCTION_WEBIN else "test"
    if not args.json and not args.quiet and not args.endpoint:
        err.print(f"submitting to the Webin {target} service", markup=False)
    # Webin answers a submission only once it has processed it: give it minutes.
    timeouts = Timeouts(read=300)
    async with Http(lambda host: HostLimit(rate=10, connections=4), timeouts=timeouts) as http:
        outcomes = await submit_all(list(args.documents), how, http, say=say)
    for o in outcomes:
        if args.json:
            print(
                _json(
                    {
                        "document": str(o.document),
                        "success": o.success,
                        "receipt": str(o.receipt),
                        "submissionId": o.submission_id,
                        "accessions": [
                            {"type": t, "alias": a, "accession": acc} for t, a, acc in o.accessions
                        ],
                        "errors": list(o.errors),
                    }
                )
            )
            continue
        print(f"{o.document}: {'success' if o.success else 'FAILED'}; receipt {o.receipt}")
        for kind, alias, accession in o.accessions:
            print(f"  {kind:<10} {accession or '-':<14} {alias}")
        for error in o.errors:
            print(f"  error: {error}")
            if (existing := existing_accession(error)) is not None:
                print(f"  (the alias already exists as {existing}; use MODIFY to change it)")
    return EXIT_OK if all(o.success for o in outcomes) else EXIT_FAILED


def _is_file(path: Path) -> bool:
    return path.is_file()
