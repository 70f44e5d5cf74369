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
import contextlib
import fcntl
import os
import pwd
import random
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time
from collections.abc import Coroutine
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, TypeVar

from .._cutproxy import CuttingProxy

__all__ = ["AREA_BASE", "VSFTPD", "WEBIN_PASSWORD", "WEBIN_USER", "FtpsArea"]

VSFTPD = "/usr/sbin/vsftpd"
#: The account the server logs in, a Webin-like name (ENA's FTP accepts ``Webin-N``).
#: Created on first use and kept: the account is the machine's, shared by every server.
WEBIN_USER = "Webin-59999"
#: Its password. Fixed (servers running side by side share the account); distinctive, so
#: a test can look for it in output, logs and files.
WEBIN_PASSWORD = "ftps-Webin-pa55word-7q"
#: Where each server's directory goes (config, log, certificate, the area): every path
#: component must be traversable by the account, which rules out pytest's 0700 ones.
AREA_BASE = Path(os.environ.get("FTPS_AREA_BASE", "/var/lib/ebi-mirror-ftps"))
_PAM_SERVICE = "ebi-mirror-ftps"
# Debian's own /etc/pam.d/vsftpd asks for a login shell (pam_shells) and reads
# /etc/ftpusers; the account here has neither, so it gets a service of its own. pam_unix
# waits 2 s after a wrong password unless told ``nodelay``: a refused login is answered
# at once, as vsftpd's own delay_failed_login=0 asks.
_PAM = (
    "# ebi-mirror's test FTPS server (mirror/emulator/webin/_ftps.py): the account's\n"
    "# password and nothing else.\n"
    "auth     required pam_unix.so nodelay\n"
    "account  required pam_unix.so\n"
    "session  required pam_unix.so\n"
)
_HOST = "127.0.0.1"
_BEHIND = "127.0.0.2"  # where vsftpd listens when the proxy is in front of it
_DATA_PORTS = 16
_DEADLINE = 20.0

R = TypeVar("R")
TlsVersion = Literal["1.2", "1.3"]


def _run(*args: str, input: str | None = None) -> None:
    subprocess.run(list(args), input=input, text=True, check=True, capture_output=True)


def ensure_account() -> None:
    """The system account ``WEBIN_USER`` with password ``WEBIN_PASSWORD``, and its PAM
    service."""
    AREA_BASE.mkdir(mode=0o755, parents=True, exist_ok=True)
    # One lock for every process: useradd and chpasswd lock the account files and fail
    # rather than wait.
    with open(AREA_BASE / ".account.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        # vsftpd changes into the account's home before its chroot to ``local_root``: the
        # home must exist and be traversable (an area itself is per server).
        try:
            home = pwd.getpwnam(WEBIN_USER).pw_dir
        except KeyError:
            _run(
                "useradd",
                "--system",
                "--no-create-home",
                "--home-dir",
                str(AREA_BASE),
                "--shell",
                "/usr/sbin/nologin",
                WEBIN_USER,
            )
        else:
            if home != str(AREA_BASE):
                _run("usermod", "--home", str(AREA_BASE), WEBIN_USER)
        _run("chpasswd", input=f"{WEBIN_USER}:{WEBIN_PASSWORD}\n")
        pam = Path("/etc/pam.d") / _PAM_SERVICE
        if not pam.exists() or pam.read_text() != _PAM:
            pam.write_text(_PAM)
        # vsftpd's pre-login process runs chrooted here: root-owned, empty, read-only.
        empty = AREA_BASE / "empty"
        empty.mkdir(mode=0o555, exist_ok=True)


def _bindable(host: str, port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _data_ports(host: str) -> int:
    """The first of ``_DATA_PORTS`` consecutive free ports, below Linux's ephemeral range
    (32768 up), where outgoing connections do not take them in the meantime."""
    for _attempt in range(100):
        first = random.randrange(20000, 32000 - _DATA_PORTS)
        if all(_bindable(host, p) for p in range(first, first + _DATA_PORTS)):
            return first
    raise RuntimeError(f"no {_DATA_PORTS} consecutive free ports on {host} for passive mode")


def _listening(host: str, port: int) -> bool:
    """Whether a socket listens on ``host:port`` (/proc/net/tcp: no connection made, so
    nothing in the server's log)."""
    (address,) = struct.unpack("=I", socket.inet_aton(host))  # as the kernel prints it
    wanted = f"{address:08X}:{port:04X}"
    with open("/proc/net/tcp") as table:
        return any(
            fields[1] == wanted and fields[3] == "0A"
            for fields in (line.split() for line in table.readlines()[1:])
        )


def _config(base: Path, listen: str, port: int, data: int, *, max_per_ip: int) -> str:
    return "\n".join(
        [
            # One process in the foreground, stopped by its PID; no IPv6 listener.
            "listen=YES",
            "listen_ipv6=NO",
            "background=NO",
            f"listen_address={listen}",
            f"listen_port={port}",
            "ftpd_banner=ebi-mirror test FTPS (a Webin upload area)",
            # Local accounts only, through our PAM service; the area is the account's
            # root, writable (Webin users upload into the root of their area).
            "anonymous_enable=NO",
            "local_enable=YES",
            f"pam_service_name={_PAM_SERVICE}",
            "userlist_enable=NO",
            "write_enable=YES",
            "local_umask=022",
            "chroot_local_user=YES",
            "allow_writeable_chroot=YES",
            f"local_root={base / 'area'}",
            f"secure_chroot_dir={AREA_BASE / 'empty'}",
            # A refused login (530) at once, not after vsftpd's default second.
            "delay_failed_login=0",
            "delay_successful_login=0",
            f"max_per_ip={max_per_ip}",
            # Explicit FTPS (AUTH TLS), required for logins and for data; a data
            # connection must resume the control connection's TLS session.
            "ssl_enable=YES",
            f"rsa_cert_file={base / 'server.pem'}",
            f"rsa_private_key_file={base / 'server.key'}",
            "force_local_logins_ssl=YES",
            "force_local_data_ssl=YES",
            "require_ssl_reuse=YES",
            "ssl_ciphers=HIGH",
            "ssl_request_cert=NO",
            "ssl_sslv2=NO",
            "ssl_sslv3=NO",
            # Passive mode only (Webin: "FTP is used in passive mode"), on our ports,
            # announcing the client-facing address.
            "pasv_enable=YES",
            "port_enable=NO",
            f"pasv_min_port={data}",
            f"pasv_max_port={data + _DATA_PORTS - 1}",
            f"pasv_address={_HOST}",
            "connect_from_port_20=NO",
            # Containers: vsftpd's seccomp filter and network/PID namespaces are often
            # refused there ("500 OOPS: ..."); none is what the tests are about.
            "seccomp_sandbox=NO",
            "isolate=NO",
            "isolate_network=NO",
            # Every command, reply and transfer, in the server's own directory. vsftpd
            # writes "PASS <password>" for the password.
            "xferlog_enable=YES",
            "xferlog_std_format=NO",
            "log_ftp_protocol=YES",
            f"vsftpd_log_file={base / 'vsftpd.log'}",
            "dirmessage_enable=NO",
            "",
        ]
    )


class _Vsftpd:
    """vsftpd in the foreground as a child process; what it prints collected by a thread."""

    def __init__(self, config: Path, env: dict[str, str]) -> None:
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [VSFTPD, str(config)],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, name="vsftpd-out", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    def wait_listening(self, host: str, port: int) -> bool:
        deadline = time.monotonic() + _DEADLINE
        while self.proc.poll() is None and time.monotonic() < deadline:
            if _listening(host, port):
                return True
            time.sleep(0.02)  # polling a process we cannot be told about
        return False

    def stop(self) -> None:
        # Each session is a child (and grandchild) of the listener: stopped with it, so
        # no session outlives its area.
        pids = [self.proc.pid, *_descendants(self.proc.pid)] if self.proc.poll() is None else []
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def _descendants(root: int) -> list[int]:
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            # "pid (comm) state ppid ...": comm may hold spaces and parentheses.
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, todo = [], [root]
    while todo:
        parent = todo.pop()
        children = [pid for pid, ppid in parents.items() if ppid == parent]
        found += children
        todo += children
    return found


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
        self._vsftpd: _Vsftpd | None = None
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
            self.server_port = _free_port(listen)
            if self._faults:
                try:
                    data = self._start_proxies(self.server_port)
                except OSError as exc:
                    failures.append(f"proxy: {exc}")
                    continue
            else:
                data = _data_ports(_HOST)
            config = base / "vsftpd.conf"
            config.write_text(
                _config(base, listen, self.server_port, data, max_per_ip=self._max_per_ip)
            )
            config.chmod(0o600)
            self._vsftpd = _Vsftpd(config, self._environment(base))
            if self._vsftpd.wait_listening(listen, self.server_port):
                self.port = self._proxies[0].port if self._faults else self.server_port
                return
            self._vsftpd.stop()
            failures.append("".join(self._vsftpd.lines).strip().replace("\n", " | "))
            self._stop_proxies()
        raise RuntimeError(f"vsftpd did not start: {'; '.join(failures)}")

    def _environment(self, base: Path) -> dict[str, str]:
        """vsftpd 3.0.3 has no setting for the highest TLS version: OpenSSL's own
        configuration (``OPENSSL_CONF``) caps it."""
        env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")}
        if self._tls_max == "1.2":
            conf = base / "openssl.cnf"
            conf.write_text(
                "openssl_conf = default_conf\n"
                "[default_conf]\nssl_conf = ssl_sect\n"
                "[ssl_sect]\nsystem_default = system_default_sect\n"
                "[system_default_sect]\nMinProtocol = TLSv1.2\nMaxProtocol = TLSv1.2\n"
            )
            env["OPENSSL_CONF"] = str(conf)
        return env

    def _start_proxies(self, server_port: int) -> int:
        """The control port's proxy and the passive ports' one; the first passive port."""
        self._loop = self._loop or _LoopThread()
        data = _data_ports(_HOST)
        self._proxies = [
            CuttingProxy((_BEHIND, server_port), _HOST, source=_HOST),
            CuttingProxy(
                routes={p: (_BEHIND, p) for p in range(data, data + _DATA_PORTS)}, source=_HOST
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
