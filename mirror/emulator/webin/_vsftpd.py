"""vsftpd for the Webin upload area: the account, the config file, the process.

What ``FtpsArea`` (``_ftps.py``) starts, kept apart from the proxy and the test-facing
API. Every setting says why in ``config``.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pwd
import random
import signal
import socket
import struct
import subprocess
import threading
import time
from pathlib import Path
from typing import Literal

from .._procfs import descendants

__all__ = [
    "AREA_BASE",
    "DATA_PORTS",
    "VSFTPD",
    "WEBIN_PASSWORD",
    "WEBIN_USER",
    "TlsVersion",
    "Vsftpd",
    "config",
    "data_ports",
    "ensure_account",
    "environment",
    "free_port",
]

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
#: How many passive ports each server has (a few uploads at once, and TIME_WAIT).
DATA_PORTS = 16
_DEADLINE = 20.0

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


def free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def data_ports(host: str) -> int:
    """The first of ``DATA_PORTS`` consecutive free ports, below Linux's ephemeral range
    (32768 up), where outgoing connections do not take them in the meantime."""
    for _attempt in range(100):
        first = random.randrange(20000, 32000 - DATA_PORTS)
        if all(_bindable(host, p) for p in range(first, first + DATA_PORTS)):
            return first
    raise RuntimeError(f"no {DATA_PORTS} consecutive free ports on {host} for passive mode")


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


def config(base: Path, listen: str, port: int, data: int, *, max_per_ip: int, announce: str) -> str:
    """vsftpd.conf for a server in ``base`` (its area ``base/area``), listening on
    ``listen:port``, passive ports ``data`` on, announcing ``announce`` for them."""
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
            # root, writable (Webin users upload into the root of their area): vsftpd
            # refuses a writable chroot ("500 OOPS: refusing to run with writable root
            # inside chroot()") unless allowed.
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
            f"pasv_max_port={data + DATA_PORTS - 1}",
            f"pasv_address={announce}",
            "connect_from_port_20=NO",
            # Not needed on a root Debian 12 container (checked), but vsftpd 3.0.3's
            # seccomp filter and its PID/network namespaces are refused in unprivileged
            # containers and by newer libcs ("500 OOPS: child died"); none is what the
            # tests are about.
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


class Vsftpd:
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
        pids = [self.proc.pid, *descendants(self.proc.pid)] if self.proc.poll() is None else []
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


def environment(base: Path, tls_max: TlsVersion) -> dict[str, str]:
    """vsftpd 3.0.3 has no setting for the highest TLS version: OpenSSL's own
    configuration (``OPENSSL_CONF``) caps it."""
    env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")}
    if tls_max == "1.2":
        conf = base / "openssl.cnf"
        conf.write_text(
            "openssl_conf = default_conf\n"
            "[default_conf]\nssl_conf = ssl_sect\n"
            "[ssl_sect]\nsystem_default = system_default_sect\n"
            "[system_default_sect]\nMinProtocol = TLSv1.2\nMaxProtocol = TLSv1.2\n"
        )
        env["OPENSSL_CONF"] = str(conf)
    return env
