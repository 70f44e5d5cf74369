"""Workload 11: a Webin upload, one file over explicit FTPS to vsftpd.

The server is the one the tests use (``mirror.emulator.FtpsArea``: vsftpd as root, TLS
required for logins and data, the data connection resuming the control connection's TLS
session, passive mode), here without its fault proxy (clients talk to vsftpd directly)
and offering TLS 1.2 at most, to every tool alike.
The file is generated once (the emulator's deterministic content) and read from the page
cache by every run. The peers are ``lftp put`` (``ftp:ssl-force``,
``ftp:ssl-protect-data``) and ``curl --ssl-reqd -T``; each run's upload is checked on
the server's disk (size and MD5) before the next. The floor is what any client that
writes the ``.md5`` beside the upload must also do: hash every byte, in order, on one
core (the MD5 of the bytes in memory, after each repetition). ebi-mirror is held to
<= 1.25 x lftp's wall (>= 0.8 x its throughput).

ebi-mirror's row (``mirror upload FILE --to bench --endpoint ftps://127.0.0.1:PORT -q``,
``WEBIN_USERNAME``/``WEBIN_PASSWORD``/``SSL_CERT_FILE`` in its environment, its upload
state fresh for each run) runs when ``mirror upload --help`` succeeds; otherwise the
table has the peers and the floor alone and a note says why. No password is in any
command line: lftp reads it from ``LFTP_PASSWORD`` (``--env-password``), curl from a
netrc file.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mirror.emulator import FtpsArea, iter_range, md5_of

from ._data import FileSpec
from ._floor import InMemory, floor_rows, hold
from ._measure import Measurement
from ._results import GIB, Row, WorkloadResult, median_ratio
from ._suite import Runner, Suite
from ._tls import make_ca
from ._transfer import MIRROR

__all__ = ["w11_upload"]

KEY = "W11"
LFTP = "lftp put"
CURL = "curl --ssl-reqd -T"
#: ebi-mirror may take this much longer than lftp's put: throughput >= 0.8 x lftp's.
LIMIT = 1 / 0.8
#: Where every tool puts the file, in the area (emptied before each run).
REMOTE_DIR = "bench"
_CONTENT = "webin/upload/W11_reads.fastq"


@dataclass(frozen=True)
class _Upload:
    """The one file: what ``Suite.alternate`` checks each run left in the area."""

    local: Path
    spec: FileSpec

    @property
    def files(self) -> Sequence[FileSpec]:
        return (self.spec,)

    @property
    def bytes(self) -> int:
        return self.spec.size


def _source(suite: Suite, size: int) -> _Upload:
    """The file to upload, written once (and kept while its size and stamp match)."""
    folder = suite.work / "upload"
    local = folder / f"{KEY}_reads_{size}.fastq"
    stamp = local.with_suffix(".md5")
    md5 = md5_of(_CONTENT, size)
    if not (local.is_file() and local.stat().st_size == size and _read(stamp) == md5):
        folder.mkdir(parents=True, exist_ok=True)
        part = local.with_suffix(".part")
        with part.open("wb") as out:
            for piece in iter_range(_CONTENT, size):
                out.write(piece)
        part.rename(local)
        stamp.write_text(md5)
    return _Upload(local, FileSpec(path=f"{REMOTE_DIR}/{local.name}", run="", size=size, md5=md5))


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _lftp(suite: Suite, server: FtpsArea, upload: _Upload) -> Runner:
    settings = "; ".join(
        [
            f"set ssl:ca-file {server.ca}",
            "set ssl:verify-certificate yes",
            "set ftp:ssl-force true",
            "set ftp:ssl-protect-data true",
            "set ftp:passive-mode true",
            "set net:max-retries 1",
        ]
    )
    script = (
        f"{settings}; open --env-password -u {server.username} -p {server.port} {server.host}; "
        f"mkdir -p -f {REMOTE_DIR}; put {upload.local} -o {REMOTE_DIR}/{upload.spec.name}"
    )
    return Runner(
        LFTP,
        lambda out: [suite.tools["lftp"], "-c", script],
        _in_area(server),
        env={"LFTP_PASSWORD": server.password},
    )


def _curl(suite: Suite, server: FtpsArea, upload: _Upload) -> Runner:
    netrc = suite.work / KEY / "netrc"
    netrc.parent.mkdir(parents=True, exist_ok=True)
    netrc.touch(mode=0o600)
    netrc.write_text(f"machine {server.host} login {server.username} password {server.password}\n")
    url = f"ftp://{server.host}:{server.port}/{REMOTE_DIR}/{upload.spec.name}"
    argv = [suite.tools["curl"], "-sS", "--ssl-reqd", "--cacert", str(server.ca)]
    argv += ["--netrc-file", str(netrc), "--ftp-create-dirs", "-T", str(upload.local), url]
    return Runner(CURL, lambda out: argv, _in_area(server))


def _mirror(suite: Suite, server: FtpsArea, upload: _Upload) -> tuple[Runner | None, str]:
    """ebi-mirror's runner, or why it is left out."""
    env = server.env()
    probe = subprocess.run(
        [*suite.mirror, "upload", "--help"],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=120,
        check=False,
    )
    if probe.returncode != 0:
        why = (probe.stderr.strip().splitlines() or [f"exit {probe.returncode}"])[-1]
        return None, why
    with_state = "--state" in probe.stdout

    def command(out: Path) -> list[str]:
        # A fresh upload state for each run: what it remembers of the last run's upload
        # (removed from the area since) must not make this one send nothing.
        argv = [*suite.mirror, "upload", str(upload.local), "--to", REMOTE_DIR]
        argv += ["--endpoint", server.endpoint, "-q"]
        if with_state:
            return [*argv, "--state", str(out / "uploads.sqlite")]
        return ["env", f"XDG_STATE_HOME={out}", *argv]

    return Runner(MIRROR, command, _in_area(server), env=env), ""


def _in_area(server: FtpsArea) -> Callable[[Path, FileSpec], Path]:
    """Where a run leaves the file: in the area, whatever its local output directory."""

    def location(out: Path, f: FileSpec) -> Path:
        return server.area / REMOTE_DIR / f.name

    return location


def w11_upload(suite: Suite) -> WorkloadResult:
    size = (256 << 20) if suite.quick else (1 << 30)
    result = WorkloadResult(key=KEY, title=f"Webin upload (FTPS), one {size / GIB:g} GiB file")
    upload = _source(suite, size)
    tls_dir = suite.work / KEY / "tls"
    shutil.rmtree(tls_dir, ignore_errors=True)
    tls = make_ca(tls_dir, suite.tools.get("openssl", "openssl"))
    # TLS 1.2 for every tool: under 1.3, curl 7.88 and lftp close an upload's connection
    # before reading what vsftpd sent after the handshake, and now and then the upload's
    # tail is lost (see FtpsArea); the bulk cipher is AES-256-GCM either way.
    area = FtpsArea(ca=tls.ca, cert=tls.cert, key=tls.key, faults=False, tls_max="1.2")
    # curl's netrc holds the password: removed with the server, whatever happens.
    with area as server, contextlib.ExitStack() as cleanup:
        cleanup.callback((suite.work / KEY / "netrc").unlink, missing_ok=True)
        suite.say(f"  {KEY} vsftpd on :{server.port}, area {server.area}")
        mirror, why = _mirror(suite, server, upload)
        runners = [_lftp(suite, server, upload), _curl(suite, server, upload)]
        if mirror is not None:
            runners.insert(0, mirror)
        else:
            result.notes.append(f"ebi-mirror's row is left out: mirror upload --help said: {why}")
        memory = InMemory.from_file(upload.local, upload.spec.md5)
        md5s: list[Measurement] = []

        @contextlib.contextmanager
        def empty_area() -> Iterator[dict[str, Any]]:
            # Each run starts from an area without the file (no tool resumes or skips).
            shutil.rmtree(server.area / REMOTE_DIR, ignore_errors=True)
            yield {}

        results = suite.alternate(
            KEY,
            upload,
            runners,
            around=empty_area,
            after_rep=lambda rep: md5s.append(memory.measure()),
        )
        stors = server.log().count('FTP command: Client "127.0.0.1", "STOR ')
    _rows(result, results, md5s, size)
    result.notes.append(
        "rows count the file's bytes; each run's upload checked in vsftpd's area (size, MD5); "
        "TLS on control and data (data connections resume the control's session)"
    )
    result.info.update(size=size, md5=upload.spec.md5, stor_commands=stors, mirror_left_out=why)
    return result


def _rows(
    result: WorkloadResult,
    results: dict[str, list[Measurement]],
    md5s: list[Measurement],
    size: int,
) -> None:
    ours = results.get(MIRROR)
    for tool, runs in results.items():
        ratio = None if tool == MIRROR or ours is None else median_ratio(ours, runs)
        result.rows.append(Row(tool=tool, runs=runs, files=1, bytes=size, ratio=ratio))
    md5_row, floor_row = floor_rows(
        ours or [], results[LFTP], md5s, files=1, nbytes=size, download="lftp"
    )
    if ours is None:
        md5_row.ratio = floor_row.ratio = None
    result.rows += [md5_row, floor_row]
    if ours is not None:
        lftp = next(r for r in result.rows if r.tool == LFTP)
        hold(result, lftp, f"{KEY} wall ebi-mirror / lftp put", LIMIT)
    result.info.update(lftp_mb_s=next(r for r in result.rows if r.tool == LFTP).rate)
