"""EGA's Live Outbox for tests: OpenSSH's ``sshd`` serving Crypt4GH files over SFTP, with
EGA's metadata API in the emulator.

The server is the real one EGA's outbox is built on (OpenSSH, ``internal-sftp``, chroot,
read-only), started as root on a free loopback port; clients connect through a cutting
proxy (``cut_after``) that also counts the bytes it forwards (``bytes_sent``).

What the user sees at login (the start directory, ``/outbox`` in the chroot)::

    EGAD50000000001/                       one directory per dataset, mode 0555
      sample_1.bam.c4gh                    files encrypted for ``c4gh_secret``, 0444
      calls_3.vcf.gz.unavailable.c4gh      cold storage: listed, unreadable (0000)

Fixtures (registered by tests/conftest.py):

- ``outbox``: a server over ``SMALL_CATALOG``: dataset ``EGAD50000000001``, 5 files of
  100 KiB to 2 MiB; file index 2 unavailable, index 3 published with an MD5 (the
  others SHA256).
- ``outbox_factory(catalog, options=None)``: a server over any catalog's
  ``outbox_datasets`` (the metadata API's ``OutboxOptions``), stopped after the test.
  Encrypted files above 64 MiB are written once per session and linked in.

All servers of a session share one account (``OUTBOX_USER`` / ``OUTBOX_PASSWORD``: the
account is the machine's, and test processes run side by side), one SSH key and one
Crypt4GH key pair, all made on first use.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import crypt4gh.keys
import crypt4gh.keys.c4gh
import pytest

from mirror.emulator import Catalog, Emulator
from mirror.emulator._content import content_bytes
from mirror.emulator._cutproxy import CuttingProxy
from mirror.emulator.ega._metadata import OutboxOptions
from mirror.emulator.ega._outbox import OutboxFile, write_c4gh
from tests.threaded import Served, serving

__all__ = [
    "OUTBOX_PASSWORD",
    "OUTBOX_USER",
    "SMALL_CATALOG",
    "OutboxFactory",
    "OutboxKeys",
    "OutboxServer",
]

SSHD = "/usr/sbin/sshd"
#: The account the SFTP server logs in; created on first use, kept afterwards.
OUTBOX_USER = "egauser"
#: Its password (keyboard-interactive through PAM). Fixed: every test process on the
#: machine shares the account.
OUTBOX_PASSWORD = "outbox-Pa55-word"
_SSH_PASSPHRASE = "ssh-key passphrase 7"
_C4GH_PASSPHRASE = "c4gh-key passphrase 9"
#: Where the servers' chroots go: every path component of a chroot must be root-owned
#: and writable by root alone, which rules out anything under /tmp.
JAIL_BASE = Path(os.environ.get("OUTBOX_JAIL_BASE", "/var/lib/ebi-mirror-outbox"))
# Encrypted files this big are written once per session and hard-linked into each jail.
_CACHE_ABOVE = 64 * 1024 * 1024
_START_DEADLINE = 20.0

#: The ``outbox`` fixture's dataset.
SMALL_CATALOG = Catalog.generate_outbox(
    "EGAD50000000001",
    files=5,
    sizes=(100 * 1024, 2 * 1024 * 1024, 300 * 1024 + 7, 65536, 1024 * 1024 + 1),
    unavailable=(2,),
    md5=(3,),
)


@dataclass(frozen=True)
class OutboxKeys:
    """The session's keys (all in one private directory).

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


@dataclass
class OutboxServer:
    """One running outbox: sshd behind the cutting proxy, and the emulator's metadata API.

    ``root`` is what the user sees at login: ``root/EGAD…/<name>.c4gh``. ``known_hosts``
    names the server's host key for ``[127.0.0.1]:port`` (the proxy's port), for clients
    that check it; ``ssh_key_plain`` is the login key without its passphrase.
    ``sshd_log()`` is sshd's own log so far (``Accepted keyboard-interactive/pam for …``).
    """

    host: str
    port: int
    user: str
    password: str
    ssh_key: Path
    ssh_passphrase: str
    c4gh_secret: Path
    c4gh_passphrase: str
    root: Path
    emulator: Emulator
    ssh_key_plain: Path
    known_hosts: Path
    sshd_port: int
    _served: Served[tuple[Emulator, CuttingProxy]] = field(repr=False)
    _log: list[str] = field(repr=False)

    def env(self, *, key: bool = True) -> dict[str, str]:
        """Credentials as the ``mirror`` command reads them: ``EGA_USERNAME``,
        ``EGA_PASSWORD``, ``C4GH_SECRET_KEY`` (a path), ``C4GH_PASSPHRASE`` and, with
        ``key``, ``EGA_SSH_KEY`` (a path) and ``EGA_SSH_PASSPHRASE``."""
        env = {
            "EGA_USERNAME": self.user,
            "EGA_PASSWORD": self.password,
            "C4GH_SECRET_KEY": str(self.c4gh_secret),
            "C4GH_PASSPHRASE": self.c4gh_passphrase,
        }
        if key:
            env["EGA_SSH_KEY"] = str(self.ssh_key)
            env["EGA_SSH_PASSPHRASE"] = self.ssh_passphrase
        return env

    def endpoints(self) -> dict[str, str]:
        """``ega_outbox`` (``sftp://127.0.0.1:PORT``, the proxy) and ``ega_metadata`` (the
        emulator's metadata API base; files at ``/datasets/{EGAD}/files``)."""
        return {
            "ega_outbox": f"sftp://{self.host}:{self.port}",
            "ega_metadata": self.emulator.endpoints["ega_metadata"],
        }

    def cut_after(self, nbytes: int, times: int = 1) -> None:
        """Each of the next ``times`` connections is closed once ``nbytes`` bytes went
        server → client (counting the SSH handshake and all encrypted traffic)."""
        proxy = self._served.value[1]
        self._served.call(lambda: proxy.cut_after(nbytes, times))

    def bytes_sent(self) -> list[int]:
        """Server → client bytes on the wire of each connection so far, in arrival order
        (open connections too)."""
        proxy = self._served.value[1]
        return self._served.call(proxy.bytes_sent)

    def file(self, accession: str) -> OutboxFile:
        """The catalog's outbox file ``EGAF…``."""
        return self.emulator.outbox.file(accession)

    def path(self, accession: str) -> Path:
        """Where the file is in ``root`` now (its ``.c4gh`` or ``.unavailable.c4gh``)."""
        item = self.file(accession)
        folder = self.root / item.dataset
        plain = folder / f"{item.name}.c4gh"
        return plain if plain.exists() else folder / f"{item.name}.unavailable.c4gh"

    def make_available(self, dataset: str, accession: str) -> None:
        """Bring a file back from cold storage: ``<name>.unavailable.c4gh`` becomes a
        readable ``<name>.c4gh``."""
        item = self.file(accession)
        if item.dataset != dataset:
            raise KeyError(f"{accession} is in {item.dataset}, not {dataset}")
        cold = self.root / dataset / f"{item.name}.unavailable.c4gh"
        cold.chmod(0o444)
        cold.rename(self.root / dataset / f"{item.name}.c4gh")

    def plain_bytes(self, accession: str) -> bytes:
        """The plaintext of a file (small files)."""
        item = self.file(accession)
        return content_bytes(item.content_key, item.size)

    def plain_sha256(self, accession: str) -> str:
        item = self.file(accession)
        return _hexdigest(item, hashlib.sha256())

    def plain_md5(self, accession: str) -> str:
        item = self.file(accession)
        return _hexdigest(item, hashlib.md5())

    def sshd_log(self) -> str:
        return "".join(self._log)


def _hexdigest(item: OutboxFile, digest: hashlib._Hash) -> str:
    for piece in item.plain():
        digest.update(piece)
    return digest.hexdigest()


OutboxFactory = Callable[..., OutboxServer]


def _run(*args: str | Path, input: str | None = None) -> None:
    subprocess.run([str(a) for a in args], input=input, text=True, check=True, capture_output=True)


def _ensure_account() -> None:
    # One lock for every test process: useradd and chpasswd each lock the account files
    # and fail rather than wait.
    JAIL_BASE.mkdir(mode=0o755, parents=True, exist_ok=True)
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


def make_keys(folder: Path) -> OutboxKeys:
    """An ed25519 SSH key pair (a plain and an encrypted copy) and a Crypt4GH key pair."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    plain = folder / "ssh_key_plain"
    _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", OUTBOX_USER, "-f", plain)
    locked = folder / "ssh_key"
    shutil.copyfile(plain, locked)
    locked.chmod(0o600)
    _run("ssh-keygen", "-q", "-p", "-P", "", "-N", _SSH_PASSPHRASE, "-f", locked)
    (folder / "ssh_key.pub").unlink(missing_ok=True)
    secret, public = folder / "c4gh.sec", folder / "c4gh.pub"
    crypt4gh.keys.c4gh.generate(secret, public, _C4GH_PASSPHRASE.encode(), b"outbox tests")
    return OutboxKeys(
        ssh_key=locked,
        ssh_key_plain=plain,
        ssh_public=(folder / "ssh_key_plain.pub").read_text().strip(),
        ssh_passphrase=_SSH_PASSPHRASE,
        c4gh_secret=secret,
        c4gh_passphrase=_C4GH_PASSPHRASE,
        c4gh_public=bytes(crypt4gh.keys.get_public_key(public)),
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _config(base: Path, jail: Path, port: int) -> str:
    # Chosen after EGA's reference sshd_config (LocalEGA-distribution): either a key or
    # keyboard-interactive through PAM, never the plain password method; chrooted,
    # sftp only, read-only, starting in the directory that lists the datasets.
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


def _lay_out(catalog: Catalog, root: Path, keys: OutboxKeys, cache: Path) -> None:
    for dataset in catalog.outbox_datasets:
        folder = root / dataset.dataset_id
        folder.mkdir(parents=True)
        for item in dataset.files:
            path = folder / item.c4gh_name
            if item.c4gh_size > _CACHE_ABOVE and not item.unavailable:
                cached = cache / f"{item.accession}-{item.size}.c4gh"
                if not cached.exists():
                    part = cached.with_suffix(".part")
                    write_c4gh(item, part, keys.c4gh_public)
                    part.chmod(0o444)
                    part.rename(cached)
                try:
                    os.link(cached, path)
                except OSError:
                    shutil.copyfile(cached, path)
            else:
                write_c4gh(item, path, keys.c4gh_public)
            path.chmod(0o000 if item.unavailable else 0o444)
        folder.chmod(0o555)


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

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)
            if line.startswith("Server listening on"):
                self._ready.set()
        self._ready.set()  # exited: wait_ready sees that

    def wait_ready(self) -> bool:
        self._ready.wait(_START_DEADLINE)
        return self.proc.poll() is None and self._ready.is_set()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.wait()
        self._reader.join(10)
        if self.proc.stderr is not None:
            self.proc.stderr.close()


@contextlib.asynccontextmanager
async def _front(
    catalog: Catalog, options: OutboxOptions | None, sshd_port: int
) -> AsyncIterator[tuple[Emulator, CuttingProxy]]:
    async with (
        Emulator(catalog, outbox=options, seed=7) as emu,
        CuttingProxy(("127.0.0.1", sshd_port)) as proxy,
    ):
        yield emu, proxy


@contextlib.contextmanager
def run_outbox(
    catalog: Catalog, keys: OutboxKeys, cache: Path, options: OutboxOptions | None = None
) -> Iterator[OutboxServer]:
    """A running outbox over ``catalog.outbox_datasets`` (see the module text)."""
    if os.geteuid() != 0:
        pytest.fail("the outbox server runs sshd, which needs root (chroot, PAM, the account)")
    if not Path(SSHD).exists():
        pytest.fail(f"{SSHD} is missing: install openssh-server (.ci/tools does)")
    _ensure_account()
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation
    JAIL_BASE.mkdir(mode=0o755, parents=True, exist_ok=True)
    base = Path(tempfile.mkdtemp(prefix="outbox-", dir=JAIL_BASE))
    sshd: _Sshd | None = None
    try:
        base.chmod(0o755)
        jail = base / "jail"
        root = jail / "outbox"
        root.mkdir(parents=True)
        jail.chmod(0o755)
        root.chmod(0o755)
        _lay_out(catalog, root, keys, cache)
        _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", base / "host_key")
        (base / "authorized_keys").write_text(keys.ssh_public + "\n")
        (base / "authorized_keys").chmod(0o644)
        for _attempt in range(3):  # a free port can be taken before sshd binds it
            port = _free_port()
            (base / "sshd_config").write_text(_config(base, jail, port))
            sshd = _Sshd(base / "sshd_config")
            if sshd.wait_ready():
                break
            sshd.stop()
        else:
            log = "".join(sshd.lines if sshd else [])
            pytest.fail(f"sshd did not start:\n{log}")
        host_key = (base / "host_key.pub").read_text().split()
        with serving(_front(catalog, options, port)) as served:
            emu, proxy = served.value
            known = base / "known_hosts"
            known.write_text(f"[127.0.0.1]:{proxy.port} {host_key[0]} {host_key[1]}\n")
            yield OutboxServer(
                host="127.0.0.1",
                port=proxy.port,
                user=OUTBOX_USER,
                password=OUTBOX_PASSWORD,
                ssh_key=keys.ssh_key,
                ssh_passphrase=keys.ssh_passphrase,
                c4gh_secret=keys.c4gh_secret,
                c4gh_passphrase=keys.c4gh_passphrase,
                root=root,
                emulator=emu,
                ssh_key_plain=keys.ssh_key_plain,
                known_hosts=known,
                sshd_port=port,
                _served=served,
                _log=sshd.lines,
            )
    finally:
        if sshd is not None:
            sshd.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def outbox_keys(tmp_path_factory: pytest.TempPathFactory) -> OutboxKeys:
    """The session's SSH and Crypt4GH keys."""
    return make_keys(tmp_path_factory.mktemp("outbox-keys"))


@pytest.fixture(scope="session")
def outbox_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Big encrypted files, written once per session."""
    return tmp_path_factory.mktemp("outbox-cache")


@pytest.fixture
def outbox_factory(outbox_keys: OutboxKeys, outbox_cache: Path) -> Iterator[OutboxFactory]:
    """``outbox_factory(catalog, options=None)`` starts an outbox; all stop after the test."""
    with contextlib.ExitStack() as stack:

        def start(catalog: Catalog, options: OutboxOptions | None = None) -> OutboxServer:
            return stack.enter_context(run_outbox(catalog, outbox_keys, outbox_cache, options))

        yield start


@pytest.fixture
def outbox(outbox_factory: OutboxFactory) -> OutboxServer:
    """An outbox over ``SMALL_CATALOG``."""
    return outbox_factory(SMALL_CATALOG)
