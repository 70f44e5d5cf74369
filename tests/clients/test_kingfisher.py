"""kingfisher (wwood/kingfisher-download, from PyPI) against the emulator, unchanged.

``kingfisher get -m ena-ftp`` runs ``curl --silent 'https://www.ebi.ac.uk/ena/portal/
api/filereport?...&fields=fastq_ftp,fastq_md5'``, then ``curl -L '<fastq_ftp value>'``
for each file (a scheme-less ``ftp.sra.ebi.ac.uk/vol1/...``), checks each MD5
(``--check-md5sums``) and tests every ``.gz`` with ``pigz -t``. curl reads its own
configuration file, so the test's ``~/.curlrc`` (the only change) routes the two public
hosts to the emulator (``connect-to``, TLS checked against the public names), trusts
the test CA, and makes scheme-less URLs HTTPS (``proto-default``), where curl would
guess FTP from the ``ftp.`` host name: the FTP paths are fetched over HTTPS, as ENA
serves them. With more than one download thread kingfisher uses ``aria2c ftp://…``
instead, which needs an FTP server; the test uses one thread.
"""

from __future__ import annotations

import gzip
import hashlib
import shutil
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from .emulated import emulated, python_of

pytestmark = pytest.mark.clients

RUN = "ERR164407"
FILES = [f"vol1/fastq/ERR164/007/{RUN}/{RUN}_{n}.fastq.gz" for n in (1, 2)]


async def test_kingfisher_ena_ftp_downloads_and_checks_a_run(tmp_path: Path) -> None:
    python = python_of("kingfisher")
    if shutil.which("pigz") is None or shutil.which("curl") is None:
        pytest.fail("kingfisher needs curl and pigz on PATH (apt-get install curl pigz)")
    async with emulated(tmp_path) as world:
        www = urlsplit(world.emu.endpoints["ena_portal"]).netloc
        ftp = urlsplit(world.emu.endpoints["ena_files"]).netloc
        (tmp_path / "home" / ".curlrc").write_text(
            f"connect-to = www.ebi.ac.uk:443:{www}\n"
            f"connect-to = ftp.sra.ebi.ac.uk:443:{ftp}\n"
            "proto-default = https\n"
            f"cacert = {world.tls.ca}\n"
        )
        out = tmp_path / "out"
        out.mkdir()
        done = await world.run(
            python, "kingfisher", "get", "-r", RUN, "-m", "ena-ftp", "-f", "fastq.gz",
            "--check-md5sums", "--download-threads", "1", "--output-directory", str(out),
            cwd=tmp_path,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert "Method ena-ftp worked." in done.stderr
        assert done.stderr.count("MD5sum OK") == 2
        assert sorted(p.name for p in out.iterdir()) == [f"{RUN}_1.fastq.gz", f"{RUN}_2.fastq.gz"]
        for path in FILES:
            data = (out / path.rsplit("/", 1)[1]).read_bytes()
            assert hashlib.md5(data).hexdigest() == world.emu.ena.file_md5(path)
            gzip.decompress(data)
        await world.emu.wait_idle()
        report, *files = world.emu.log
        assert report.path == "/ena/portal/api/filereport"
        assert parse_qs(report.query) == {
            "accession": [RUN],
            "result": ["read_run"],
            "fields": ["fastq_ftp,fastq_md5"],
        }
        assert [(e.host, e.path, e.status) for e in files] == [
            ("ftp", "/" + path, 200) for path in FILES
        ]
