"""EGA's Live Outbox served for real: OpenSSH's ``sshd`` over a directory of Crypt4GH files.

EGA's outbox is OpenSSH's ``internal-sftp`` in a chroot (LocalEGA-distribution), so the
server here is OpenSSH itself, not an imitation: started as root on a free loopback port
with a host key of its own, sftp only, read-only, chrooted, logging in by key or by
keyboard-interactive through PAM (never the plain password method, as EGA's). It needs
root (chroot, PAM, a system account) and Debian's ``openssh-server``.

What the user sees at login (the start directory, ``/outbox`` in the chroot)::

    EGAD50000000001/                       one directory per dataset, mode 0555
      sample_1.bam.c4gh                    encrypted for the recipient key, 0444
      calls_3.vcf.gz.unavailable.c4gh      cold storage: listed, unreadable (0000)
"""

from __future__ import annotations

import fcntl
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from .._procfs import cpu_seconds, descendants
from ._outbox import write_c4gh

if TYPE_CHECKING:
    from .._catalog import Catalog

__all__ = [
    "JAIL_BASE",
    "OUTBOX_PASSWORD",
    "OUTBOX_USER",
    "SSHD",
    "OutboxKeys",
    "SftpOutbox",
    "make_keys",
]

SSHD = "/usr/sbin/sshd"
#: The account the SFTP server logs in; created on first use, kept afterwards.
OUTBOX_USER = "egauser"
#: Its password (keyboard-interactive through PAM). Fixed: the account is the machine's,
#: and processes that serve an outbox at the same time share it.
OUTBOX_PASSWORD = "outbox-Pa55-word"
_SSH_PASSPHRASE = "ssh-key passphrase 7"
_C4GH_PASSPHRASE = "c4gh-key passphrase 9"
#: Where the servers' chroots go: every path component of a chroot must be root-owned
#: and writable by root alone, which rules out anything under /tmp.
JAIL_BASE = Path(os.environ.get("OUTBOX_JAIL_BASE", "/var/lib/ebi-mirror-outbox"))
# Encrypted files this big are written once into the cache and hard-linked into a jail.
_CACHE_ABOVE = 64 * 1024 * 1024
_START_DEADLINE = 20.0


@dataclass(frozen=True)
class OutboxKeys:
    """A user's keys (all in one private directory).

    ``ssh_key`` is an ed25519 key encrypted with ``ssh_passphrase``; ``ssh_key_plain`` is
    the same key without a passphrase (for OpenSSH's ``sftp -b``, which cannot be given
    one). ``c4gh_secret`` is encrypted with ``c4gh_passphrase``; ``c4gh_public`` is the
    raw 32-byte X25519 key the files are encrypted for.
    """

    ssh_key: Path
    ssh_key_plain: Path
    ssh_public: str
    ssh_passphrase: str
    c4gh_secret: Path
    c4gh_passphrase: str
    c4gh_public: bytes


def _run(*args: str | Path, input: str | None = None) -> None:
    subprocess.run([str(a) for a in args], input=input, text=True, check=True, capture_output=True)


def make_keys(folder: Path) -> OutboxKeys:
    """An ed25519 SSH key (a plain and an encrypted copy) and a Crypt4GH key pair."""
    import crypt4gh.keys
    import crypt4gh.keys.c4gh

    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    plain = folder / "ssh_key_plain"
    _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", OUTBOX_USER, "-f", plain)
    locked = folder / "ssh_key"
    shutil.copyfile(plain, locked)
    locked.chmod(0o600)
    _run("ssh-keygen", "-q", "-p", "-P", "", "-N", _SSH_PASSPHRASE, "-f", locked)
    secret, public = folder / "c4gh.sec", folder / "c4gh.pub"
    crypt4gh.keys.c4gh.generate(secret, public, _C4GH_PASSPHRASE.encode(), b"outbox user")
    return OutboxKeys(
        ssh_key=locked,
        ssh_key_plain=plain,
        ssh_public=(folder / "ssh_key_plain.pub").read_text().strip(),
        ssh_passphrase=_SSH_PASSPHRASE,
        c4gh_secret=secret,
        c4gh_passphrase=_C4GH_PASSPHRASE,
        c4gh_public=bytes(crypt4gh.keys.get_public_key(public)),
    )


def ensure_account() -> None:
    """The system account ``OUTBOX_USER`` with password ``OUTBOX_PASSWORD``."""
    JAIL_BASE.mkdir(mode=0o755, parents=True, exist_ok=True)
    # One lock for every process: useradd and chpasswd lock the account files and fail
    # rather than wait.
    with open(JAIL_BASE / ".account.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            pwd.getpwnam(OUTBOX_USER)
        except KeyError:
            _run(
                "useradd",
                "--system",
                "--no-create-home",
                "--home-dir",
                "/nonexistent",
                "--shell",
                "/usr/sbin/nologin",
                OUTBOX_USER,
            )
        _run("chpasswd", input=f"{OUTBOX_USER}:{OUTBOX_PASSWORD}\n")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _config(base: Path, jail: Path, port: int) -> str:
    # After EGA's reference sshd_config (LocalEGA-distribution): a key or
    # keyboard-interactive through PAM, never the plain password method (a space between
    # methods: either one suffices); chrooted, sftp only, read-only, starting in the
    # directory that lists the datasets. Compression off, as EGA's.
    return "\n".join(
        [
            f"ListenAddress 127.0.0.1:{port}",
            f"HostKey {base / 'host_key'}",
            f"PidFile {base / 'sshd.pid'}",
            f"AuthorizedKeysFile {base / 'authorized_keys'}",
            f"AllowUsers {OUTBOX_USER}",
            "AuthenticationMethods publickey keyboard-interactive",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication yes",
            "UsePAM yes",
            "PermitRootLogin no",
            "StrictModes yes",
            "UseDNS no",
            "PrintMotd no",
            "PermitTTY no",
            "DisableForwarding yes",
            "Compression no",
            "LoginGraceTime 30",
            "MaxStartups 50:30:100",
            "MaxSessions 20",
            "Subsystem sftp internal-sftp",
            f"ChrootDirectory {jail}",
            "ForceCommand internal-sftp -d /outbox -R",
            "",
        ]
    )


def _lay_out(catalog: Catalog, root: Path, public: bytes, cache: Path | None) -> None:
    for dataset in catalog.outbox_datasets:
        folder = root / dataset.dataset_id
        folder.mkdir(parents=True)
        for item in dataset.files:
            path = folder / item.c4gh_name
            if cache is not None and item.c4gh_size > _CACHE_ABOVE and not item.unavailable:
                cached = cache / f"{item.accession}-{item.size}-{public.hex()[:16]}.c4gh"
                if not cached.exists():
                    part = cached.with_suffix(".part")
                    write_c4gh(item, part, public)
                    part.chmod(0o444)
                    part.rename(cached)
                try:
                    os.link(cached, path)
                except OSError:  # another file system
                    shutil.copyfile(cached, path)
            else:
                write_c4gh(item, path, public)
            path.chmod(0o000 if item.unavailable else 0o444)
        folder.chmod(0o555)


class _CpuSampler:
    """The CPU time of a process's descendants, read from ``/proc`` every 50 ms by a thread
    of its own (Linux). sshd's session processes are not reaped in a way that adds their
    time to the daemon's ``cutime``, so their own counters are read while they live; the
    last 50 ms of each may be missed."""

    def __init__(self, pid: int) -> None:
        self._pid = pid
        self._seen: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def total(self) -> float:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="sshd-cpu", daemon=True)
            self._thread.start()
        self._sample()
        return sum(self._seen.values())

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self._sample()

    def _sample(self) -> None:
        for pid in descendants(self._pid):
            if (cpu := cpu_seconds(pid)) is not None:
                self._seen[pid] = cpu


class _Sshd:
    """``sshd -D -e`` as a child process; its log collected by a thread."""

    def __init__(self, config: Path) -> None:
        self.lines: list[str] = []
        self._ready = threading.Event()
        self.proc = subprocess.Popen(
            [SSHD, "-D", "-e", "-f", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, name="sshd-log", daemon=True)
        self._reader.start()
        self.cpu = _CpuSampler(self.proc.pid)

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)
            if line.startswith("Server listening on"):
                self._ready.set()
        self._ready.set()  # it exited: wait_ready sees that

    def wait_ready(self) -> bool:
        self._ready.wait(_START_DEADLINE)
        return self.proc.poll() is None and self._ready.is_set()

    def stop(self) -> None:
        self.cpu.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.proc.wait()
        self._reader.join(10)
        if self.proc.stderr is not None:
            self.proc.stderr.close()


class SftpOutbox:
    """``sshd`` serving ``catalog.outbox_datasets`` encrypted for ``keys.c4gh_public``,
    logging in ``OUTBOX_USER`` by ``keys``' SSH key or by ``OUTBOX_PASSWORD``.

    Use as ``with SftpOutbox(catalog, keys) as server:``; ``server.port`` is sshd's,
    ``server.root`` the directory the user sees at login, ``server.known_hosts(port)`` a
    known_hosts file naming the host key for ``[127.0.0.1]:port``, ``server.log()``
    sshd's log so far. ``cache``: a directory where files above 64 MiB are encrypted
    once and hard-linked from. Everything else (jail, config, host key) goes in a new
    directory under ``JAIL_BASE``, removed on exit, sshd stopped by its PID.
    """

    def __init__(self, catalog: Catalog, keys: OutboxKeys, *, cache: Path | None = None) -> None:
        self._catalog = catalog
        self._keys = keys
        self._cache = cache
        self._sshd: _Sshd | None = None
        self._base: Path | None = None
        self.port = 0

    @property
    def base(self) -> Path:
        if self._base is None:
            raise RuntimeError("the outbox server is not started")
        return self._base

    @property
    def root(self) -> Path:
        return self.base / "jail" / "outbox"

    def start(self) -> None:
        if os.geteuid() != 0:
            raise RuntimeError("the outbox server runs sshd, which needs root")
        if not Path(SSHD).exists():
            raise RuntimeError(f"{SSHD} is missing: install openssh-server (.ci/tools does)")
        ensure_account()
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation
        self._base = base = Path(tempfile.mkdtemp(prefix="outbox-", dir=JAIL_BASE))
        try:
            self._start(base)
        except BaseException:
            self.stop()
            raise

    def _start(self, base: Path) -> None:
        base.chmod(0o755)
        jail = base / "jail"
        self.root.mkdir(parents=True)
        jail.chmod(0o755)
        self.root.chmod(0o755)
        _lay_out(self._catalog, self.root, self._keys.c4gh_public, self._cache)
        _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", base / "host_key")
        (base / "authorized_keys").write_text(self._keys.ssh_public + "\n")
        (base / "authorized_keys").chmod(0o644)
        for _attempt in range(3):  # a free port can be taken before sshd binds it
            self.port = _free_port()
            (base / "sshd_config").write_text(_config(base, jail, self.port))
            self._sshd = _Sshd(base / "sshd_config")
            if self._sshd.wait_ready():
                return
            self._sshd.stop()
        log = "".join(self._sshd.lines if self._sshd else []).strip().replace("\n", " | ")
        raise RuntimeError(f"sshd did not start: {log}")

    def served_cpu(self) -> float:
        """CPU seconds (user + system) sshd's connections have spent so far (the server's
        half of a transfer, for benchmarks): the first call starts sampling them."""
        if self._sshd is None:
            return 0.0
        return self._sshd.cpu.total()

    def stop(self) -> None:
        if self._sshd is not None:
            self._sshd.stop()
        if self._base is not None:
            shutil.rmtree(self._base, ignore_errors=True)

    def close(self) -> None:
        self.stop()

    def __enter__(self) -> SftpOutbox:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def known_hosts(self, port: int | None = None) -> Path:
        """A known_hosts file naming this server's host key at ``[127.0.0.1]:port``
        (default sshd's own port; pass a proxy's)."""
        kind, key = (self.base / "host_key.pub").read_text().split()[:2]
        port = self.port if port is None else port
        path = self.base / f"known_hosts-{port}"
        path.write_text(f"[127.0.0.1]:{port} {kind} {key}\n")
        return path

    def lines(self) -> list[str]:
        """sshd's log lines so far (a live list)."""
        return self._sshd.lines if self._sshd is not None else []

    def log(self) -> str:
        return "".join(self.lines())
