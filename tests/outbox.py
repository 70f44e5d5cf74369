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
  64 KiB to 2 MiB; file index 2 unavailable, index 3 published with an MD5 (the
  others SHA256).
- ``outbox_factory(catalog, options=None)``: a server over any catalog's
  ``outbox_datasets`` (the metadata API's ``OutboxOptions``), stopped after the test.
  Encrypted files above 64 MiB are written once per session and linked in.

All servers of a session share one account (``OUTBOX_USER`` / ``OUTBOX_PASSWORD``: the
account is the machine's, and test processes run side by side), one SSH key and one
Crypt4GH key pair, all made on first use. How sshd is set up, and why:
``mirror/emulator/ega/_sftp.py``.
"""

from __future__ import annotations

import contextlib
import hashlib
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from mirror.emulator import Catalog, Emulator
from mirror.emulator._content import content_bytes
from mirror.emulator._cutproxy import CuttingProxy
from mirror.emulator.ega._metadata import OutboxOptions
from mirror.emulator.ega._outbox import OutboxFile, reencrypt_header
from mirror.emulator.ega._sftp import (
    OUTBOX_PASSWORD,
    OUTBOX_USER,
    OutboxKeys,
    SftpOutbox,
    make_keys,
)
from tests.threaded import Served, serving

__all__ = [
    "OUTBOX_PASSWORD",
    "OUTBOX_USER",
    "SMALL_CATALOG",
    "OutboxFactory",
    "OutboxKeys",
    "OutboxServer",
]

#: The ``outbox`` fixture's dataset.
SMALL_CATALOG = Catalog.generate_outbox(
    "EGAD50000000001",
    files=5,
    sizes=(100 * 1024, 2 * 1024 * 1024, 300 * 1024 + 7, 65536, 1024 * 1024 + 1),
    unavailable=(2,),
    md5=(3,),
)


@dataclass
class OutboxServer:
    """One running outbox: sshd behind the cutting proxy, and the emulator's metadata API.

    ``root`` is what the user sees at login: ``root/EGAD…/<name>.c4gh``. ``known_hosts``
    names the server's host key for ``[127.0.0.1]:port`` (the proxy's port), for clients
    that check it; ``ssh_key_plain`` is the login key without its passphrase.
    ``sshd_log()`` is sshd's own log so far (``Accepted keyboard-interactive/pam for …``).
    ``reencrypt_headers()`` gives files new header bytes (EGA's outbox does so per
    download; sshd serves files as they are).
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
    _keys: OutboxKeys = field(repr=False)

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

    def reencrypt_headers(self, *accessions: str) -> None:
        """New header bytes for these readable files (default: all): same key, same
        length, same payload, as EGA's outbox serves each download. sshd serves files
        as they are, so a test calls this between downloads. A big file's bytes are
        shared by the session's servers (one key for all, so they stay valid)."""
        import crypt4gh.keys

        keys = self._keys
        secret = crypt4gh.keys.get_private_key(keys.c4gh_secret, lambda: keys.c4gh_passphrase)
        for dataset in self.emulator.catalog.outbox_datasets:
            for item in dataset.files:
                path = self.root / dataset.dataset_id / f"{item.name}.c4gh"
                if (not accessions or item.accession in accessions) and path.exists():
                    reencrypt_header(path, secret, keys.c4gh_public)

    def plain_bytes(self, accession: str) -> bytes:
        """The plaintext of a file (small files)."""
        item = self.file(accession)
        return content_bytes(item.content_key, item.size)

    def plain_sha256(self, accession: str) -> str:
        """SHA256 hex of a file's plaintext, streamed (any size)."""
        item = self.file(accession)
        return _hexdigest(item, hashlib.sha256())

    def plain_md5(self, accession: str) -> str:
        """MD5 hex of a file's plaintext, streamed (any size)."""
        item = self.file(accession)
        return _hexdigest(item, hashlib.md5())

    def sshd_log(self) -> str:
        return "".join(self._log)


def _hexdigest(item: OutboxFile, digest: hashlib._Hash) -> str:
    for piece in item.plain():
        digest.update(piece)
    return digest.hexdigest()


OutboxFactory = Callable[..., OutboxServer]


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
    sftp = SftpOutbox(catalog, keys, cache=cache)
    try:
        sftp.start()
    except (RuntimeError, OSError, subprocess.CalledProcessError) as exc:
        pytest.fail(f"the outbox server did not start: {exc}")
    with contextlib.closing(sftp), serving(_front(catalog, options, sftp.port)) as served:
        emu, proxy = served.value
        yield OutboxServer(
            host="127.0.0.1",
            port=proxy.port,
            user=OUTBOX_USER,
            password=OUTBOX_PASSWORD,
            ssh_key=keys.ssh_key,
            ssh_passphrase=keys.ssh_passphrase,
            c4gh_secret=keys.c4gh_secret,
            c4gh_passphrase=keys.c4gh_passphrase,
            root=sftp.root,
            emulator=emu,
            ssh_key_plain=keys.ssh_key_plain,
            known_hosts=sftp.known_hosts(proxy.port),
            sshd_port=sftp.port,
            _served=served,
            _log=sftp.lines(),
            _keys=keys,
        )


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
