"""The outbox's SFTP through OpenSSH's own client: ``ssh -s … sftp`` as a child process,
speaking SFTP version 3 (draft-ietf-secsh-filexfer-02) over its pipes.

Why a child process: asyncssh runs the SSH transport (packet framing, AES-GCM, window
accounting) in Python on the event loop, about 9 CPU-seconds per GiB; ``ssh`` does it
in C on a core of its own, and this side then only frames SFTP replies (a few thousand
per GiB), leaving the loop and the cores to Crypt4GH decryption and the checksums. The
``ssh`` binary also brings what users already trust: their OpenSSH's ciphers and its
host key checks.

The subset used here: INIT, OPEN (read only), READ, FSTAT, CLOSE, OPENDIR, READDIR. Its
failures are raised as asyncssh's exception classes (``SFTPNoSuchFile``,
``ConnectionLost``…), so the callers handle both clients alike. Secrets: a key
passphrase or the EGA password reach ``ssh`` only through ``SSH_ASKPASS``, a two-line
script that prints a variable of the child's environment; never an argument (visible
in ``ps``), never a file.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fcntl
import os
import shutil
import struct
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Final, cast

import asyncssh

__all__ = ["Attrs", "Entry", "OpenSshFile", "OpenSshSftp", "SshRefused", "openssh_binary"]

# Packet types and status codes (filexfer-02, sections 3 and 7).
_INIT, _VERSION, _OPEN, _CLOSE, _READ = 1, 2, 3, 4, 5
_FSTAT, _OPENDIR, _READDIR = 8, 11, 12
_STATUS, _HANDLE, _DATA, _NAME, _ATTRS = 101, 102, 103, 104, 105
_OK, _EOF, _NO_SUCH_FILE, _PERMISSION_DENIED = 0, 1, 2, 3
_READ_FLAG: Final = 0x01
_ATTR_SIZE, _ATTR_UIDGID, _ATTR_PERMISSIONS, _ATTR_ACMODTIME = 0x1, 0x2, 0x4, 0x8
_ATTR_EXTENDED: Final = 0x80000000

#: OpenSSH's sftp-server answers at most this much per READ (256 KiB less 1 KiB).
READ_LEN: Final = 261120
#: A reply larger than this is not SFTP: the stream is out of step.
_MAX_PACKET: Final = 1 << 20
#: The stdout pipe's capacity (Linux ``F_SETPIPE_SZ``): fewer, larger reads.
_PIPE_SIZE: Final = 1 << 20
_F_SETPIPE_SZ: Final = 1031
#: Ciphers in OpenSSH's names, fastest first where the CPU has AES instructions.
_CIPHERS: Final = (
    "aes128-gcm@openssh.com,aes256-gcm@openssh.com,chacha20-poly1305@openssh.com,"
    "aes128-ctr,aes192-ctr,aes256-ctr"
)
_ASKPASS: Final = '#!/bin/sh\nprintf "%s\\n" "$EBI_MIRROR_ASKPASS"\n'
_STDERR_KEPT: Final = 8192


def openssh_binary() -> str | None:
    """The ``ssh`` client on ``PATH``, if any."""
    return shutil.which("ssh")


class SshRefused(Exception):
    """``ssh`` ended before SFTP started; ``kind`` says why: ``login``, ``host key`` or
    ``connection``; ``detail`` is ssh's last words (never a secret: it prints none)."""

    def __init__(self, kind: str, detail: str) -> None:
        self.kind = kind
        self.detail = detail
        super().__init__(f"{kind}: {detail}")


@dataclasses.dataclass(frozen=True, slots=True)
class Attrs:
    """The attributes the outbox needs (the shape of asyncssh's ``SFTPAttrs``)."""

    size: int | None = None
    extended: tuple[tuple[bytes, bytes], ...] = ()


@dataclasses.dataclass(frozen=True, slots=True)
class Entry:
    """One directory entry (the shape of asyncssh's ``SFTPName``)."""

    filename: str
    attrs: Attrs


class _Reader:
    """Takes SFTP packets apart, straight from the pipe's buffer: one copy per payload."""

    def __init__(self) -> None:
        self.buffer = bytearray()

    def packets(self, data: bytes) -> list[tuple[int, int, bytes]]:
        """``(type, request id, body after the id)`` for every whole packet ``data`` ends
        (for DATA, the data alone)."""
        buf = self.buffer
        buf += data
        out = []
        while len(buf) >= 9:
            length = int.from_bytes(buf[:4], "big")
            if not 5 <= length <= _MAX_PACKET:
                raise asyncssh.ProtocolError(f"an SFTP packet of {length} bytes")
            if len(buf) < 4 + length:
                break
            kind = buf[4]
            ident = int.from_bytes(buf[5:9], "big")
            # DATA's body is a string: its length goes, so the one copy is the data.
            start = 13 if kind == _DATA else 9
            with memoryview(buf) as view:
                body = bytes(view[start : 4 + length])
            del buf[: 4 + length]
            out.append((kind, ident, body))
        return out


class _Pipes(asyncio.SubprocessProtocol):
    def __init__(self, session: OpenSshSftp) -> None:
        self.session = session
        self.reader = _Reader()
        self.stderr = bytearray()
        #: Done when the child has exited and its pipes have closed.
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        if fd == 2:
            self.stderr += data
            del self.stderr[:-_STDERR_KEPT]
            return
        try:
            for kind, ident, body in self.reader.packets(data):
                self.session._reply(kind, ident, body)
        except (asyncssh.ProtocolError, struct.error, IndexError) as exc:
            self.session._fail(asyncssh.ConnectionLost(f"the SFTP stream broke ({exc})"))
            self.session._kill()

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        # Not at the child's exit: replies it wrote before it left may still be in the
        # pipe, and what arrived in order is kept for the next attempt.
        if fd == 1:
            self.session._fail(asyncssh.ConnectionLost(self.session._last_words()))

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(None)


class OpenSshSftp:
    """An SFTP session through one ``ssh`` child process.

    ``readdir`` and ``open`` have the shapes of asyncssh's ``SFTPClient`` methods that
    the outbox uses; :meth:`close` ends the child.
    """

    def __init__(self) -> None:
        self._transport: asyncio.SubprocessTransport | None = None
        self._pipes: _Pipes | None = None
        self._waiting: dict[int, asyncio.Future[tuple[int, bytes]]] = {}
        self._next = 0
        self._lost: BaseException | None = None
        self._askpass: Path | None = None

    @classmethod
    async def start(
        cls,
        host: str,
        port: int,
        *,
        username: str,
        key_path: str | None,
        secret: str | None,
        known_hosts: str | None,
        connect_timeout: float = 30,
    ) -> OpenSshSftp:
        """Log in (with the key at ``key_path``, else keyboard-interactive) and start SFTP.

        ``secret`` is the key's passphrase or the password: what ``ssh`` asks for.
        Raises :class:`SshRefused` when ssh gives up before SFTP answers.
        """
        ssh = openssh_binary()
        if ssh is None:
            raise SshRefused("connection", "no ssh client on PATH")
        self = cls()
        args = [
            ssh,
            *("-F", "/dev/null", "-T", "-x", "-a", "-s", "-p", str(port)),
            *("-o", "BatchMode=no", "-o", "LogLevel=ERROR"),
            *("-o", f"UserKnownHostsFile={known_hosts or '~/.ssh/known_hosts'}"),
            *("-o", "GlobalKnownHostsFile=/dev/null", "-o", "StrictHostKeyChecking=yes"),
            *("-o", "UpdateHostKeys=no", "-o", f"ConnectTimeout={int(connect_timeout)}"),
            *("-o", "ServerAliveInterval=30", "-o", "ServerAliveCountMax=3"),
            *("-o", f"Ciphers={_CIPHERS}", "-o", "IdentityAgent=none"),
            *("-o", "IdentitiesOnly=yes", "-o", "NumberOfPasswordPrompts=1"),
        ]
        if key_path is not None:
            args += ["-o", "PreferredAuthentications=publickey", "-i", key_path]
        else:
            args += ["-o", "PreferredAuthentications=keyboard-interactive"]
            args += ["-o", "PubkeyAuthentication=no"]
        args += ["-l", username, "--", host, "sftp"]
        env = {k: v for k, v in os.environ.items() if not k.startswith("SSH_")}
        env["SSH_ASKPASS_REQUIRE"] = "never"
        if secret is not None:
            self._askpass = await asyncio.to_thread(_write_askpass)
            env |= {
                "SSH_ASKPASS": str(self._askpass),
                "SSH_ASKPASS_REQUIRE": "force",
                "EBI_MIRROR_ASKPASS": secret,
            }
        loop = asyncio.get_running_loop()
        try:
            transport, pipes = await loop.subprocess_exec(
                lambda: _Pipes(self),
                *args,
                env=env,
                # No terminal: ssh never asks the user anything on it.
                start_new_session=True,
            )
        except OSError as exc:
            self._remove_askpass()
            raise SshRefused("connection", f"cannot start {ssh}: {exc}") from None
        self._transport, self._pipes = transport, pipes
        _widen(transport)
        try:
            async with asyncio.timeout(connect_timeout + 30):
                kind, _ = await self._request(_INIT, b"", version=True)
            if kind != _VERSION:
                raise asyncssh.ConnectionLost(f"SFTP answered INIT with packet {kind}")
        except BaseException as exc:
            self._kill()
            await self.close()  # ssh's last words have all arrived once it is reaped
            if isinstance(exc, asyncssh.Error | TimeoutError):
                words = self._last_words()
                raise SshRefused(_why(words), words) from None
            raise
        # The secret was needed for the login alone.
        self._remove_askpass()
        return self

    # -- the operations ---------------------------------------------------------------

    async def readdir(self, path: str) -> list[Entry]:
        handle = await self._handle(_OPENDIR, _string(path.encode()))
        entries: list[Entry] = []
        try:
            while True:
                kind, body = await self._request(_READDIR, _string(handle))
                if kind == _STATUS and _status(body)[0] == _EOF:
                    break
                entries += _names(_expect(kind, body, _NAME))
        finally:
            await self._close_handle(handle)
        return entries

    @contextlib.asynccontextmanager
    async def open(self, path: str, mode: str = "rb") -> AsyncIterator[OpenSshFile]:
        if mode != "rb":
            raise ValueError("the outbox is read only")
        handle = await self._handle(
            _OPEN, _string(path.encode()) + struct.pack(">II", _READ_FLAG, 0)
        )
        try:
            yield OpenSshFile(self, handle)
        finally:
            if self._lost is None:
                await self._close_handle(handle)

    async def close(self) -> None:
        """End the session: stdin closes (ssh leaves), then the child is reaped."""
        transport, self._transport = self._transport, None
        self._remove_askpass()
        if transport is None:
            return
        self._fail(asyncssh.ConnectionLost("the session was closed"))
        stdin = transport.get_pipe_transport(0)
        if stdin is not None:
            stdin.close()
        pipes = self._pipes
        try:
            if pipes is not None:
                async with asyncio.timeout(5):
                    await asyncio.shield(pipes.done)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                transport.kill()
        transport.close()

    # -- the wire ---------------------------------------------------------------------

    async def _handle(self, kind: int, payload: bytes) -> bytes:
        got, body = await self._request(kind, payload)
        handle, _ = _take_string(_expect(got, body, _HANDLE), 0)
        return handle

    async def _close_handle(self, handle: bytes) -> None:
        with contextlib.suppress(asyncssh.Error):
            await self._request(_CLOSE, _string(handle))

    async def _request(
        self, kind: int, payload: bytes, *, version: bool = False
    ) -> tuple[int, bytes]:
        if self._lost is not None:
            raise self._lost
        transport = self._transport
        pipe = transport.get_pipe_transport(0) if transport is not None else None
        if pipe is None or pipe.is_closing():
            # ssh has gone (its stdin with it); its stdout may not have closed yet.
            raise asyncssh.ConnectionLost("the session was closed")
        stdin = cast(asyncio.WriteTransport, pipe)
        # INIT carries the version where other requests carry an id; VERSION's reply
        # then reads as "id 3".
        ident = 3 if version else self._take_id()
        future: asyncio.Future[tuple[int, bytes]] = asyncio.get_running_loop().create_future()
        self._waiting[ident] = future
        body = struct.pack(">BI", kind, ident) + payload
        stdin.write(len(body).to_bytes(4, "big") + body)
        try:
            return await future
        finally:
            self._waiting.pop(ident, None)

    def _take_id(self) -> int:
        self._next = (self._next + 1) & 0xFFFFFFFF
        return self._next

    def _reply(self, kind: int, ident: int, body: bytes) -> None:
        future = self._waiting.pop(ident, None)
        if future is not None and not future.done():
            future.set_result((kind, body))

    def _fail(self, exc: BaseException) -> None:
        if self._lost is None:
            self._lost = exc
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(self._lost)
        self._waiting.clear()

    def _kill(self) -> None:
        if self._transport is not None and self._transport.get_returncode() is None:
            with contextlib.suppress(ProcessLookupError):
                self._transport.kill()

    def _last_words(self) -> str:
        text = bytes(self._pipes.stderr).decode(errors="replace") if self._pipes else ""
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        return lines[-1] if lines else "ssh ended"

    def _remove_askpass(self) -> None:
        if self._askpass is not None:
            shutil.rmtree(self._askpass.parent, ignore_errors=True)
            self._askpass = None


class OpenSshFile:
    """An open file: reads at offsets, many may be in flight (asyncssh's shape)."""

    read_len = READ_LEN

    def __init__(self, session: OpenSshSftp, handle: bytes) -> None:
        self._session = session
        self._handle = _string(handle)

    async def read(self, size: int, offset: int) -> bytes:
        kind, body = await self._session._request(
            _READ, self._handle + struct.pack(">QI", offset, size)
        )
        if kind == _STATUS and _status(body)[0] == _EOF:
            return b""
        if kind != _DATA:
            _expect(kind, body, _DATA)
        return body

    async def stat(self) -> Attrs:
        kind, body = await self._session._request(_FSTAT, self._handle)
        attrs, _ = _attrs(_expect(kind, body, _ATTRS), 0)
        return attrs


def _write_askpass() -> Path:
    folder = Path(tempfile.mkdtemp(prefix="ebi-mirror-askpass-"))
    script = folder / "askpass"
    fd = os.open(script, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o700)
    with os.fdopen(fd, "w") as f:
        f.write(_ASKPASS)
    return script


def _widen(transport: asyncio.SubprocessTransport) -> None:
    """A larger stdout pipe: fewer wake-ups of the loop per GiB (Linux only)."""
    pipe = transport.get_pipe_transport(1)
    raw = pipe.get_extra_info("pipe") if pipe is not None else None
    if raw is not None:
        with contextlib.suppress(OSError, ValueError):
            fcntl.fcntl(raw.fileno(), _F_SETPIPE_SZ, _PIPE_SIZE)


def _why(words: str) -> str:
    lowered = words.lower()
    if "permission denied" in lowered or "too many authentication failures" in lowered:
        return "login"
    if "host key" in lowered:
        return "host key"
    return "connection"


def _string(data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + data


def _take_string(body: bytes, at: int) -> tuple[bytes, int]:
    (n,) = struct.unpack_from(">I", body, at)
    end = at + 4 + n
    if end > len(body):
        raise asyncssh.ProtocolError("an SFTP string runs past its packet")
    return body[at + 4 : end], end


def _status(body: bytes) -> tuple[int, str]:
    (code,) = struct.unpack_from(">I", body, 0)
    message = ""
    with contextlib.suppress(struct.error, asyncssh.ProtocolError):
        message = _take_string(body, 4)[0].decode(errors="replace")
    return code, message


def _expect(kind: int, body: bytes, wanted: int) -> bytes:
    """``body`` when the reply is of the ``wanted`` type; a STATUS becomes its error."""
    if kind == wanted:
        return body
    if kind != _STATUS:
        raise asyncssh.ProtocolError(f"SFTP packet {kind} where {wanted} was expected")
    code, message = _status(body)
    if code == _NO_SUCH_FILE:
        raise asyncssh.SFTPNoSuchFile(message or "no such file")
    if code == _PERMISSION_DENIED:
        raise asyncssh.SFTPPermissionDenied(message or "permission denied")
    if code == _EOF:
        raise asyncssh.SFTPEOFError(message or "end of file")
    raise asyncssh.SFTPFailure(message or f"SFTP status {code}")


def _attrs(body: bytes, at: int) -> tuple[Attrs, int]:
    (flags,) = struct.unpack_from(">I", body, at)
    at += 4
    size = None
    if flags & _ATTR_SIZE:
        (size,) = struct.unpack_from(">Q", body, at)
        at += 8
    if flags & _ATTR_UIDGID:
        at += 8
    if flags & _ATTR_PERMISSIONS:
        at += 4
    if flags & _ATTR_ACMODTIME:
        at += 8
    extended: list[tuple[bytes, bytes]] = []
    if flags & _ATTR_EXTENDED:
        (count,) = struct.unpack_from(">I", body, at)
        at += 4
        for _ in range(count):
            name, at = _take_string(body, at)
            value, at = _take_string(body, at)
            extended.append((name, value))
    return Attrs(size=size, extended=tuple(extended)), at


def _names(body: bytes) -> list[Entry]:
    (count,) = struct.unpack_from(">I", body, 0)
    at = 4
    entries = []
    for _ in range(count):
        name, at = _take_string(body, at)
        _, at = _take_string(body, at)  # the long name, ls -l style
        attrs, at = _attrs(body, at)
        entries.append(Entry(filename=name.decode(errors="surrogateescape"), attrs=attrs))
    return entries
