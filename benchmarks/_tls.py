"""A certificate authority of the suite's own, made with ``openssl``, for nginx's ``ssl``.

Every tool is told to trust it (curl ``--cacert``, aria2c and wget ``--ca-certificate``,
ebi-mirror ``SSL_CERT_FILE``); verification stays on everywhere.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

__all__ = ["TlsFiles", "make_ca"]

_KEY = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")


@dataclass(frozen=True)
class TlsFiles:
    ca: Path  # what the clients trust
    cert: Path  # nginx's certificate (127.0.0.1), signed by ``ca``
    key: Path


def _openssl(openssl: str, directory: Path, *args: str) -> None:
    done = subprocess.run(
        [openssl, *args], cwd=directory, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"openssl {args[0]} failed: {done.stderr.strip()}")


def make_ca(directory: Path, openssl: str = "openssl") -> TlsFiles:
    """A CA and a server certificate for 127.0.0.1 it signed, valid for two days."""
    directory.mkdir(parents=True, exist_ok=True)
    _openssl(
        openssl,
        directory,
        "req", "-x509", *_KEY, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
        "-subj", "/CN=ebi-mirror benchmarks CA",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip
    _openssl(
        openssl,
        directory,
        "req", "-new", *_KEY, "-keyout", "server.key", "-out", "server.csr",
        "-subj", "/CN=127.0.0.1",
    )  # fmt: skip
    (directory / "server.ext").write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature\n"
        "extendedKeyUsage=serverAuth\n",
        encoding="utf-8",
    )
    _openssl(
        openssl,
        directory,
        "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "server.ext",
    )  # fmt: skip
    return TlsFiles(
        ca=directory / "ca.pem", cert=directory / "server.pem", key=directory / "server.key"
    )
