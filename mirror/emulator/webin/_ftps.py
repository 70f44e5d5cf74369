"""ENA's Webin upload area served for real: vsftpd with explicit FTPS, as ``webin2.ebi.ac.uk:21``.

EBI described its upload service as vsftpd (with a PAM module of its own); clients that
work with it today (ena-upload-cli) reuse the control connection's TLS session on every
data connection, which is what vsftpd's ``require_ssl_reuse`` asks for. So the server here
is vsftpd itself, not an imitation: started as root on a free loopback port, with a
config file of its own (never ``/etc/vsftpd.conf``), one local account (``WEBIN_USER``,
PAM service ``ebi-mirror-ftps``) chrooted to a fresh upload area per server, TLS
required for logins and data, passive mode only, failed logins answered at once.

Faults: clients reach vsftpd through a counting, cutting TCP proxy (``CuttingProxy``),
control connection and passive data ports alike. vsftpd listens on 127.0.0.2 and
announces 127.0.0.1 for passive connections; the proxy listens on 127.0.0.1 at the
control port and at each port of the passive range, forwarding to the same port on
127.0.0.2 from 127.0.0.1, so vsftpd's check that a data connection comes from the
control connection's address holds. Clients using EPSV (which connect to the control
connection's host) and PASV (which connect to the announced address) both go through
it. TLS passes through untouched; counts are bytes on the wire.

``FtpsArea(..., faults=False)`` leaves the proxy out (vsftpd on 127.0.0.1 directly): what
a benchmark measures.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import pwd
import shutil
import tempfile
import threading
import time
from collections.abc import Coroutine
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from .._cutproxy import CuttingProxy
from ._vsftpd import (
    AREA_BASE,
    DATA_PORTS,
    VSFTPD,
    WEBIN_PASSWORD,
    WEBIN_USER,
    TlsVersion,
    Vsftpd,
    config,
    data_ports,
    ensure_account,
    environment,
    free_port,
)

__all__ = ["AREA_BASE", "VSFTPD", "WEBIN_PASSWORD", "WEBIN_USER", "FtpsArea", "TlsVersion"]

_HOST = "127.0.0.1"
_BEHIND = "127.0.0.2"  # where vsftpd listens when the proxy is in front of it
_DEADLINE = 20.0

R = TypeVar("R")


class _LoopThread:
    """An event loop in a daemon thread, where the proxies run; ``asyncio.run`` in the
    thread, so closing it cancels what is left and closes every transport first."""

    def __init__(self) -> None:
        started: concurrent.futures.Future[asyncio.AbstractEventLoop] = concurrent.futures.Future()
        self._stopping: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._main, args=(started,), name="ftps-proxy")
        self._thread.daemon = True
        self._thread.start()
        self.loop = started.result(_DEADLINE)

    def _main(self, started: concurrent.futures.Future[asyncio.AbstractEventLoop]) -> None:
        async def main() -> None:
            self._stopping = asyncio.Event()
            started.set_result(asyncio.get_running_loop())
            await self._stopping.wait()

        asyncio.run(main())

    def run(self, coro: Coroutine[Any, Any, R]) -> R:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(_DEADLINE)

    def close(self) -> None:
        if self._stopping is not None:
            self.loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join(_DEADLINE)


class FtpsArea:
    """vsftpd serving a fresh, empty Webin upload area over explicit FTPS.

    Use as ``with FtpsArea(ca=…, cert=…, key=…) as server:`` (``cert``/``key``: a
    certificate for 127.0.0.1 that ``ca`` signed). Then:

    - ``host``, ``port``, ``endpoint`` (``ftps://127.0.0.1:PORT``): where clients connect;
    - ``username``, ``password``: the account (``WEBIN_USER``, ``WEBIN_PASSWORD``);
    - ``ca``: the PEM file clients trust; ``env()``: ``WEBIN_USERNAME``,
      ``WEBIN_PASSWORD``, ``SSL_CERT_FILE`` as the ``mirror`` command reads them;
    - ``area``: the upload area on disk (the user's ``/``), to assert on;
    - ``log()``: vsftpd's log so far (``OK LOGIN``, ``FAIL LOGIN``, every command and
      reply as ``FTP command: Client "127.0.0.1", "STOR name"``, ``OK UPLOAD``);
    - with ``faults`` (the default): ``cut_upload_after(n, times=1)`` drops each of the
      next ``times`` data connections to carry ``n`` bytes client → server at exactly
      ``n`` (bytes on the wire, TLS records included; a listing's connection, which
      carries a few hundred, does not take the cut); ``data_bytes_received()``: client →
      server bytes per data connection so far, in order of arrival.

    A dropped upload: vsftpd answers 426, logs ``FAIL UPLOAD … N bytes`` and keeps the
    N bytes it wrote (``delete_failed_uploads`` is off): a prefix of what was sent, less
    what it held in its buffer and the TLS record the cut split. ``max_per_ip``: vsftpd
    refuses (421) connections beyond this many from one address (0: no limit).

    ``tls_max``: the highest TLS version offered, "1.3" (vsftpd on today's OpenSSL) or
    "1.2" (what webin-cli asks for). Under TLS 1.3, uploads by clients that close the
    data connection as soon as they have written (curl 7.88 always, lftp at times) end
    now and then in 426 with the file's tail lost, never under TLS 1.2 (on this machine,
    1 MB uploads in two loops at once: curl 39 of 60 under 1.3, 0 of 60 under 1.2; curl
    issue #6149, vsftpd's "sleep before closing and it works"). A client must read the
    server's close_notify (or end of stream) before it closes an upload's connection.

    Everything (config, log, area) lives in a new directory under ``AREA_BASE``, removed
    on exit; vsftpd and its sessions stopped by their PIDs.
    """

    def __init__(
        self,
        *,
        ca: Path,
        cert: Path,
        key: Path,
        faults: bool = True,
        max_per_ip: int = 0,
        tls_max: TlsVersion = "1.3",
    ) -> None:
        if tls_max not in ("1.2", "1.3"):
            raise ValueError(f"tls_max is 1.2 or 1.3, not {tls_max!r}")
        self.host = _HOST
        self.port = 0
        self.username = WEBIN_USER
        self.password = WEBIN_PASSWORD
        self.ca = ca
        self._cert = cert
        self._key = key
        self._faults = faults
        self._max_per_ip = max_per_ip
        self._tls_max = tls_max
        self._base: Path | None = None
        self._vsftpd: Vsftpd | None = None
        self._loop: _LoopThread | None = None
        self._proxies: list[CuttingProxy] = []
        self.server_port = 0  # vsftpd's own (behind the proxy with faults)

    @property
    def endpoint(self) -> str:
        return f"ftps://{self.host}:{self.port}"

    @property
    def base(self) -> Path:
        if self._base is None:
            raise RuntimeError("the FTPS server is not started")
        return self._base

    @property
    def area(self) -> Path:
        return self.base / "area"

    def env(self) -> dict[str, str]:
        """Credentials and trust as the ``mirror`` command reads them."""
        return {
            "WEBIN_USERNAME": self.username,
            "WEBIN_PASSWORD": self.password,
            "SSL_CERT_FILE": str(self.ca),
        }

    def start(self) -> None:
        if os.geteuid() != 0:
            raise RuntimeError("the FTPS server runs vsftpd, which needs root")
        if not Path(VSFTPD).exists():
            raise RuntimeError(f"{VSFTPD} is missing: install vsftpd (.ci/tools does)")
        ensure_account()
        self._base = base = Path(tempfile.mkdtemp(prefix="ftps-", dir=AREA_BASE))
        try:
            self._start(base)
        except BaseException:
            self.stop()
            raise

    def _start(self, base: Path) -> None:
        base.chmod(0o755)
        self.area.mkdir(mode=0o755)
        account = pwd.getpwnam(WEBIN_USER)
        os.chown(self.area, account.pw_uid, account.pw_gid)
        for source, name in ((self._cert, "server.pem"), (self._key, "server.key")):
            shutil.copyfile(source, base / name)
            (base / name).chmod(0o600)
        listen = _BEHIND if self._faults else _HOST
        failures: list[str] = []
        for _attempt in range(3):  # a free port can be taken before vsftpd binds it
            self.server_port = free_port(listen)
            if self._faults:
                try:
                    data = self._start_proxies(self.server_port)
                except OSError as exc:
                    failures.append(f"proxy: {exc}")
                    continue
            else:
                data = data_ports(_HOST)
            conf = base / "vsftpd.conf"
            conf.write_text(
                config(
                    base,
                    listen,
                    self.server_port,
                    data,
                    max_per_ip=self._max_per_ip,
                    announce=_HOST,
                )
            )
            conf.chmod(0o600)
            self._vsftpd = Vsftpd(conf, environment(base, self._tls_max))
            if self._vsftpd.wait_listening(listen, self.server_port):
                self.port = self._proxies[0].port if self._faults else self.server_port
                return
            self._vsftpd.stop()
            failures.append("".join(self._vsftpd.lines).strip().replace("\n", " | "))
            self._stop_proxies()
        raise RuntimeError(f"vsftpd did not start: {'; '.join(failures)}")

    def _start_proxies(self, server_port: int) -> int:
        """The control port's proxy and the passive ports' one; the first passive port."""
        self._loop = self._loop or _LoopThread()
        data = data_ports(_HOST)
        self._proxies = [
            CuttingProxy((_BEHIND, server_port), _HOST, source=_HOST),
            CuttingProxy(
                routes={p: (_BEHIND, p) for p in range(data, data + DATA_PORTS)}, source=_HOST
            ),
        ]
        try:
            for proxy in self._proxies:
                self._loop.run(proxy.start())
        except OSError:
            self._stop_proxies()
            raise
        return data

    def _stop_proxies(self) -> None:
        if self._loop is not None:
            for proxy in self._proxies:
                self._loop.run(proxy.stop())
        self._proxies = []

    def stop(self) -> None:
        if self._vsftpd is not None:
            self._vsftpd.stop()
        self._stop_proxies()
        if self._loop is not None:
            self._loop.close()
            self._loop = None
        if self._base is not None:
            shutil.rmtree(self._base, ignore_errors=True)

    def __enter__(self) -> FtpsArea:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _data_proxy(self) -> CuttingProxy:
        if not self._faults or len(self._proxies) < 2:
            raise RuntimeError("this FTPS server runs without its proxy (faults=False)")
        return self._proxies[1]

    def cut_upload_after(self, nbytes: int, times: int = 1) -> None:
        """Drop each of the next ``times`` data connections that carry ``nbytes`` bytes
        client → server, once they have (the server receives exactly ``nbytes``)."""
        proxy, loop = self._data_proxy(), self._loop
        assert loop is not None

        async def cut() -> None:
            proxy.cut_upload_after(nbytes, times)

        loop.run(cut())

    def data_bytes_received(self) -> list[int]:
        """Client → server bytes on the wire of each data connection so far, in order."""
        proxy, loop = self._data_proxy(), self._loop
        assert loop is not None

        async def counts() -> list[int]:
            return proxy.bytes_received()

        return loop.run(counts())

    def log(self) -> str:
        """vsftpd's log so far."""
        path = self.base / "vsftpd.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def wait_for(self, text: str, count: int = 1, timeout: float = _DEADLINE) -> str:
        """The log once ``text`` is in it ``count`` times (a session whose data connection
        was cut finishes on its own time: ``OK UPLOAD``/``FAIL UPLOAD`` says it has)."""
        deadline = time.monotonic() + timeout
        while (log := self.log()).count(text) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"vsftpd's log has {text!r} {log.count(text)} times")
            time.sleep(0.02)  # vsftpd tells no one but its log
        return log
