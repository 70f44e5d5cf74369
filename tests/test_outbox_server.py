"""The Live Outbox test server itself: OpenSSH serves the Crypt4GH files as EGA's outbox does,
the metadata API publishes their plaintext checksums, the proxy cuts at the byte."""

from __future__ import annotations

import hashlib
import io
import json
import socket
import struct
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp
import asyncssh
import crypt4gh.keys
import crypt4gh.lib
import pytest

from mirror.emulator import Catalog, Emulator
from mirror.emulator.ega._metadata import OutboxOptions
from mirror.emulator.ega._outbox import C4GH_HEADER_SIZE, c4gh_size, write_outbox
from tests.emulator.helpers import emulator_options
from tests.outbox import SMALL_CATALOG, OutboxFactory, OutboxServer

DATASET = "EGAD50000000001"
FILES = SMALL_CATALOG.outbox_datasets[0].files
COLD = FILES[2]
MD5_FILE = FILES[3]


def sftp(server: OutboxServer, *commands: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """OpenSSH's own client, in batch mode, with the plain copy of the login key."""
    return subprocess.run(
        [
            "sftp",
            "-b",
            "-",
            "-i",
            str(server.ssh_key_plain),
            "-P",
            str(server.port),
            "-o",
            f"UserKnownHostsFile={server.known_hosts}",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "BatchMode=yes",
            f"{server.user}@{server.host}",
        ],
        input="\n".join(commands) + "\n",
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=60,
    )


def decrypt(server: OutboxServer, encrypted: bytes) -> bytes:
    secret = crypt4gh.keys.get_private_key(server.c4gh_secret, lambda: server.c4gh_passphrase)
    out = io.BytesIO()
    crypt4gh.lib.decrypt([(0, secret, None)], io.BytesIO(encrypted), out)
    return out.getvalue()


def metadata(server: OutboxServer, dataset: str = DATASET) -> list[dict[str, Any]]:
    url = f"{server.endpoints()['ega_metadata']}/datasets/{dataset}/files?limit=100000"
    with urllib.request.urlopen(url, timeout=30) as answer:
        records: list[dict[str, Any]] = json.load(answer)
    return records


def test_sftp_lists_the_datasets_and_gets_files_whose_plaintext_has_the_published_checksum(
    outbox: OutboxServer, tmp_path: Path
) -> None:
    done = sftp(
        outbox,
        "pwd",
        "ls -1",
        f"ls -1 {DATASET}",
        f"get {DATASET}/{FILES[1].name}.c4gh",
        f"get {DATASET}/{MD5_FILE.name}.c4gh",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "Remote working directory: /outbox" in lines
    listed = [line for line in lines if not line.startswith("sftp>")]
    assert DATASET in listed
    assert sorted(n.removeprefix(f"{DATASET}/") for n in listed if n.startswith(f"{DATASET}/")) == (
        sorted(item.c4gh_name for item in FILES)
    )
    assert f"{COLD.name}.unavailable.c4gh" in {n.rsplit("/", 1)[-1] for n in listed}

    records = {r["accession_id"]: r for r in metadata(outbox)}
    for item, digest in ((FILES[1], hashlib.sha256), (MD5_FILE, hashlib.md5)):
        encrypted = (tmp_path / f"{item.name}.c4gh").read_bytes()
        record = records[item.accession]
        assert len(encrypted) == record["filesize"] == c4gh_size(item.size)
        plain = decrypt(outbox, encrypted)
        assert plain == outbox.plain_bytes(item.accession)
        assert record["unencrypted_checksum_type"] == digest().name.upper()
        assert record["unencrypted_checksum"] == digest(plain).hexdigest()
        assert record["display_name"] == item.name


def test_an_unavailable_file_is_listed_but_cannot_be_read(
    outbox: OutboxServer, tmp_path: Path
) -> None:
    cold = f"{DATASET}/{COLD.name}.unavailable.c4gh"
    done = sftp(outbox, f"get {cold}", cwd=tmp_path)
    assert done.returncode != 0
    assert "Permission denied" in done.stderr
    assert not (tmp_path / f"{COLD.name}.unavailable.c4gh").exists()

    outbox.make_available(DATASET, COLD.accession)
    done = sftp(outbox, f"get {DATASET}/{COLD.name}.c4gh", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    got = (tmp_path / f"{COLD.name}.c4gh").read_bytes()
    assert decrypt(outbox, got) == outbox.plain_bytes(COLD.accession)


async def test_a_password_logs_in_by_keyboard_interactive_only(outbox: OutboxServer) -> None:
    login: dict[str, Any] = {
        "username": outbox.user,
        "known_hosts": str(outbox.known_hosts),
        "client_keys": None,
        "agent_path": None,
    }
    with pytest.raises(asyncssh.PermissionDenied):
        await asyncssh.connect(
            outbox.host, outbox.port, password=outbox.password, kbdint_auth=False, **login
        )
    async with (
        asyncssh.connect(
            outbox.host, outbox.port, password=outbox.password, password_auth=False, **login
        ) as conn,
        conn.start_sftp_client() as sftp_client,
    ):
        assert await sftp_client.getcwd() == "/outbox"
        assert DATASET in await sftp_client.listdir(".")
    assert f"Accepted keyboard-interactive/pam for {outbox.user}" in outbox.sshd_log()
    assert "Accepted password" not in outbox.sshd_log()

    key = asyncssh.read_private_key(outbox.ssh_key, outbox.ssh_passphrase)
    login["client_keys"] = [key]
    async with (
        asyncssh.connect(outbox.host, outbox.port, **login) as conn,
        conn.start_sftp_client() as sftp_client,
    ):
        names = await sftp_client.listdir(DATASET)
        assert f"{FILES[0].name}.c4gh" in names
    assert f"Accepted publickey for {outbox.user}" in outbox.sshd_log()


def test_the_proxy_cuts_a_connection_at_the_byte(outbox: OutboxServer, tmp_path: Path) -> None:
    outbox.cut_after(10)
    with socket.create_connection((outbox.host, outbox.port), timeout=30) as sock:
        got = b""
        while chunk := sock.recv(4096):
            got += chunk
    assert got == b"SSH-2.0-Op"
    assert outbox.bytes_sent() == [10]

    # A transfer dropped mid-file: the client reads exactly the bytes allowed, then EOF.
    big = FILES[1]
    outbox.cut_after(300_000)
    done = sftp(outbox, f"get {DATASET}/{big.name}.c4gh", cwd=tmp_path)
    assert done.returncode != 0
    assert outbox.bytes_sent()[1] == 300_000
    part = tmp_path / f"{big.name}.c4gh"
    assert 0 < part.stat().st_size < big.c4gh_size

    done = sftp(outbox, f"get {DATASET}/{big.name}.c4gh", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert outbox.bytes_sent()[2] > big.c4gh_size


def test_headers_change_between_downloads_and_the_payload_does_not(
    outbox: OutboxServer, tmp_path: Path
) -> None:
    item = FILES[1]
    name = f"{DATASET}/{item.name}.c4gh"
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    assert sftp(outbox, f"get {name}", cwd=first).returncode == 0
    outbox.reencrypt_headers(item.accession)
    assert sftp(outbox, f"get {name}", cwd=second).returncode == 0
    old, new = (d / f"{item.name}.c4gh" for d in (first, second))
    old_bytes, new_bytes = old.read_bytes(), new.read_bytes()
    assert len(old_bytes) == len(new_bytes) == item.c4gh_size
    assert old_bytes[:16] == new_bytes[:16]  # magic, version, one packet
    assert old_bytes[16:C4GH_HEADER_SIZE] != new_bytes[16:C4GH_HEADER_SIZE]
    assert old_bytes[C4GH_HEADER_SIZE:] == new_bytes[C4GH_HEADER_SIZE:]
    # The old header still opens the new payload: a resume past the header is sound.
    spliced = old_bytes[:C4GH_HEADER_SIZE] + new_bytes[C4GH_HEADER_SIZE:]
    assert (
        decrypt(outbox, spliced) == decrypt(outbox, new_bytes) == outbox.plain_bytes(item.accession)
    )


def test_write_outbox_lays_out_one_packet_crypt4gh_files(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.mkdir()
    crypt4gh.keys.c4gh.generate(keys / "sec", keys / "pub", b"pw", None)
    public = crypt4gh.keys.get_public_key(keys / "pub")
    written = write_outbox(SMALL_CATALOG.outbox_datasets, tmp_path / "root", public)
    assert [p.relative_to(tmp_path / "root").as_posix() for p in written] == [
        f"{DATASET}/{item.c4gh_name}" for item in FILES
    ]
    secret = crypt4gh.keys.get_private_key(keys / "sec", lambda: "pw")
    for path, item in zip(written, FILES, strict=True):
        data = path.read_bytes()
        assert len(data) == item.c4gh_size
        # magic, version 1, one packet of 108 bytes (its length counts itself).
        assert data[:8] == b"crypt4gh"
        assert struct.unpack_from("<III", data, 8) == (1, 1, C4GH_HEADER_SIZE - 16)
        assert (path.stat().st_mode & 0o777) == (0o000 if item.unavailable else 0o444)
        out = io.BytesIO()
        crypt4gh.lib.decrypt([(0, secret, None)], io.BytesIO(data), out)
        assert out.getvalue() == b"".join(item.plain())
    assert ((tmp_path / "root" / DATASET).stat().st_mode & 0o777) == 0o555


async def test_the_metadata_api_lists_records_and_its_faults() -> None:
    catalog = SMALL_CATALOG
    options = OutboxOptions(wrong_checksum=[FILES[0].accession])
    async with Emulator(catalog, outbox=options) as emu, aiohttp.ClientSession() as session:
        base = emu.endpoints["ega_metadata"]
        async with session.get(f"{base}/datasets/{DATASET}/files?limit=10") as answer:
            assert answer.status == 200
            records = await answer.json()
        assert [r["accession_id"] for r in records] == [item.accession for item in FILES]
        first, md5 = records[0], records[3]
        assert set(first) == {
            "accession_id",
            "filesize",
            "extension",
            "unencrypted_checksum",
            "unencrypted_checksum_type",
            "locations",
            "has_report",
            "display_name",
        }
        assert first["unencrypted_checksum"] != FILES[0].checksum
        assert len(first["unencrypted_checksum"]) == 64
        assert records[1]["unencrypted_checksum"] == FILES[1].checksum
        assert md5["unencrypted_checksum_type"] == "MD5"
        assert md5["unencrypted_checksum"] == hashlib.md5(b"".join(MD5_FILE.plain())).hexdigest()
        assert [r["extension"] for r in records] == ["bam", "bam.bai", "vcf.gz", "fastq.gz", "bam"]

        emu.outbox.set_display_names(False)
        emu.outbox.set_wrong_checksum(FILES[0].accession, False)
        async with session.get(f"{base}/datasets/{DATASET.lower()}/files") as answer:
            records = await answer.json()
        assert all("display_name" not in r for r in records)
        assert records[0]["unencrypted_checksum"] == FILES[0].checksum

        async with session.get(f"{base}/datasets/EGAD50000000999/files") as answer:
            assert answer.status == 404
            assert "EGAD50000000999" in (await answer.json())["detail"]
        await emu.wait_idle()
        paths = [(entry.host, entry.status) for entry in emu.log]
        assert paths == [("ega", 200), ("ega", 200), ("ega", 404)]


async def test_the_emulator_command_sets_the_metadata_api_options(tmp_path: Path) -> None:
    catalog = tmp_path / "catalog.json"
    catalog.write_text(json.dumps(SMALL_CATALOG.to_dict()))
    args = ["--catalog", str(catalog), "--outbox-no-display-names"]
    args += ["--outbox-wrong-checksum", FILES[1].accession]
    async with emulator_options(*args) as served, aiohttp.ClientSession() as session:
        url = f"{served['endpoints']['ega_metadata']}/datasets/{DATASET}/files"
        async with session.get(url) as answer:
            records = await answer.json()
    assert all("display_name" not in r for r in records)
    checksums = [
        r["unencrypted_checksum"] == item.checksum for r, item in zip(records, FILES, strict=True)
    ]
    assert checksums == [True, False, True, True, True]


def test_catalog_round_trips_and_rejects_bad_records() -> None:
    assert Catalog.from_dict(json.loads(json.dumps(SMALL_CATALOG.to_dict()))) == SMALL_CATALOG
    assert SMALL_CATALOG.outbox_file(FILES[0].accession) == FILES[0]
    assert SMALL_CATALOG.outbox_dataset(DATASET.lower()) == SMALL_CATALOG.outbox_datasets[0]
    with pytest.raises(ValueError, match="duplicate outbox accession"):
        SMALL_CATALOG.merge(SMALL_CATALOG)
    with pytest.raises(ValueError, match="not like EGAD5"):
        Catalog.generate_outbox("EGAD5")
    assert c4gh_size(0) == C4GH_HEADER_SIZE
    assert c4gh_size(65536) == C4GH_HEADER_SIZE + 65536 + 28
    assert c4gh_size(65537) == C4GH_HEADER_SIZE + 65537 + 56


@pytest.mark.slow  # 65 MiB encrypted, fetched and decrypted: seconds
def test_big_files_are_encrypted_once_per_session_and_linked_into_each_server(
    outbox_factory: OutboxFactory, tmp_path: Path
) -> None:
    catalog = Catalog.generate_outbox("EGAD50000000002", files=2, sizes=(65 * 2**20, 1000))
    big, small = catalog.outbox_datasets[0].files
    first, second = outbox_factory(catalog), outbox_factory(catalog)
    assert first.path(big.accession).stat().st_ino == second.path(big.accession).stat().st_ino
    assert first.path(small.accession).stat().st_ino != second.path(small.accession).stat().st_ino
    # What the second server serves decrypts to the file's plaintext.
    done = sftp(second, f"get EGAD50000000002/{big.name}.c4gh", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    secret = crypt4gh.keys.get_private_key(second.c4gh_secret, lambda: second.c4gh_passphrase)
    digest = _HashSink()
    with open(tmp_path / f"{big.name}.c4gh", "rb") as encrypted:
        crypt4gh.lib.decrypt([(0, secret, None)], encrypted, digest)
    assert digest.size == big.size
    assert digest.sha256.hexdigest() == big.checksum


class _HashSink:
    """A file-like that hashes what is written to it."""

    def __init__(self) -> None:
        self.sha256 = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.sha256.update(data)
        self.size += len(data)
        return len(data)
