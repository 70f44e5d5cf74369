"""The Webin upload area test server itself, proved with clients that are not ours: curl and
Python's ftplib upload over explicit FTPS, resume with REST + STOR and APPE, are refused
without TLS, without TLS session reuse on the data channel, or with a wrong password; the
proxy cuts an upload at the byte asked for."""

from __future__ import annotations

import ftplib
import io
import os
import re
import socket
import ssl
import subprocess
import time
from pathlib import Path

import pytest

from tests.ftps import FtpsArea, FtpsFactory

# A TLS record carries up to 16 KiB: what a data connection adds to a file's bytes on the
# wire (handshake, record headers and tags, close_notify) stays within this.
OVERHEAD = 0.01


def curl(
    server: FtpsArea, *args: str | Path, password: str | None = None
) -> subprocess.CompletedProcess[str]:
    """curl over explicit FTPS (``--ssl-reqd``), trusting the server's CA; the login is
    given on stdin, not in the process's arguments. TLS 1.2: curl 7.88 closes an upload's
    data connection without reading what vsftpd sent after a TLS 1.3 handshake, and the
    reset loses the upload's tail now and then (curl issue #6149)."""
    login = f'user = "{server.username}:{password or server.password}"\n'
    argv = ["curl", "-sS", "--ssl-reqd", "--tls-max", "1.2", "--cacert", str(server.ca)]
    return subprocess.run(
        [*argv, "-K", "-", *map(str, args)],
        input=login,
        capture_output=True,
        text=True,
        timeout=60,
    )


class ReusingFTPS(ftplib.FTP_TLS):
    """ftplib's FTPS client whose data connections resume the control connection's TLS
    session, as ena-upload-cli's does (stock ``FTP_TLS`` starts a new one)."""

    def ntransfercmd(
        self, cmd: str, rest: int | str | None = None
    ) -> tuple[socket.socket, int | None]:
        conn, size = ftplib.FTP.ntransfercmd(self, cmd, rest)
        assert isinstance(self.sock, ssl.SSLSocket)
        wrapped = self.context.wrap_socket(
            conn, server_hostname=self.host, session=self.sock.session
        )
        return wrapped, size


def login(
    server: FtpsArea, kind: type[ftplib.FTP_TLS] = ReusingFTPS, *, password: str | None = None
) -> ftplib.FTP_TLS:
    """A client logged in over TLS, data channel protected (``PROT P``)."""
    context = ssl.create_default_context(cafile=server.ca)
    client = kind(context=context, timeout=30)
    try:
        client.connect(server.host, server.port)
        client.login(server.username, password or server.password)
        client.prot_p()
    except BaseException:
        client.close()
        raise
    return client


def commands(server: FtpsArea, verb: str) -> list[str]:
    """The arguments of each ``verb`` command in vsftpd's log."""
    return re.findall(rf'FTP command: Client "127\.0\.0\.1", "{verb} ?([^"]*)"', server.log())


def test_curl_uploads_into_the_area_over_tls_and_a_passive_data_connection(
    ftps: FtpsArea, tmp_path: Path
) -> None:
    data = os.urandom(300_000)
    local = tmp_path / "reads_1.fastq.gz"
    local.write_bytes(data)
    done = curl(ftps, "-T", local, f"ftp://{ftps.host}:{ftps.port}/reads_1.fastq.gz")
    assert done.returncode == 0, done.stderr

    landed = ftps.area / "reads_1.fastq.gz"
    assert landed.read_bytes() == data
    assert landed.stat().st_uid == ftps.area.stat().st_uid != 0  # the account's, not root's
    assert landed.stat().st_mode & 0o777 == 0o644
    assert ftps.endpoint == f"ftps://127.0.0.1:{ftps.port}"
    assert ftps.env() == {
        "WEBIN_USERNAME": ftps.username,
        "WEBIN_PASSWORD": ftps.password,
        "SSL_CERT_FILE": str(ftps.ca),
    }
    log = ftps.log()
    assert f'[{ftps.username}] OK LOGIN: Client "127.0.0.1"' in log
    assert commands(ftps, "AUTH")[:1] in (["TLS"], ["SSL"])
    assert commands(ftps, "PROT") == ["P"]
    assert commands(ftps, "STOR") == ["reads_1.fastq.gz"]
    assert re.search(r'OK UPLOAD: Client "127\.0\.0\.1", "/reads_1\.fastq\.gz", 300000 bytes', log)
    (wire,) = ftps.data_bytes_received()
    assert len(data) < wire < len(data) * (1 + OVERHEAD)
    assert ftps.password not in log


def test_logins_and_data_need_tls_and_data_connections_its_session(ftps: FtpsArea) -> None:
    with ftplib.FTP() as plain:  # no AUTH TLS
        plain.connect(ftps.host, ftps.port, timeout=30)
        with pytest.raises(ftplib.error_perm, match="530 Non-anonymous sessions must use"):
            plain.login(ftps.username, ftps.password)

    with login(ftps, ftplib.FTP_TLS) as clear:
        clear.prot_c()
        with pytest.raises(ftplib.error_perm, match="522 Data connections must be encrypted"):
            clear.storbinary("STOR clear.bin", io.BytesIO(b"x" * 1000))

    # Stock ftplib: a TLS data connection, but a new session: refused.
    with login(ftps, ftplib.FTP_TLS) as stock, pytest.raises((ftplib.Error, OSError)):
        stock.storbinary("STOR stock.bin", io.BytesIO(b"x" * 1000))
    assert "session reuse required" in ftps.log()
    assert not (ftps.area / "stock.bin").exists() or (ftps.area / "stock.bin").stat().st_size == 0

    # The session resumed: accepted. The area is the account's root.
    data = os.urandom(100_000)
    with login(ftps) as client:
        assert isinstance(client.sock, ssl.SSLSocket)
        assert client.sock.version() == "TLSv1.3"
        assert client.pwd() == "/"
        client.mkd("study")
        assert client.storbinary("STOR study/reused.bin", io.BytesIO(data)).startswith("226")
        assert client.nlst("study") == ["study/reused.bin"]
        assert client.size("study/reused.bin") == len(data)
    assert (ftps.area / "study" / "reused.bin").read_bytes() == data


def test_an_upload_resumes_with_appe_and_with_rest_then_stor(
    ftps: FtpsArea, tmp_path: Path
) -> None:
    data = os.urandom(500_000)
    prefix = 200_000
    (tmp_path / "head").write_bytes(data[:prefix])
    (tmp_path / "whole").write_bytes(data)
    url = f"ftp://{ftps.host}:{ftps.port}/appended.bin"
    assert curl(ftps, "-T", tmp_path / "head", url).returncode == 0
    done = curl(ftps, "-C", "-", "-T", tmp_path / "whole", url)  # SIZE, then APPE the rest
    assert done.returncode == 0, done.stderr
    assert (ftps.area / "appended.bin").read_bytes() == data
    assert commands(ftps, "SIZE") == ["appended.bin"]
    assert commands(ftps, "APPE") == ["appended.bin"]
    rest = ftps.data_bytes_received()[1]
    assert len(data) - prefix < rest < (len(data) - prefix) * (1 + OVERHEAD)

    with login(ftps) as client:
        client.storbinary("STOR restarted.bin", io.BytesIO(data[:prefix]))
        remote = client.size("restarted.bin")
        assert remote == prefix
        source = io.BytesIO(data)
        source.seek(remote)
        client.storbinary("STOR restarted.bin", source, rest=remote)  # REST n, then STOR
    assert (ftps.area / "restarted.bin").read_bytes() == data
    assert commands(ftps, "REST") == [str(prefix)]


def test_the_cut_drops_an_upload_at_the_byte_and_a_listing_does_not_take_it(
    ftps: FtpsArea, tmp_path: Path
) -> None:
    data = os.urandom(1_000_000)
    local = tmp_path / "big.bin"
    local.write_bytes(data)
    url = f"ftp://{ftps.host}:{ftps.port}/big.bin"
    ftps.cut_upload_after(200_000)

    listing = curl(ftps, "--list-only", f"ftp://{ftps.host}:{ftps.port}/")
    assert listing.returncode == 0, listing.stderr
    assert listing.stdout == ""
    cut = curl(ftps, "-T", local, url)
    assert cut.returncode != 0
    received = ftps.data_bytes_received()
    assert received[0] < 2000  # the listing's connection: TLS handshake and little else
    assert received[1] == 200_000

    # The server keeps what it wrote before the cut: a prefix of the file (less what was
    # in its buffer and in the TLS record the cut split, which it cannot decrypt).
    log = ftps.wait_for('FAIL UPLOAD: Client "127.0.0.1", "/big.bin"')
    partial = (ftps.area / "big.bin").read_bytes()
    assert 0 < len(partial) < 200_000
    assert data.startswith(partial)
    assert f'"/big.bin", {len(partial)} bytes' in log

    done = curl(ftps, "-C", "-", "-T", local, url)  # the cut was taken: this one goes whole
    assert done.returncode == 0, done.stderr
    assert (ftps.area / "big.bin").read_bytes() == data
    resumed = ftps.data_bytes_received()[2]
    assert resumed < (len(data) - len(partial)) * (1 + OVERHEAD)
    assert sum(ftps.data_bytes_received()[1:]) < len(data) * 1.25


def test_a_wrong_password_is_refused_at_once_and_no_password_is_logged(
    ftps: FtpsArea,
) -> None:
    wrong = "not-the-Webin-password"
    started = time.monotonic()
    done = curl(ftps, f"ftp://{ftps.host}:{ftps.port}/", password=wrong)
    took = time.monotonic() - started
    assert done.returncode == 67, done.stderr  # curl: "The user name, password … not accepted"
    assert "530" in done.stderr
    assert took < 2.0  # vsftpd's delay_failed_login is 0

    with pytest.raises(ftplib.error_perm, match=r"^530"):
        login(ftps, password=wrong)
    log = ftps.log()
    assert log.count(f'[{ftps.username}] FAIL LOGIN: Client "127.0.0.1"') == 2
    assert "OK LOGIN" not in log
    assert wrong not in log
    assert ftps.password not in log
    assert "PASS <password>" in log


def test_connections_beyond_max_per_ip_are_refused(ftps_factory: FtpsFactory) -> None:
    server = ftps_factory(max_per_ip=2)
    with login(server) as first, login(server) as second:
        assert first.pwd() == second.pwd() == "/"
        with pytest.raises(ftplib.error_temp, match=r"^421 There are too many connections"):
            login(server)


def test_tls_max_caps_the_version_the_server_offers(ftps_factory: FtpsFactory) -> None:
    server = ftps_factory(tls_max="1.2")
    data = os.urandom(50_000)
    with login(server) as client:
        assert isinstance(client.sock, ssl.SSLSocket)
        assert client.sock.version() == "TLSv1.2"
        client.storbinary("STOR twelve.bin", io.BytesIO(data))
    assert (server.area / "twelve.bin").read_bytes() == data
    with pytest.raises(ValueError, match=r"tls_max is 1\.2 or 1\.3"):
        FtpsArea(ca=server.ca, cert=server.ca, key=server.ca, tls_max="1.1")  # type: ignore[arg-type]
