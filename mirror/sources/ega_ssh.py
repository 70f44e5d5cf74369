"""The EGA outbox's SSH connection: the account and keys, and one SFTP session shared by
the files fetched at once, through OpenSSH's ``ssh`` (:mod:`.ega_openssh`, the default
where it is installed) or asyncssh in this process; made again after it drops.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from typing import Any, Final, Literal
from urllib.parse import urlsplit

import asyncssh

from .._credentials import Secret
from .._exceptions import ConnectionFailed, CredentialsError, TransferError
from .ega_c4gh import C4ghKey
from .ega_openssh import OpenSshSftp, SshRefused, openssh_binary

__all__ = [
    "OutboxConnection",
    "OutboxLogin",
    "Session",
    "SshClient",
    "default_client",
    "lost",
]

logger = logging.getLogger(__name__)

_CIPHERS: Final = (
    "aes128-gcm@openssh.com",
    "aes256-gcm@openssh.com",
    "chacha20-poly1305@openssh.com",
    "aes256-ctr",
    "aes192-ctr",
    "aes128-ctr",
)
_WINDOW: Final = 16 << 20
_PACKET: Final = 256 << 10


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class OutboxLogin:
    """The account and keys; ``repr`` shows none of them."""

    username: str = dataclasses.field(repr=False)
    password: Secret | None = None
    ssh_key: asyncssh.SSHKey | None = dataclasses.field(default=None, repr=False)
    #: None for a login that only lists (``mirror ls ega``): nothing to decrypt.
    c4gh: C4ghKey | None = dataclasses.field(default=None, repr=False)
    #: A known_hosts file to trust the outbox's host key from (else ~/.ssh/known_hosts).
    known_hosts: str | None = None
    #: Where the key was read from and its passphrase: what OpenSSH's ssh is given.
    ssh_key_path: str | None = None
    ssh_passphrase: Secret | None = None


#: The SFTP session either client gives: the same calls, the same exceptions.
Session = asyncssh.SFTPClient | OpenSshSftp
SshClient = Literal["openssh", "asyncssh"]


def default_client() -> SshClient:
    """OpenSSH's ``ssh`` where it is installed (its transport runs in C on a core of its
    own: twice the throughput); asyncssh, in this process, otherwise."""
    return "openssh" if openssh_binary() is not None else "asyncssh"


class OutboxConnection:
    """One SSH connection and its SFTP session, shared by the files fetched at once;
    made again after it drops."""

    def __init__(self, url: str, login: OutboxLogin, *, client: SshClient | None = None) -> None:
        parts = urlsplit(url)
        self.url = url
        self.host = parts.hostname or ""
        self.port = parts.port or 22
        self.login = login
        self.client: SshClient = client or default_client()
        self._lock = asyncio.Lock()
        self._conn: asyncssh.SSHClientConnection | None = None
        self._sftp: Session | None = None

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"

    async def sftp(self) -> Session:
        async with self._lock:
            if self._sftp is None:
                if self.client == "openssh":
                    self._sftp = await self._openssh()
                else:
                    self._conn, self._sftp = await self._asyncssh()
            return self._sftp

    def _refused(self) -> CredentialsError:
        login = self.login
        return CredentialsError(
            f"the EGA outbox {self.where} refused the login (EGA_USERNAME with "
            f"{'EGA_SSH_KEY' if login.ssh_key is not None else 'EGA_PASSWORD'})",
            hint="register the SSH key's public half in your EGA profile, or check EGA_PASSWORD",
        )

    def _unknown_host(self) -> TransferError:
        known = self.login.known_hosts or "~/.ssh/known_hosts"
        return TransferError(
            f"the EGA outbox {self.where}: its host key is not in {known}",
            url=self.url,
            hint="add the outbox's host key to ~/.ssh/known_hosts (or EGA_KNOWN_HOSTS)",
        )

    async def _openssh(self) -> OpenSshSftp:
        login = self.login
        secret = login.ssh_passphrase if login.ssh_key is not None else login.password
        try:
            session = await OpenSshSftp.start(
                self.host,
                self.port,
                username=login.username,
                key_path=login.ssh_key_path if login.ssh_key is not None else None,
                secret=secret.value if secret is not None else None,
                known_hosts=login.known_hosts,
            )
        except SshRefused as exc:
            if exc.kind == "login":
                raise self._refused() from None
            if exc.kind == "host key":
                raise self._unknown_host() from None
            raise lost(self.url, self.where, exc.detail) from None
        logger.debug("EGA outbox %s: SFTP through OpenSSH's ssh", self.where)
        return session

    async def _asyncssh(self) -> tuple[asyncssh.SSHClientConnection, asyncssh.SFTPClient]:
        login = self.login
        options: dict[str, Any] = {
            "username": login.username,
            "known_hosts": login.known_hosts or (),
            "connect_timeout": 30,
            "keepalive_interval": 30,
            # No agent, no ~/.ssh keys, no ssh_config: what the user set, and only it.
            "agent_path": None,
            "config": None,
            "client_keys": [login.ssh_key] if login.ssh_key is not None else None,
            "preferred_auth": "publickey" if login.ssh_key is not None else "keyboard-interactive",
            # Answered through keyboard-interactive only: the outbox refuses the
            # plain password method.
            "password": login.password.value if login.password is not None else None,
            # AES-GCM first: one call into OpenSSL per packet (AES-NI), where
            # ChaCha20-Poly1305 takes several from Python; big packets and a window
            # of many reads in flight make fewer, larger trips through the loop.
            "encryption_algs": _CIPHERS,
            "window": _WINDOW,
            "max_pktsize": _PACKET,
        }
        try:
            conn = await asyncssh.connect(self.host, self.port, **options)
            try:
                return conn, await conn.start_sftp_client()
            except BaseException:
                conn.close()
                raise
        except asyncssh.PermissionDenied:
            raise self._refused() from None
        except asyncssh.HostKeyNotVerifiable:
            raise self._unknown_host() from None
        except (OSError, asyncssh.Error, TimeoutError) as exc:
            raise lost(self.url, self.where, exc) from None

    async def dropped(self, sftp: Session) -> None:
        """Forget ``sftp`` (its connection failed) so the next call connects again."""
        async with self._lock:
            if self._sftp is sftp:
                await self._end()

    async def close(self) -> None:
        async with self._lock:
            await self._end(wait=True)

    async def _end(self, *, wait: bool = False) -> None:
        conn, sftp, self._conn, self._sftp = self._conn, self._sftp, None, None
        if isinstance(sftp, OpenSshSftp):
            await sftp.close()
        if conn is not None:
            conn.close()
            if wait:
                with contextlib.suppress(Exception):
                    await conn.wait_closed()


def lost(url: str, where: str, exc: BaseException | str) -> ConnectionFailed:
    """A dropped or failed connection, as a retryable error naming the outbox."""
    why = exc if isinstance(exc, str) else str(exc) or type(exc).__name__
    return ConnectionFailed(f"the EGA outbox {where}: {why}", url=url, why=why)
