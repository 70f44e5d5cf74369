"""A throw-away certificate authority for HTTPS tests, made with the ``openssl`` command.

Its server certificate names 127.0.0.1 and localhost (the emulator's own addresses)
and www.ebi.ac.uk and ftp.sra.ebi.ac.uk, so a client whose connections to the public
hosts are redirected to loopback still verifies the name it asked for.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

__all__ = ["TlsFiles", "make_ca"]

NAMES = (
    "127.0.0.1",
    "localhost",
    "www.ebi.ac.uk",
    # ENA's test service: clients' --dev/--test switches submit there.
    "wwwdev.ebi.ac.uk",
    "ftp.sra.ebi.ac.uk",
    # NCBI E-utilities: ffq asks them too; its test answers them from a loopback stub.
    "eutils.ncbi.nlm.nih.gov",
)


@dataclass(frozen=True)
class TlsFiles:
    ca: Path  # what clients trust (SSL_CERT_FILE)
    cert: Path  # the emulator's certificate, signed by ``ca``
    key: Path


def _openssl(*args: str, cwd: Path) -> None:
    done = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"openssl {args[0]} failed: {done.stderr.strip()}")


def make_ca(directory: Path) -> TlsFiles:
    """A CA and a server certificate it signed, valid for two days, in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    key = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    _openssl(
        "req", "-x509", *key, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
        "-subj", "/CN=ebi-mirror test CA",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        "-addext", "subjectKeyIdentifier=hash",
        cwd=directory,
    )  # fmt: skip
    _openssl(
        "req", "-new", *key, "-keyout", "server.key", "-out", "server.csr",
        "-subj", "/CN=127.0.0.1",
        cwd=directory,
    )  # fmt: skip
    names = ",".join(("IP:" if n[0].isdigit() else "DNS:") + n for n in NAMES)
    (directory / "server.ext").write_text(
        f"subjectAltName={names}\n"
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature\n"
        "extendedKeyUsage=serverAuth\n"
        "subjectKeyIdentifier=hash\n"
        "authorityKeyIdentifier=keyid,issuer\n"
    )
    _openssl(
        "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "server.ext",
        cwd=directory,
    )  # fmt: skip
    return TlsFiles(
        ca=directory / "ca.pem", cert=directory / "server.pem", key=directory / "server.key"
    )
