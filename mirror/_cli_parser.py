"""The ``mirror`` command line: its options, their help, and one-line usage errors."""

from __future__ import annotations

import argparse
import typing
from pathlib import Path

from ._cli_output import EXIT_USAGE

#: ``--lease`` and ``--progress-interval`` when not given: the defaults of
#: :class:`mirror.PullTuning` and of the plain display, written out so that the parser
#: imports neither (their dataclasses take longer to load than ``--version`` and
#: ``--help`` take to answer); tests/test_short_commands.py holds them equal.
LEASE, PROGRESS_INTERVAL = 60.0, 30.0

_EPILOG = """\
examples:
  mirror demo                         mirror a demo data set from a local emulator, offline
  mirror plan manifest.yaml           count files and bytes, download nothing
  mirror run manifest.yaml            download and verify everything; re-run to resume
  mirror get ERR164407 PRJEB1787      no manifest: accessions straight from the command line
  mirror status manifest.yaml         what is verified, pending, failed (and why)
  mirror status --dest ./pull         the same for a directory 'mirror get' filled
  mirror verify manifest.yaml         re-hash local files against the recorded MD5s
  mirror samplesheet m.yaml --format rnaseq   an nf-core input sheet of the verified FASTQs
  mirror submit --queue study.json    submit to ENA Webin (test service) and keep the receipt
  mirror upload *.fastq.gz --to run1  put files into the Webin upload area, each with FILE.md5
  mirror ls ega [EGAD...]             the EGA datasets your account may download, their files

exit codes: 0 all verified, 1 some files failed (re-run retries them),
            2 usage/manifest/credentials error, 130 interrupted (re-run resumes)

A manifest is YAML; see configs/ for examples. Credentials come from the environment
(EGA_USERNAME, EGA_PASSWORD, EGA_REKEY, ENTEROBASE_TOKEN, WEBIN_USERNAME,
WEBIN_PASSWORD) or ~/.netrc, never from the manifest.
"""


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line that says where to read more."""

    def error(self, message: str) -> typing.NoReturn:
        message = message.removeprefix("argument ")
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    common.add_argument(
        "--dest", metavar="DIR", help="root of the local mirror (overrides the manifest's dest)"
    )
    common.add_argument(
        "--workers",
        type=_positive,
        metavar="N",
        help="concurrent downloads (overrides the manifest; default 16)",
    )
    common.add_argument(
        "--state",
        metavar="URL",
        help="state store: a path, or sqlite:///PATH (relative to the current directory; "
        "sqlite:////abs/path is absolute); postgresql://[user@]host[:port]/db to share one "
        "pull between machines (password from PGPASSWORD or ~/.pgpass). Default: "
        "MIRROR_STATE, else DEST/.mirror/state.sqlite. Every process naming the same store "
        "and dest takes part in the same pull",
    )
    common.add_argument(
        "--lease",
        type=_seconds,
        metavar="SECONDS",
        default=LEASE,
        help="how long a file stays with the process fetching it without a heartbeat: a "
        f"process that dies loses its files to the others after this long (default {LEASE:.0f})",
    )
    common.add_argument(
        "--timeout",
        action="append",
        metavar="NAME=SECONDS",
        help="override a manifest timeout (repeatable): connect (default 15), read (30: no "
        "bytes for this long and a request or a stalled body is given up), host_down (90: a "
        "host failing every connection this long has its remaining files failed together)",
    )
    common.add_argument(
        "--json",
        action="store_true",
        help="one JSON event per line on stdout instead of progress bars",
    )
    common.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="more detail: -v a line per file, -vv retries and throttling, -vvv debug",
    )
    common.add_argument("-q", "--quiet", action="store_true", help="only errors and the summary")
    common.add_argument(
        "--progress-interval",
        type=_seconds,
        default=PROGRESS_INTERVAL,
        metavar="SECONDS",
        help="when stderr is not a terminal, a progress line this often "
        f"(default {PROGRESS_INTERVAL:.0f})",
    )

    p = _Parser(
        prog="mirror",
        description="Bulk, resumable, MD5-verified downloads from EMBL-EBI archives "
        "(ENA, MGnify, EnteroBase, EGA, CRAM references).",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version="ebi-mirror 0.1.0")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(name: str, help_: str, description: str) -> argparse.ArgumentParser:
        return sub.add_parser(
            name,
            parents=[common],
            help=help_,
            description=description,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )

    run = add(
        "run",
        "plan, then download until every file is verified or has failed",
        "Expand the manifest's sources and download every file into DEST, verifying "
        "each against the archive's checksum before it appears at its final path.\n"
        "Re-running resumes: verified files are not requested again, partial files "
        "continue where they stopped, failed files are retried.",
    )
    run.add_argument("manifest", help="YAML manifest (see configs/)")

    get = add(
        "get",
        "download accessions given on the command line, no manifest needed",
        "The archive is told by the prefix: MGYS/MGYA are MGnify, EGAD/EGAF are EGA, "
        "everything else ENA. Same engine, layout, state and exit codes as 'run'.",
    )
    get.add_argument("accessions", nargs="*", metavar="ACCESSION")
    get.add_argument(
        "-i",
        "--input",
        metavar="FILE",
        help="read accessions from FILE ('-' for stdin): one or more a line, separated by "
        "tabs, commas or blanks; '#' starts a comment",
    )
    get.add_argument(
        "--files",
        metavar="FAMILIES",
        help="ENA file families to fetch, comma-separated: fastq, submitted, sra (runs), "
        "generated (analyses); e.g. --files fastq,submitted. Default: fastq for runs, "
        "submitted and generated for analyses",
    )
    get.add_argument(
        "--endpoint",
        action="append",
        default=[],
        metavar="NAME=URL",
        help="another base URL for a service, e.g. "
        "ena_portal=http://127.0.0.1:8080/ena/portal/api (repeatable)",
    )

    plan = add(
        "plan",
        "expand the sources and print the file count and bytes",
        "Ask the archives what the manifest names, print how many files and bytes "
        "that is, and download nothing.",
    )
    plan.add_argument("manifest")

    status = add(
        "status",
        "counts by status from the state store, and why files failed",
        "Read the state store of a manifest's DEST, or of --dest DIR (no network): files "
        "and bytes of the whole pull verified, pending and failed, the sources that "
        "could not be planned, then one line per failed file with its reason.",
    )
    status.add_argument("manifest", nargs="?", help="manifest (or give --dest DIR)")

    verify = add(
        "verify",
        "re-hash local files against the recorded MD5s",
        "Re-read every verified file and compare its MD5 with the one recorded when "
        "it was downloaded. Mismatches are reported and marked pending, so the next "
        "'mirror run' fetches them again. Give the manifest or --dest DIR.",
    )
    verify.add_argument("manifest", nargs="?", help="manifest (or give --dest DIR)")

    sheet = sub.add_parser(
        "samplesheet",
        help="write an nf-core samplesheet of the verified FASTQs",
        description="Write the input sheet of an nf-core pipeline (or fetchngs's own "
        "samplesheet) from what DEST holds, offline: one row per ENA run whose reads are "
        "verified, absolute paths, read 1 and 2 decided from the file names (a run's "
        "unpaired third FASTQ is left out, as fetchngs does). Runs whose reads are "
        "missing or not verified are named on stderr and left out. Exit 0 written, 1 no "
        "run to write, 2 usage.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sheet.add_argument("manifest", nargs="?", help="manifest (or give --dest DIR)")
    sheet.add_argument("--dest", metavar="DIR", help="the directory 'mirror run' filled")
    sheet.add_argument(
        "--format",
        required=True,
        choices=("rnaseq", "atacseq", "taxprofiler", "viralrecon", "mag", "fetchngs"),
        help="the pipeline whose assets/schema_input.json the sheet follows",
    )
    sheet.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        help="where to write ('-' for stdout); default DEST/samplesheets/FORMAT.csv",
    )
    sheet.add_argument(
        "--sample-by",
        choices=("run", "experiment", "sample"),
        help="the accession that names a row's sample (rows sharing one are merged by "
        "the pipeline); default experiment, sample (BioSample) for mag and taxprofiler",
    )
    sheet.add_argument(
        "--strandedness",
        choices=("auto", "forward", "reverse", "unstranded"),
        default="auto",
        help="rnaseq's strandedness column (default auto)",
    )
    sheet.add_argument("-q", "--quiet", action="store_true", help="no warnings, errors only")
    # What status's way of finding DEST reads when it loads the manifest in full.
    sheet.set_defaults(verbose=0, state=None, timeout=None)

    submit = sub.add_parser(
        "submit",
        help="submit XML or JSON documents to ENA through Webin REST V2",
        description="Submit each DOCUMENT (one JSON or XML document each) to the Webin REST V2 "
        "TEST service unless --production is given, write its receipt next to it "
        "(doc.json -> doc.receipt.json, doc.xml -> doc.receipt.xml) and print the accessions. "
        "Credentials: WEBIN_USERNAME and WEBIN_PASSWORD, or ~/.netrc. Exit 0 when every "
        "receipt says success, 1 when one does not (its errors printed), 2 for usage or "
        "credentials errors.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    submit.add_argument("documents", nargs="+", metavar="DOCUMENT", type=Path)
    submit.add_argument(
        "--queue",
        action="store_true",
        help="use /submit/queue and poll for the receipt (large submissions); "
        "an interrupted run resumes polling the same submission",
    )
    submit.add_argument(
        "--validate",
        action="store_true",
        help="add the VALIDATE action: a dry run that creates nothing",
    )
    submit.add_argument(
        "--production",
        action="store_true",
        help="submit to the production service (default: the test service, wiped daily)",
    )
    submit.add_argument(
        "--endpoint", metavar="URL", help="another Webin REST V2 base URL (or set MIRROR_WEBIN_URL)"
    )
    submit.add_argument(
        "--poll-interval",
        type=float,
        default=2.0,
        metavar="SECONDS",
        help="first wait between polls of a queued submission (default 2)",
    )
    submit.add_argument(
        "--upload",
        action="store_true",
        help="upload the files the documents name (DOCUMENT's directory + filename) that are "
        "missing from the upload area, or differ there, before submitting",
    )
    submit.add_argument(
        "--upload-endpoint",
        metavar="URL",
        help="the upload area checked for the files the documents name (default "
        "ftps://webin2.ebi.ac.uk:21, or MIRROR_WEBIN_UPLOAD_URL)",
    )
    submit.add_argument(
        "--upload-state",
        metavar="PATH",
        help="the upload state (as mirror upload --state)",
    )
    submit.add_argument("--json", action="store_true", help="one JSON line per document")
    submit.add_argument("-v", "--verbose", action="count", default=0)
    submit.add_argument("-q", "--quiet", action="store_true")

    upload = sub.add_parser(
        "upload",
        help="upload files to the ENA Webin upload area (FTPS), each with its FILE.md5",
        description="Upload each FILE to your Webin upload area over FTPS (AUTH TLS, "
        "encrypted data), several at once, and write FILE.md5 (its 32 lower-case hex "
        "digits) beside it, as ENA's file preparation guide asks. The area is the same for "
        "the test and the production service.\n\n"
        "Resumable: an interrupted upload continues from the size the area holds (REST + "
        "STOR) when the local file has not changed since; a larger or different remote file "
        "is replaced; a file uploaded before (same size, same MD5 recorded) is not sent "
        "again. Dropped connections are retried with backoff. What was sent is recorded in "
        "the upload state (--state), never the password.\n\n"
        "Credentials: WEBIN_USERNAME (Webin-N) and WEBIN_PASSWORD, or ~/.netrc.\n"
        "Exit 0 every file uploaded and checked, 1 some failed (re-run resumes them), 2 "
        "usage or credentials errors (a refused login).",
        epilog="examples:\n"
        "  mirror upload reads_1.fastq.gz reads_2.fastq.gz\n"
        '  mirror upload --to study1/run1 *.fastq.gz     then: filename="study1/run1/…"\n'
        "  mirror upload --json big.bam | jq -c .        one event per line",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    upload.add_argument("files", nargs="+", metavar="FILE", help="local files to upload")
    upload.add_argument(
        "--to",
        metavar="DIR",
        help="a directory in the area, relative, created when missing (default: its root)",
    )
    upload.add_argument(
        "--endpoint",
        metavar="URL",
        help="the upload area, ftps://HOST[:PORT] (default ftps://webin2.ebi.ac.uk:21, or "
        "MIRROR_WEBIN_UPLOAD_URL)",
    )
    upload.add_argument(
        "--state",
        dest="upload_state",
        metavar="PATH",
        help="the upload state, an SQLite file (default MIRROR_UPLOAD_STATE, else "
        "$XDG_STATE_HOME/ebi-mirror/uploads.sqlite, ~/.local/state/... when unset)",
    )
    upload.add_argument(
        "--workers",
        type=_positive,
        metavar="N",
        help="files uploading at once (default 4 for webin2.ebi.ac.uk)",
    )
    upload.add_argument(
        "--json", action="store_true", help="one JSON event per line on stdout (as mirror run)"
    )
    upload.add_argument(
        "-v", "--verbose", action="count", default=0, help="-v a line per file, -vv retries"
    )
    upload.add_argument("-q", "--quiet", action="store_true", help="only errors and the summary")
    upload.add_argument(
        "--progress-interval",
        type=_seconds,
        default=PROGRESS_INTERVAL,
        metavar="SECONDS",
        help="when stderr is not a terminal, a progress line this often "
        f"(default {PROGRESS_INTERVAL:.0f})",
    )

    ls = sub.add_parser(
        "ls",
        help="list the EGA datasets your account may download, and their files",
        description="Without EGAD accessions, list the datasets the account may download; "
        "with them, each one's files: file id, name (as it lands), size (of the plaintext), "
        "status, checksum type. The Data API (default) lists what pyega3 lists; --protocol "
        "outbox lists the Live Outbox over SFTP (no Crypt4GH key needed), a file on cold "
        "storage with status 'unavailable'.\n\n"
        "Credentials as for the ega: source: EGA_USERNAME and EGA_PASSWORD (or ~/.netrc); "
        "for the outbox EGA_SSH_KEY (EGA_SSH_PASSPHRASE) instead of the password if you "
        "like, and EGA_KNOWN_HOSTS.\n"
        "Exit 0 all listed, 1 the archive refused a dataset or failed, 2 usage or "
        "credentials errors.",
        epilog="examples:\n"
        "  mirror ls ega                                 datasets the account may download\n"
        "  mirror ls ega EGAD00010000805 --json | jq .   a dataset's files, for machines\n"
        "  mirror ls ega --protocol outbox EGAD50000000001",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ls.add_argument("archive", help="the archive whose listing to show (ega, for now)")
    ls.add_argument("datasets", nargs="*", metavar="EGAD", help="datasets whose files to list")
    ls.add_argument(
        "--protocol",
        default=None,
        help="for ega: data-api (default: the current Data API, pyega3's) or outbox "
        "(the Live Outbox)",
    )
    ls.add_argument(
        "--endpoint",
        action="append",
        default=[],
        metavar="NAME=URL",
        help="another base URL for a service, as for 'mirror get': ega_auth, ega_data "
        "(Data API), ega_outbox (sftp://HOST:PORT), ega_metadata (repeatable)",
    )
    ls.add_argument("--json", action="store_true", help="one JSON document on stdout")
    ls.add_argument(
        "-v", "--verbose", action="count", default=0, help="more detail: -vv requests, -vvv debug"
    )

    demo = add(
        "demo",
        "mirror a small demo data set from a local archive emulator, offline",
        "Start the bundled archive emulator on 127.0.0.1, mirror the demo manifest "
        "from it into ./mirror-demo (or --dest), verify every file, and say where "
        "everything is. Needs no network.",
    )
    demo.add_argument("manifest", nargs="?", help="manifest to use (default: the bundled demo)")
    return p


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r}: give a number of seconds above 0")
    return value
