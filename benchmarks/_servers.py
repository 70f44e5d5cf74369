"""The servers the suite starts on 127.0.0.1: nginx for files, the emulator for the Portal API
(and, in W6, for EGA's Data API and the file itself).

Each is started in its own process with its own files under the work directory, and
stopped by the PID it wrote (never by name).
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from ._tls import TlsFiles

__all__ = ["Emulator", "Nginx", "ServerError", "free_port"]

_START_TIMEOUT = 30.0


class ServerError(RuntimeError):
    """A server did not come up (its log says why)."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _wait_listening(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + _START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServerError(f"server exited with {proc.returncode}:\n{_read(log)}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise ServerError(f"nothing listening on 127.0.0.1:{port} after {_START_TIMEOUT:.0f} s")


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")[-4000:]
    except OSError:
        return ""


def _stop_pid(pid: int, proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        proc.wait(timeout=15)


_NGINX_CONF = """\
# Written by ebi-mirror's benchmarks; started as: nginx -c {conf} -p {prefix}
worker_processes 2;
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
{user}
events {{
    worker_connections 4096;
}}
http {{
    default_type application/octet-stream;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_timeout 65;
    keepalive_requests 1000000;
    open_file_cache max=20000 inactive=120s;
    access_log {access_log};
    client_body_temp_path {prefix}/tmp/body;
    proxy_temp_path {prefix}/tmp/proxy;
    fastcgi_temp_path {prefix}/tmp/fastcgi;
    uwsgi_temp_path {prefix}/tmp/uwsgi;
    scgi_temp_path {prefix}/tmp/scgi;
    server {{
        listen 127.0.0.1:{port}{ssl};
{tls}        root {root};
        location / {{
{location}
        }}
    }}
}}
"""


def _tls_directives(tls: TlsFiles | None) -> str:
    if tls is None:
        return ""
    # A session cache as any HTTPS server has: a reconnecting client resumes.
    return (
        f"        ssl_certificate {tls.cert};\n"
        f"        ssl_certificate_key {tls.key};\n"
        "        ssl_session_cache shared:SSL:10m;\n"
    )


class _Server:
    """A server process this suite started: ``with`` starts it, and stops it by its PID."""

    pid: int
    _proc: subprocess.Popen[bytes] | None

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        if self._proc is None:
            return
        _stop_pid(self.pid or self._proc.pid, self._proc)
        self._proc = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class Nginx(_Server):
    """nginx serving ``root`` (so ``/vol1/...`` URLs map to ``root/vol1/...``)."""

    def __init__(
        self,
        binary: str,
        root: Path,
        prefix: Path,
        *,
        access_log: bool = False,
        tls: TlsFiles | None = None,
        limit_rate: str | None = None,
    ) -> None:
        self.binary = binary
        #: With a certificate: HTTPS only (``ssl`` on the listening socket).
        self.tls = tls
        #: nginx's ``limit_rate`` (``40m``): each response, so each connection, at most
        #: this many bytes a second, as the archives' servers cap every stream.
        self.limit_rate = limit_rate
        self.root = root.resolve()
        self.prefix = prefix.resolve()
        self.access_log = self.prefix / "access.log" if access_log else None
        self.port = 0
        self.pid = 0
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        self.port = free_port()
        for sub in ("tmp/body", "tmp/proxy", "tmp/fastcgi", "tmp/uwsgi", "tmp/scgi"):
            (self.prefix / sub).mkdir(parents=True, exist_ok=True)
        conf = self.prefix / "nginx.conf"
        # Workers run as whoever started the suite, so they can read the work directory.
        user = f"user {pwd.getpwuid(os.getuid()).pw_name};" if os.geteuid() == 0 else ""
        if self.access_log is not None:
            self.access_log.unlink(missing_ok=True)
        conf.write_text(
            _NGINX_CONF.format(
                conf=conf,
                prefix=self.prefix,
                user=user,
                access_log=self.access_log or "off",
                port=self.port,
                root=self.root,
                ssl=" ssl" if self.tls else "",
                tls=_tls_directives(self.tls),
                location=f"            limit_rate {self.limit_rate};" if self.limit_rate else "",
            ),
            encoding="utf-8",
        )
        log = self.prefix / "error.log"
        pidfile = self.prefix / "nginx.pid"
        pidfile.unlink(missing_ok=True)
        with (self.prefix / "stdout.log").open("ab") as out:
            self._proc = subprocess.Popen(
                [self.binary, "-c", str(conf), "-p", str(self.prefix), "-e", str(log)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        _wait_listening(self.port, self._proc, log)
        deadline = time.monotonic() + _START_TIMEOUT
        while not pidfile.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        self.pid = int(pidfile.read_text().strip())

    def requests(self) -> int:
        """Requests in the access log so far (only with ``access_log=True``)."""
        if self.access_log is None:
            raise RuntimeError("this nginx keeps no access log")
        try:
            with self.access_log.open("rb") as f:
                return sum(1 for _ in f)
        except FileNotFoundError:
            return 0


class Emulator(_Server):
    """``python -m mirror.emulator`` for a catalog, with a JSON-lines request log.

    ``args`` are more command-line options (``--ega-user …``).
    """

    def __init__(self, catalog: dict[str, Any], workdir: Path, *, args: Sequence[str] = ()) -> None:
        self.workdir = workdir.resolve()
        self.catalog = catalog
        self.args = tuple(args)
        self.log = self.workdir / "requests.jsonl"
        self.endpoints: dict[str, str] = {}
        self.pid = 0
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        catalog = self.workdir / "catalog.json"
        catalog.write_text(json.dumps(self.catalog), encoding="utf-8")
        ready = self.workdir / "ready.json"
        ready.unlink(missing_ok=True)
        self.log.unlink(missing_ok=True)
        out_path = self.workdir / "emulator.log"
        with out_path.open("ab") as out:
            self._proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "mirror.emulator",
                    "--catalog",
                    str(catalog),
                    "--ready-file",
                    str(ready),
                    "--portal-rate-limit",
                    "0",
                    "--log",
                    str(self.log),
                    *self.args,
                ],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + _START_TIMEOUT
        while not ready.exists():
            if self._proc.poll() is not None:
                raise ServerError(
                    f"emulator exited with {self._proc.returncode}:\n{_read(out_path)}"
                )
            if time.monotonic() > deadline:
                raise ServerError(f"emulator not ready after {_START_TIMEOUT:.0f} s")
            time.sleep(0.05)
        info = json.loads(ready.read_text(encoding="utf-8"))
        self.endpoints = {str(k): str(v) for k, v in info["endpoints"].items()}
        self.pid = int(info["pid"])

    @property
    def portal(self) -> str:
        return self.endpoints["ena_portal"]

    @property
    def files(self) -> str:
        return self.endpoints["ena_files"]

    def requests(self, host: str = "www") -> int:
        """Requests the emulator has finished for ``host`` (``www``: the Portal API)."""
        needle = f'"host": "{host}"'.encode()
        try:
            with self.log.open("rb") as f:
                return sum(1 for line in f if needle in line)
        except FileNotFoundError:
            return 0
