"""The EGA outbox without a server: Crypt4GH headers, the resume arithmetic, segment
decryption into a ``.part``, the manifest entry and its credentials.

Crypt4GH files are made here with the crypt4gh package itself (the reference
implementation), for a key made here too.
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path
from types import SimpleNamespace

import asyncssh
import pytest
from crypt4gh import lib as c4gh_lib
from crypt4gh.keys import c4gh as c4gh_keys, get_public_key

from mirror._credentials import Credentials
from mirror._dest import LocalDestination
from mirror._exceptions import CredentialsError, ManifestError
from mirror._manifest import load_manifest
from mirror._registry import CredentialLookup
from mirror.sources.ega_c4gh import (
    CIPHER_SEGMENT,
    SEGMENT,
    C4ghKey,
    Decryptor,
    HeaderError,
    cipher_size,
    header_length,
    plain_size,
    resume_point,
    session_keys,
)
from mirror.sources.ega_outbox import OutboxLogin, OutboxSource, _decrypted, _Listed, outbox_login
from mirror.sources.ega_spec import EgaSpec

PASSPHRASE = "c4gh-unit-passphrase"


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    where = tmp_path_factory.mktemp("c4gh")
    secret, public = where / "user.sec", where / "user.pub"
    c4gh_keys.generate(str(secret), str(public), PASSPHRASE.encode(), None)
    return secret, public


def encrypt(plain: bytes, public: Path) -> bytes:
    sender = os.urandom(32)
    out = io.BytesIO()
    c4gh_lib.encrypt([(0, sender, get_public_key(str(public)))], io.BytesIO(plain), out)
    return out.getvalue()


def user_key(secret: Path) -> C4ghKey:
    creds = Credentials(
        env={
            "EGA_USERNAME": "someone@example.org",
            "EGA_PASSWORD": "pw",
            "C4GH_SECRET_KEY": str(secret),
            "C4GH_PASSPHRASE": PASSPHRASE,
        }
    )
    key = outbox_login(lookup(creds)).c4gh
    assert key is not None
    return key


def lookup(creds: Credentials) -> CredentialLookup:
    return CredentialLookup(credentials=creds, endpoints={}, where="sources[0].ega")


def test_header_length_of_a_one_recipient_file(keys: tuple[Path, Path]) -> None:
    data = encrypt(b"x" * 1000, keys[1])
    assert header_length(data) == 124
    # Too short to tell: more bytes are read, never a guess.
    assert header_length(data[:15]) is None
    assert header_length(data[:100]) is None
    with pytest.raises(HeaderError, match="not a Crypt4GH file"):
        header_length(b"not-crypt4gh-at-all")


def test_sizes_round_trip() -> None:
    for plain in (0, 1, SEGMENT - 1, SEGMENT, SEGMENT + 1, 5 * SEGMENT, 1 << 30):
        assert plain_size(cipher_size(plain)) == plain
    assert cipher_size(SEGMENT) == CIPHER_SEGMENT
    assert cipher_size(SEGMENT + 1) == CIPHER_SEGMENT + 29


@pytest.mark.parametrize(
    ("held", "header", "kept", "offset"),
    [
        (0, 124, 0, 124),
        (SEGMENT - 1, 124, 0, 124),  # shorter than a segment: from the start
        (SEGMENT, 124, SEGMENT, 124 + CIPHER_SEGMENT),
        (3 * SEGMENT + 17, 232, 3 * SEGMENT, 232 + 3 * CIPHER_SEGMENT),
    ],
)
def test_resume_point(held: int, header: int, kept: int, offset: int) -> None:
    assert resume_point(held, header) == (kept, offset)


def test_a_resume_decrypts_past_a_new_header(keys: tuple[Path, Path], tmp_path: Path) -> None:
    """The second read of a file has another header (another sender key) over the same
    payload: the .part of the first read continues past the second's header."""
    secret, public = keys
    plain = os.urandom(3 * SEGMENT + 5000)
    first = encrypt(plain, public)
    key = user_key(secret)
    keys1 = session_keys(first[:124], key)
    # The outbox re-encrypts the header only: the same session key, a new envelope.
    out = io.BytesIO()
    c4gh_lib.reencrypt(
        [(0, key.secret, None)],
        [(0, os.urandom(32), get_public_key(str(public)))],
        io.BytesIO(first),
        out,
    )
    second = out.getvalue()
    assert second[:124] != first[:124]
    assert second[124:] == first[124:]

    dest = LocalDestination(tmp_path)
    part = tmp_path / "f.part"
    md5 = hashlib.md5()
    sha = hashlib.sha256()
    first_part = dest.open_sized(part, 0, True)
    dec = Decryptor(keys1, first_part, at=0)
    # The first read stops two segments and a bit in.
    dec.feed([first[124 : 124 + 2 * CIPHER_SEGMENT + 900]])
    first_part.close()
    assert part.stat().st_size == 2 * SEGMENT

    held = part.stat().st_size + 0
    kept, offset = resume_point(held, header_length(second) or 0)
    keys2 = session_keys(second[: header_length(second)], key)
    resumed = dest.open_sized(part, kept, False)
    prefix = resumed.read_at(0, kept)
    md5.update(prefix)
    sha.update(prefix)
    dec = Decryptor(keys2, resumed, at=kept)
    # In uneven pieces, as SFTP reads arrive.
    rest = second[offset:]
    pieces = dec.feed([rest[:1000], rest[1000:70000]])
    assert [len(p) for p in pieces] == [SEGMENT]
    pieces += dec.feed([rest[70000:]])
    pieces += dec.finish()
    resumed.close()
    for piece in pieces:
        md5.update(piece)
        sha.update(piece)
    assert part.read_bytes() == plain
    assert md5.hexdigest() == hashlib.md5(plain).hexdigest()
    assert sha.hexdigest() == hashlib.sha256(plain).hexdigest()


def test_a_tampered_segment_is_an_error(keys: tuple[Path, Path], tmp_path: Path) -> None:
    secret, public = keys
    data = bytearray(encrypt(os.urandom(2 * SEGMENT), public))
    data[124 + CIPHER_SEGMENT + 40] ^= 1
    keys1 = session_keys(bytes(data[:124]), user_key(secret))
    part = LocalDestination(tmp_path).open_sized(tmp_path / "f.part", 0, True)
    dec = Decryptor(keys1, part, at=0)
    with pytest.raises(HeaderError, match="segment 1 does not decrypt"):
        dec.feed([bytes(data[124:])])
    part.close()


def test_a_header_for_another_key(keys: tuple[Path, Path], tmp_path: Path) -> None:
    other_sec, other_pub = tmp_path / "o.sec", tmp_path / "o.pub"
    c4gh_keys.generate(str(other_sec), str(other_pub), b"other", None)
    data = encrypt(b"abc", other_pub)
    with pytest.raises(HeaderError, match="does not open with C4GH_SECRET_KEY"):
        session_keys(data[:124], user_key(keys[0]))


# -- the manifest entry and its credentials ----------------------------------------------


def test_outbox_entry() -> None:
    manifest = load_manifest(
        {
            "sources": [
                {
                    "ega": {
                        "datasets": ["EGAD50000000001"],
                        "files": ["EGAF50000000002"],
                        "protocol": "outbox",
                        "keep_encrypted": True,
                    }
                }
            ]
        }
    )
    spec = manifest.sources[0]
    assert spec == EgaSpec(
        datasets=("EGAD50000000001",),
        files=("EGAF50000000002",),
        protocol="outbox",
        keep_encrypted=True,
    )
    assert manifest.endpoints["ega_outbox"] == "sftp://outbox.ega-archive.org:22"
    assert manifest.endpoints["ega_metadata"] == "https://metadata.ega-archive.org"


def test_outbox_files_need_their_datasets() -> None:
    with pytest.raises(ManifestError, match="outbox lists files per dataset"):
        load_manifest({"sources": [{"ega": {"files": ["EGAF50000000002"], "protocol": "outbox"}}]})


def test_keep_encrypted_is_for_the_outbox() -> None:
    with pytest.raises(ManifestError, match="only the outbox"):
        load_manifest(
            {"sources": [{"ega": {"datasets": ["EGAD50000000001"], "keep_encrypted": True}}]}
        )


def test_missing_credentials_are_named(keys: tuple[Path, Path]) -> None:
    with pytest.raises(CredentialsError) as err:
        outbox_login(lookup(Credentials(env={"EGA_USERNAME": "u"})))
    message = str(err.value)
    assert "EGA_SSH_KEY (or EGA_PASSWORD)" in message
    assert "C4GH_SECRET_KEY" in message
    assert "EGA_USERNAME not set" not in message
    env = {"EGA_USERNAME": "u", "EGA_PASSWORD": "pw", "C4GH_SECRET_KEY": str(keys[0])}
    with pytest.raises(CredentialsError, match="C4GH_PASSPHRASE not set"):
        outbox_login(lookup(Credentials(env=env)))


def test_a_wrong_passphrase_names_the_key_not_the_passphrase(
    keys: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    wrong = "wrong-c4gh-phrase-123"
    env = {
        "EGA_USERNAME": "u",
        "EGA_PASSWORD": "pw",
        "C4GH_SECRET_KEY": str(keys[0]),
        "C4GH_PASSPHRASE": wrong,
    }
    with pytest.raises(CredentialsError) as err:
        outbox_login(lookup(Credentials(env=env)))
    assert "C4GH_PASSPHRASE is wrong" in str(err.value)
    assert wrong not in str(err.value)
    out = capsys.readouterr()
    assert out.out == out.err == ""


def test_login_repr_hides_everything(keys: tuple[Path, Path]) -> None:
    env = {
        "EGA_USERNAME": "person@example.org",
        "EGA_PASSWORD": "hunter2-secret",
        "C4GH_SECRET_KEY": str(keys[0]),
        "C4GH_PASSPHRASE": PASSPHRASE,
    }
    login = outbox_login(lookup(Credentials(env=env)))
    assert isinstance(login, OutboxLogin)
    assert login.c4gh is not None
    text = repr(login)
    for secret in ("person@example.org", "hunter2-secret", login.c4gh.secret.hex()):
        assert secret not in text


# -- matching the listing to the metadata API's records ------------------------------------


def outbox_source(warnings: list[str]) -> OutboxSource:
    ctx = SimpleNamespace(
        endpoints={"ega_outbox": "sftp://h:22", "ega_metadata": "https://m"},
        warn=warnings.append,
    )
    login = OutboxLogin(username="u", c4gh=C4ghKey(b"k" * 32))
    return OutboxSource(("EGAD50000000001",), (), ctx, login)  # type: ignore[arg-type]


def record(acc: str, size: int, name: str | None, kind: str = "SHA256") -> dict[str, object]:
    doc: dict[str, object] = {
        "accession_id": acc,
        "filesize": size,
        "unencrypted_checksum": "AB" * 16 if kind == "MD5" else "CD" * 32,
        "unencrypted_checksum_type": kind,
    }
    if name is not None:
        doc["display_name"] = name
    return doc


def test_listing_matched_by_display_name() -> None:
    warnings: list[str] = []
    source = outbox_source(warnings)
    records = [
        record("EGAF50000000001", 124 + cipher_size(1000), "a.bam"),
        record("EGAF50000000002", 124 + cipher_size(2000), "b.vcf", "MD5"),
        record("EGAF50000000003", 124 + cipher_size(3000), "c.txt", "CRC32"),
        record("EGAF50000000004", 124 + cipher_size(4000), "d.cram"),
    ]
    listed = [
        # Two keys at EGA: a longer header than the record's; the server's plaintext size.
        _Listed(name="a.bam.c4gh", size=232 + cipher_size(1000), plain=1000),
        _Listed(name="b.vcf.c4gh", size=124 + cipher_size(2000), plain=None),
        _Listed(name="c.txt.c4gh", size=124 + cipher_size(3000), plain=None),
        _Listed(name="d.cram.unavailable.c4gh", size=124 + cipher_size(4000), plain=None),
        _Listed(name="e.bin.c4gh", size=500, plain=None),
    ]
    tasks = {t.accession: t for t in source._match("EGAD50000000001", records, listed)}
    a = tasks["EGAF50000000001"]
    assert (a.path, a.size, a.verify, a.checksum) == (
        "ega/EGAD50000000001/EGAF50000000001/a.bam",
        1000,
        "sha256",
        "cd" * 32,
    )
    assert a.url == "sftp://h:22/EGAD50000000001/a.bam.c4gh"
    assert (tasks["EGAF50000000002"].verify, tasks["EGAF50000000002"].size) == ("md5", 2000)
    assert (tasks["EGAF50000000003"].verify, tasks["EGAF50000000003"].checksum) == ("size", None)
    assert tasks["EGAF50000000004"].error == "on cold storage at EGA; a later run fetches it"
    assert tasks["EGAF50000000004"].path.endswith("/EGAF50000000004/d.cram")
    stray = tasks["e.bin"]
    assert stray.path == "ega/EGAD50000000001/unmatched/e.bin"
    assert stray.error is not None
    assert "no record of the metadata API matches it" in stray.error
    assert any("CRC32" in w for w in warnings)
    assert any("d.cram (EGAF50000000004) is on cold storage" in w for w in warnings)


def test_without_display_names_only_a_size_one_record_has_matches() -> None:
    source = outbox_source([])
    size = 124 + cipher_size(5000)
    records = [
        record("EGAF50000000001", size, None),
        record("EGAF50000000002", size, None),  # the same size: neither can be told
        record("EGAF50000000003", size + 1, None),
    ]
    listed = [
        _Listed(name="x.c4gh", size=size, plain=None),
        _Listed(name="y.c4gh", size=size + 1, plain=None),
    ]
    tasks = source._match("EGAD50000000001", records, listed)
    assert [(t.accession, t.error is None) for t in tasks] == [
        ("x", False),
        ("EGAF50000000003", True),
    ]


def test_decrypted_filesize_attribute() -> None:
    attrs = asyncssh.SFTPAttrs(size=10, extended=[(b"decrypted_filesize", b"1234")])
    assert _decrypted(attrs) == 1234
    assert _decrypted(asyncssh.SFTPAttrs(size=10)) is None
