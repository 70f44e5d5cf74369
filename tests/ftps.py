"""ENA's Webin upload area for tests: vsftpd over explicit FTPS, as ``webin2.ebi.ac.uk:21``.

The server is the real one (vsftpd as root, TLS required for logins and data, the data
channel resuming the control connection's TLS session, passive mode, the account
chrooted to its area), on free loopback ports, behind a proxy that counts and cuts data
connections. How vsftpd is set up, and why: ``mirror/emulator/webin/_ftps.py``.

Fixtures (registered by tests/conftest.py):

- ``ftps``: a server over a fresh, empty area, stopped after the test.
- ``ftps_factory(max_per_ip=0, tls_max="1.3")``: more of them (``max_per_ip``: vsftpd
  answers 421 to connections beyond that many from one address; ``tls_max``: "1.2" caps
  the TLS version the server offers).

Each is an ``FtpsArea``: ``host``, ``port``, ``endpoint`` (``ftps://127.0.0.1:PORT``),
``username``, ``password``, ``ca`` (the PEM to trust), ``area`` (the upload area on
disk), ``env()`` (``WEBIN_USERNAME``, ``WEBIN_PASSWORD``, ``SSL_CERT_FILE``),
``cut_upload_after(nbytes, times=1)``, ``data_bytes_received()`` and ``log()``. All
servers share one account (``WEBIN_USER`` / ``WEBIN_PASSWORD``: the account is the
machine's) and one certificate authority per session.
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Callable, Iterator

import pytest

from mirror.emulator.webin._ftps import WEBIN_PASSWORD, WEBIN_USER, FtpsArea, TlsVersion
from tests.tls import TlsFiles, make_ca

__all__ = ["WEBIN_PASSWORD", "WEBIN_USER", "FtpsArea", "FtpsFactory"]

FtpsFactory = Callable[..., FtpsArea]


@pytest.fixture(scope="session")
def ftps_tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """The session's certificate authority and a server certificate for 127.0.0.1."""
    return make_ca(tmp_path_factory.mktemp("ftps-tls"))


@pytest.fixture
def ftps_factory(ftps_tls: TlsFiles) -> Iterator[FtpsFactory]:
    """``ftps_factory(max_per_ip=0, tls_max="1.3")`` starts a server; all stop after the
    test."""
    with contextlib.ExitStack() as stack:

        def start(*, max_per_ip: int = 0, tls_max: TlsVersion = "1.3") -> FtpsArea:
            server = FtpsArea(
                ca=ftps_tls.ca,
                cert=ftps_tls.cert,
                key=ftps_tls.key,
                max_per_ip=max_per_ip,
                tls_max=tls_max,
            )
            try:
                server.start()
            except (RuntimeError, OSError, subprocess.CalledProcessError) as exc:
                pytest.fail(f"the FTPS server did not start: {exc}")
            stack.callback(server.stop)
            return server

        yield start


@pytest.fixture
def ftps(ftps_factory: FtpsFactory) -> FtpsArea:
    """A server over a fresh, empty upload area."""
    return ftps_factory()
