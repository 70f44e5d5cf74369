"""Crypt4GH as the EGA Live Outbox serves it: the header, where a resume starts, and
segment-by-segment decryption into a plaintext ``.part``.

A Crypt4GH file is a header (magic, version, packets holding the session key, encrypted
for the recipient) and a payload of 65 564-byte cipher segments (nonce, 64 KiB of
ChaCha20-Poly1305 ciphertext, tag), the last one shorter. The Outbox re-encrypts the
header on every read, so its bytes (and even its length, with the user's number of
keys) may differ between two downloads, while the session key inside and the payload
stay the same. A resume therefore keeps only whole plaintext segments, decrypts the
header it reads now, and continues at that segment's cipher offset past *this*
header; a ``.part`` shorter than one segment starts again.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

from crypt4gh import header as c4gh_header
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from .._dest import SizedPart

__all__ = [
    "CIPHER_SEGMENT",
    "SEGMENT",
    "C4ghKey",
    "Decryptor",
    "HeaderError",
    "cipher_size",
    "header_length",
    "plain_size",
    "resume_point",
    "session_keys",
]

#: Plaintext bytes per segment.
SEGMENT: Final = 65536
#: Nonce (12) and MAC (16) around each segment.
_OVERHEAD: Final = 28
CIPHER_SEGMENT: Final = SEGMENT + _OVERHEAD
_PREAMBLE: Final = 16  # magic (8), version (4), packet count (4)
_MAGIC: Final = b"crypt4gh"


class HeaderError(ValueError):
    """The bytes are not a Crypt4GH header this key can open."""


@dataclass(frozen=True, slots=True)
class C4ghKey:
    """The user's Crypt4GH secret key (32 bytes, decrypted); ``repr`` never shows it."""

    secret: bytes = field(repr=False)

    def __repr__(self) -> str:
        return "C4ghKey(***)"


def header_length(head: bytes) -> int | None:
    """Length of the header that ``head`` starts with; None while ``head`` is too short
    to tell. Raises :class:`HeaderError` for anything but a Crypt4GH v1 header."""
    if len(head) < _PREAMBLE:
        return None
    if head[:8] != _MAGIC:
        raise HeaderError("not a Crypt4GH file")
    if int.from_bytes(head[8:12], "little") != 1:
        raise HeaderError("not Crypt4GH version 1")
    count = int.from_bytes(head[12:16], "little")
    at = _PREAMBLE
    for _ in range(count):
        if len(head) < at + 4:
            return None
        length = int.from_bytes(head[at : at + 4], "little")
        if length < 4:
            raise HeaderError(f"a header packet of {length} bytes")
        at += length
    return at if len(head) >= at else None


def session_keys(header: bytes, key: C4ghKey) -> list[bytes]:
    """The payload's session keys, from a complete header encrypted for ``key``."""
    try:
        keys, edits = c4gh_header.deconstruct(io.BytesIO(header), [(0, key.secret, None)])
    except ValueError as exc:
        # The library's words ("No supported encryption method"): the header is not
        # for this key.
        raise HeaderError(f"the header does not open with C4GH_SECRET_KEY ({exc})") from None
    if edits is not None:
        raise HeaderError("the header carries an edit list, which this mirror does not apply")
    if not keys:
        raise HeaderError("the header holds no session key")
    return [bytes(k) for k in keys]


def resume_point(held: int, header_len: int) -> tuple[int, int]:
    """``(plaintext bytes kept, cipher offset to read from)`` for a ``.part`` of ``held``
    plaintext bytes: its last whole segment ends the part that is kept."""
    whole = held // SEGMENT
    return whole * SEGMENT, header_len + whole * CIPHER_SEGMENT


def plain_size(payload: int) -> int:
    """Plaintext bytes of ``payload`` cipher bytes (the Outbox's ``decrypted_filesize``)."""
    if payload <= 0:
        return 0
    return payload - _OVERHEAD * -(-payload // CIPHER_SEGMENT)


def cipher_size(plain: int) -> int:
    """Cipher payload bytes that hold ``plain`` plaintext bytes."""
    return plain + _OVERHEAD * -(-plain // SEGMENT)


class Decryptor:
    """Decrypts a payload, in order, from a cipher offset on, into a sized ``.part``.

    Blocking: call it in a thread. Cipher bytes that do not fill a segment wait for
    the next :meth:`feed`; :meth:`finish` decrypts the last, shorter one. Segments are
    opened with OpenSSL's ChaCha20-Poly1305 (the cipher Crypt4GH names, IETF variant):
    half as costly again as the reference implementation's own binding, which matters
    when the SSH transfer shares the machine's cores with it.
    """

    def __init__(self, keys: list[bytes], part: SizedPart, *, at: int) -> None:
        self._ciphers = [ChaCha20Poly1305(k) for k in keys]
        self._part = part
        #: Plaintext bytes in the ``.part`` so far (where the next segment goes).
        self.size = at
        self._rest = bytearray()

    def feed(self, chunks: Sequence[bytes]) -> list[bytes]:
        """Decrypt the whole segments ``chunks`` complete; the plaintext written."""
        for chunk in chunks:
            self._rest += chunk
        whole = len(self._rest) // CIPHER_SEGMENT * CIPHER_SEGMENT
        if not whole:
            return []
        with memoryview(self._rest) as view:
            out = self._decrypt(view[:whole])
        del self._rest[:whole]
        return out

    def finish(self) -> list[bytes]:
        """Decrypt the last segment (shorter than a whole one); the plaintext written."""
        if not self._rest:
            return []
        if len(self._rest) <= _OVERHEAD:
            raise HeaderError(f"the payload ends in a segment of {len(self._rest)} bytes")
        with memoryview(self._rest) as view:
            out = self._decrypt(view)
        self._rest = bytearray()
        return out

    def _decrypt(self, cipher: memoryview) -> list[bytes]:
        plain: list[bytes] = []
        for at in range(0, len(cipher), CIPHER_SEGMENT):
            segment = cipher[at : at + CIPHER_SEGMENT]
            plain.append(self._open(segment[:12], segment[12:], self.size // SEGMENT + len(plain)))
        self._part.write_at(plain, self.size)
        self.size += sum(len(p) for p in plain)
        return plain

    def _open(self, nonce: memoryview, sealed: memoryview, index: int) -> bytes:
        for cipher in self._ciphers:
            try:
                return cipher.decrypt(nonce, sealed, None)
            except InvalidTag:
                continue
        raise HeaderError(f"segment {index} does not decrypt (its MAC does not match)")
