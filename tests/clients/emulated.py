"""A running emulator (HTTPS, test CA) and the environment that sends a client to it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from mirror.emulator import Catalog, Emulator, EnaOptions, TlsOptions

from ..tls import TlsFiles, make_ca

__all__ = ["Emulated", "emulated", "python_of"]

REDIRECT = Path(__file__).with_name("redirect.py")


@dataclass
class Emulated:
    emu: Emulator
    tls: TlsFiles
    env: dict[str, str]

    async def run(
        self,
        python: Path,
        command: str,
        *args: str,
        cwd: Path,
        limit: float = 120,
        launcher: Path = REDIRECT,
        stdin: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """``command`` (a console script of the venv of ``python``) through ``launcher``
        (redirect.py); in a thread, so the emulator on this event loop keeps answering."""
        return await asyncio.to_thread(
            subprocess.run,
            [str(python), str(launcher), command, *args],
            cwd=cwd,
            env=self.env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=limit,
            check=False,
        )


def _authority(url: str) -> str:
    return urlsplit(url).netloc


@contextlib.asynccontextmanager
async def emulated(
    tmp_path: Path,
    *,
    tls_hosts: Sequence[str] | None = None,
    local_links: bool = False,
    catalog: Catalog | None = None,
    extra_env: Mapping[str, str] | None = None,
) -> AsyncIterator[Emulated]:
    """The demo archive on loopback, served as the real one is (HTTPS), and the client
    environment: public host names routed to it, its CA trusted, HOME in ``tmp_path``."""
    # openssl runs as child processes: off the event loop, which is already serving.
    tls = await asyncio.to_thread(make_ca, tmp_path / "ca")
    async with Emulator(
        catalog or Catalog.demo(),
        ena=EnaOptions(portal_rate_limit=None),
        tls=TlsOptions(cert=tls.cert, key=tls.key, hosts=tls_hosts),
        local_links=local_links,
    ) as emu:
        www = _authority(emu.endpoints["ena_portal"])
        ftp = _authority(emu.endpoints["ena_files"])
        ftp_port = 443 if emu.endpoints["ena_files"].startswith("https") else 80
        home = tmp_path / "home"
        home.mkdir()
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(home),
            "LANG": "C.UTF-8",
            "EMU_CONNECT": f"www.ebi.ac.uk:443={www},ftp.sra.ebi.ac.uk:{ftp_port}={ftp}",
            "SSL_CERT_FILE": str(tls.ca),
            "REQUESTS_CA_BUNDLE": str(tls.ca),
            "CURL_CA_BUNDLE": str(tls.ca),
            "PYTHONDONTWRITEBYTECODE": "1",
            **(extra_env or {}),
        }
        yield Emulated(emu=emu, tls=tls, env=env)


def python_of(name: str) -> Path:
    """The interpreter of client ``name``'s virtual environment."""
    from .conftest import client_bin

    return client_bin(name, "python")
