"""``ega: {protocol: outbox}`` against the Live Outbox of the test suite: OpenSSH's sshd
(chroot, internal-sftp, read-only) behind a proxy that cuts connections, and EGA's
metadata API in the emulator (tests/outbox.py)."""

from __future__ import annotations

import csv
import logging
from collections.abc import Iterator
from pathlib import Path

import asyncssh
import pytest
import yaml

import mirror.sources.ega_outbox  # noqa: F401  (its logger levels are set on import)
from mirror.emulator import Catalog
from mirror.emulator.ega._metadata import OutboxOptions
from tests.conftest import mirror_cmd
from tests.inproc import FAST_BACKOFF, Cli, tune_runs
from tests.outbox import SMALL_CATALOG, OutboxFactory, OutboxServer

DATASET = "EGAD50000000001"
FILES = SMALL_CATALOG.outbox_datasets[0].files
COLD = FILES[2]


@pytest.fixture(autouse=True)
def _fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    tune_runs(monkeypatch, FAST_BACKOFF)


def manifest(
    tmp_path: Path, server: OutboxServer, *, files: list[str] | None = None, **extra: object
) -> Path:
    entry: dict[str, object] = {"datasets": [DATASET], "protocol": "outbox", **extra}
    if files:
        entry["files"] = files
    path = tmp_path / "manifest.yaml"
    doc = {
        "dest": str(tmp_path / "dest"),
        "workers": 3,
        "endpoints": server.endpoints(),
        "sources": [{"ega": entry}],
    }
    path.write_text(yaml.safe_dump(doc))
    return path


def env(server: OutboxServer, *, key: bool = True) -> dict[str, str]:
    return {**server.env(key=key), "EGA_KNOWN_HOSTS": str(server.known_hosts)}


def landed(tmp_path: Path, server: OutboxServer, accession: str) -> Path:
    item = server.file(accession)
    return tmp_path / "dest" / "ega" / item.dataset / accession / item.name


def index(tmp_path: Path) -> dict[str, dict[str, str]]:
    with open(tmp_path / "dest" / "index.tsv", newline="") as f:
        return {row["accession"]: row for row in csv.DictReader(f, delimiter="\t")}


def metadata_requests(server: OutboxServer) -> int:
    return sum("/datasets/" in entry.path for entry in server.emulator.log)


def test_five_files_one_cut_one_cold_then_the_cold_one_alone(
    outbox: OutboxServer, tmp_path: Path, cli: Cli
) -> None:
    # The first connection drops while files are in flight (3.4 MB encrypted in all).
    outbox.cut_after(1_500_000)
    # In-process SSH: the bytes-on-the-wire bound below is exact for it; OpenSSH's ssh
    # may drop up to its 2 MiB window when cut (the GiB test below covers that client).
    first = cli("run", str(manifest(tmp_path, outbox, ssh_client="asyncssh")), env=env(outbox))
    assert first.returncode == 1, first.stderr
    assert "on cold storage at EGA; a later run fetches it" in first.stdout + first.stderr
    wire = outbox.bytes_sent()
    assert len(wire) >= 2  # cut, then connected again
    rows = index(tmp_path)
    for item in FILES:
        if item is COLD:
            assert rows[item.accession]["status"] == "failed"
            assert not landed(tmp_path, outbox, item.accession).exists()
            continue
        got = landed(tmp_path, outbox, item.accession)
        assert got.read_bytes() == outbox.plain_bytes(item.accession)
        verify = rows[item.accession]["verified_by"]
        assert verify == ("md5" if item is FILES[3] else "sha256")
        assert rows[item.accession]["md5"] == outbox.plain_md5(item.accession)
    # Nothing left beside the files: no .part, no kept .c4gh.
    leftovers = [p.name for p in (tmp_path / "dest" / "ega").rglob("*") if p.is_file()]
    assert sorted(leftovers) == sorted(i.name for i in FILES if i is not COLD)
    encrypted = sum(outbox.path(i.accession).stat().st_size for i in FILES if i is not COLD)
    assert sum(wire) <= 1.15 * encrypted + 200_000  # handshakes and listings besides

    outbox.make_available(DATASET, COLD.accession)
    before_meta, before_wire = metadata_requests(outbox), len(wire)
    second = cli("run", str(manifest(tmp_path, outbox, ssh_client="asyncssh")), env=env(outbox))
    assert second.returncode == 0, second.stderr
    assert landed(tmp_path, outbox, COLD.accession).read_bytes() == outbox.plain_bytes(
        COLD.accession
    )
    assert metadata_requests(outbox) - before_meta == 1
    again = outbox.bytes_sent()[before_wire:]
    cold = outbox.path(COLD.accession).stat().st_size
    # One connection: the listing and the one file, not the four verified before.
    assert len(again) == 1
    assert cold < again[0] < cold + 100_000
    assert index(tmp_path)[COLD.accession]["status"] == "verified"


@pytest.mark.parametrize(
    ("client", "mib"),
    [
        ("asyncssh", 6),
        # OpenSSH's ssh drops what it holds unwritten when the connection goes (up to
        # its channel window, 2 MiB, and the pipe's 1 MiB): a file where that is small.
        ("openssh", 64),
    ],
)
def test_a_file_cut_mid_way_resumes_past_a_new_header(
    outbox_factory: OutboxFactory, tmp_path: Path, client: str, mib: int
) -> None:
    catalog = Catalog.generate_outbox(DATASET, files=1, sizes=(mib * 1024 * 1024 + 123,))
    server = outbox_factory(catalog)
    item = catalog.outbox_datasets[0].files[0]
    size = server.path(item.accession).stat().st_size
    server.cut_after(size // 2, times=2)
    # A child process, as a user runs it: what it prints up to its exit is all there.
    path = manifest(tmp_path, server, ssh_client=client)
    done = mirror_cmd("run", str(path), env=env(server))
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    wire = server.bytes_sent()
    assert len(wire) == 3
    assert sum(wire) <= 1.15 * size
    got = landed(tmp_path, server, item.accession)
    assert got.stat().st_size == item.size
    assert index(tmp_path)[item.accession]["md5"] == server.plain_md5(item.accession)


def test_a_wrong_published_checksum_fails_the_file_by_name(
    outbox_factory: OutboxFactory, tmp_path: Path, cli: Cli
) -> None:
    victim = FILES[0]
    server = outbox_factory(SMALL_CATALOG, OutboxOptions(wrong_checksum=[victim.accession]))
    done = cli("run", str(manifest(tmp_path, server)), env=env(server))
    assert done.returncode == 1
    path = f"ega/{DATASET}/{victim.accession}/{victim.name}"
    assert f"SHA256 mismatch for {path}" in done.stdout + done.stderr
    final = landed(tmp_path, server, victim.accession)
    assert not final.exists()
    assert not final.with_name(final.name + ".part").exists()
    assert index(tmp_path)[victim.accession]["status"] == "failed"
    assert landed(tmp_path, server, FILES[1].accession).exists()


@pytest.mark.parametrize("client", ["openssh", "asyncssh"])
def test_keyboard_interactive_without_the_key_and_files_by_accession(
    outbox: OutboxServer, tmp_path: Path, cli: Cli, client: str
) -> None:
    wanted = FILES[1].accession
    path = manifest(tmp_path, outbox, files=[wanted], ssh_client=client)
    done = cli("run", str(path), env=env(outbox, key=False))
    assert done.returncode == 0, done.stderr
    assert landed(tmp_path, outbox, wanted).read_bytes() == outbox.plain_bytes(wanted)
    assert list(index(tmp_path)) == [wanted]
    assert "Accepted keyboard-interactive/pam" in outbox.sshd_log()
    assert "Accepted password" not in outbox.sshd_log()


def test_records_without_display_names_match_by_size_and_keep_encrypted(
    outbox_factory: OutboxFactory, tmp_path: Path, cli: Cli
) -> None:
    server = outbox_factory(SMALL_CATALOG, OutboxOptions(display_names=False))
    done = cli("run", str(manifest(tmp_path, server, keep_encrypted=True)), env=env(server))
    assert done.returncode == 1  # the cold file
    for item in FILES:
        if item is COLD:
            continue
        got = landed(tmp_path, server, item.accession)
        assert got.read_bytes() == server.plain_bytes(item.accession)
        kept = got.with_name(got.name + ".c4gh")
        # The payload as served; the header is this download's own.
        served = server.path(item.accession).read_bytes()
        assert kept.read_bytes()[-1000:] == served[-1000:]
        assert kept.stat().st_size == len(served)


def test_a_missing_credential_is_named_before_any_connection(
    outbox: OutboxServer, tmp_path: Path, cli: Cli
) -> None:
    partial = {k: v for k, v in env(outbox).items() if k != "C4GH_SECRET_KEY"}
    done = cli("run", str(manifest(tmp_path, outbox)), env=partial)
    assert done.returncode == 2
    assert "C4GH_SECRET_KEY not set" in done.stderr
    assert outbox.bytes_sent() == []
    assert metadata_requests(outbox) == 0


@pytest.fixture
def debug_everything() -> Iterator[None]:
    """asyncssh and crypt4gh at DEBUG, as a user chasing a problem would set them."""
    names = ("asyncssh", "crypt4gh")
    saved = [logging.getLogger(n).level for n in names]
    for name in names:
        logging.getLogger(name).setLevel(logging.DEBUG)
    asyncssh.set_debug_level(2)
    try:
        yield
    finally:
        for name, level in zip(names, saved, strict=True):
            logging.getLogger(name).setLevel(level)
        asyncssh.set_debug_level(1)


@pytest.mark.parametrize(
    ("client", "key"), [("openssh", True), ("openssh", False), ("asyncssh", False)]
)
def test_secrets_reach_no_output_log_or_file(
    outbox: OutboxServer, tmp_path: Path, cli: Cli, debug_everything: None, client: str, key: bool
) -> None:
    outbox.cut_after(1_000_000)
    path = manifest(tmp_path, outbox, ssh_client=client)
    done = cli("run", "-vvv", str(path), env=env(outbox, key=key))
    assert done.returncode == 1
    # The log is on: the client's own lines are in it.
    assert ("asyncssh" if client == "asyncssh" else "through OpenSSH's ssh") in done.stderr
    secrets = [outbox.password, outbox.ssh_passphrase, outbox.c4gh_passphrase]
    secret_key = _c4gh_secret_hex(outbox)
    texts = [done.stdout, done.stderr]
    for path in (tmp_path / "dest").rglob("*"):
        if path.is_file():
            texts.append(path.read_bytes().decode("latin-1"))
    assert len(texts) > 4
    for text in texts:
        for secret in secrets:
            assert secret not in text
        assert secret_key not in text.lower()


def _c4gh_secret_hex(server: OutboxServer) -> str:
    from crypt4gh.keys import get_private_key

    key: bytes = get_private_key(str(server.c4gh_secret), lambda: server.c4gh_passphrase)
    return key.hex()


@pytest.mark.slow  # a GiB encrypted (once per session), sent, decrypted and hashed
@pytest.mark.timeout(900)
def test_five_files_one_a_gibibyte_cut_mid_way_one_cold(
    outbox_factory: OutboxFactory, tmp_path: Path, cli: Cli
) -> None:
    sizes = (1 << 30, 256 * 1024, 512 * 1024 + 7, 300_000, 1 << 20)
    catalog = Catalog.generate_outbox(DATASET, files=5, sizes=sizes, unavailable=[2], md5=[3])
    server = outbox_factory(catalog)
    files = catalog.outbox_datasets[0].files
    big, cold = files[0], files[2]
    encrypted = {f.accession: server.path(f.accession).stat().st_size for f in files}
    # The first connection drops 40 % of the way into the big file.
    server.cut_after(encrypted[big.accession] * 2 // 5)
    first = cli("run", str(manifest(tmp_path, server)), env=env(server))
    assert first.returncode == 1, first.stderr
    assert "on cold storage at EGA; a later run fetches it" in first.stdout + first.stderr
    wire = server.bytes_sent()
    assert len(wire) == 2  # cut, then connected again
    rows = index(tmp_path)
    assert rows[cold.accession]["status"] == "failed"
    for f in files:
        if f is cold:
            continue
        assert rows[f.accession]["status"] == "verified"
        assert rows[f.accession]["verified_by"] == ("md5" if f is files[3] else "sha256")
        assert rows[f.accession]["md5"] == server.plain_md5(f.accession)
        assert landed(tmp_path, server, f.accession).stat().st_size == f.size
    small = sum(n for a, n in encrypted.items() if a not in (big.accession, cold.accession))
    # The big file resumed: what went over the wire is within 15 % of it (plus the
    # small files, handshakes and listings).
    assert sum(wire) <= 1.15 * encrypted[big.accession] + small + 200_000

    server.make_available(DATASET, cold.accession)
    second = cli("run", str(manifest(tmp_path, server)), env=env(server))
    assert second.returncode == 0, second.stderr
    (again,) = server.bytes_sent()[len(wire) :]
    assert encrypted[cold.accession] < again < encrypted[cold.accession] + 100_000
    assert landed(tmp_path, server, cold.accession).read_bytes() == server.plain_bytes(
        cold.accession
    )


def test_a_file_no_record_matches_fails_with_its_reason(
    outbox: OutboxServer, tmp_path: Path, cli: Cli
) -> None:
    stray = outbox.root / DATASET / "stray.bin.c4gh"
    stray.write_bytes(outbox.path(FILES[0].accession).read_bytes())
    stray.chmod(0o444)
    done = cli("run", str(manifest(tmp_path, outbox)), env=env(outbox))
    assert done.returncode == 1
    row = index(tmp_path)["stray.bin"]
    assert row["status"] == "failed"
    assert row["path"] == f"ega/{DATASET}/unmatched/stray.bin"
    assert "no record of the metadata API matches it" in row["reason"]
    assert landed(tmp_path, outbox, FILES[0].accession).exists()


@pytest.mark.parametrize("client", ["openssh", "asyncssh"])
def test_a_refused_login_is_exit_two(
    outbox: OutboxServer, tmp_path: Path, cli: Cli, client: str
) -> None:
    wrong = {**env(outbox, key=False), "EGA_PASSWORD": "not-the-password"}
    done = cli("run", str(manifest(tmp_path, outbox, ssh_client=client)), env=wrong)
    assert done.returncode == 2
    assert "refused the login (EGA_USERNAME with EGA_PASSWORD)" in done.stdout + done.stderr
    assert "not-the-password" not in done.stdout + done.stderr


@pytest.mark.parametrize("client", ["openssh", "asyncssh"])
def test_an_unknown_host_key_stops_before_any_login(
    outbox: OutboxServer, tmp_path: Path, cli: Cli, client: str
) -> None:
    known = tmp_path / "known_hosts"
    known.write_text("")
    done = cli(
        "run",
        str(manifest(tmp_path, outbox, ssh_client=client)),
        env={**env(outbox), "EGA_KNOWN_HOSTS": str(known)},
    )
    assert done.returncode != 0
    assert f"its host key is not in {known}" in done.stdout + done.stderr
    assert "Accepted" not in outbox.sshd_log()


def test_a_payload_that_fails_its_mac_fails_the_file_by_name(
    outbox: OutboxServer, tmp_path: Path, cli: Cli
) -> None:
    victim = FILES[1]  # 2 MiB: 32 segments
    served = outbox.path(victim.accession)
    data = bytearray(served.read_bytes())
    data[124 + 5 * 65564 + 100] ^= 0xFF  # inside the sixth segment
    served.write_bytes(bytes(data))
    done = cli("run", str(manifest(tmp_path, outbox)), env=env(outbox))
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    row = index(tmp_path)[victim.accession]
    assert row["status"] == "failed"
    assert "segment 5 does not decrypt (its MAC does not match)" in row["reason"]
    final = landed(tmp_path, outbox, victim.accession)
    assert not final.exists()
    assert landed(tmp_path, outbox, FILES[0].accession).exists()


def test_the_next_run_resumes_past_the_header_the_outbox_made_anew(
    outbox_factory: OutboxFactory, tmp_path: Path, cli: Cli
) -> None:
    catalog = Catalog.generate_outbox(DATASET, files=1, sizes=(6 * 1024 * 1024 + 5,))
    server = outbox_factory(catalog)
    item = catalog.outbox_datasets[0].files[0]
    size = server.path(item.accession).stat().st_size
    # Every connection of the first run drops early: one per attempt (the first one
    # lists the dataset too), eight attempts, and it gives up part-way. In-process SSH:
    # OpenSSH's ssh drops what it holds unwritten when its connection goes (up to its
    # 2 MiB window), more than these short connections carry, so what it keeps varies.
    server.cut_after(size // 16, times=8)
    first = cli("run", str(manifest(tmp_path, server, ssh_client="asyncssh")), env=env(server))
    assert first.returncode == 1
    assert len(server.bytes_sent()) == 8
    final = landed(tmp_path, server, item.accession)
    held = final.with_name(final.name + ".part").stat().st_size
    # How much each cut connection leaves depends on the reads in flight when it drops
    # (15 to 25 segments seen); some whole segments are what the resume needs.
    assert held >= 4 * 65536
    header = server.path(item.accession).read_bytes()[:124]
    server.reencrypt_headers()
    assert server.path(item.accession).read_bytes()[:124] != header
    before = len(server.bytes_sent())
    second = cli("run", str(manifest(tmp_path, server, ssh_client="asyncssh")), env=env(server))
    assert second.returncode == 0, second.stderr
    (wire,) = server.bytes_sent()[before:]
    # Only what the first run had not decrypted (from its last whole segment on).
    assert wire <= size - held + 65564 + 50_000
    assert index(tmp_path)[item.accession]["md5"] == server.plain_md5(item.accession)
