"""EGA end to end: tickets (expiry, lost sessions, /results) and the Data API (slices)."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import pytest
import yaml
from aiohttp import web

import mirror
import mirror._engine
from mirror import RetryPolicy
from mirror._cli import main as mirror_main
from mirror._state import StoredFile, open_store
from mirror.emulator import Catalog, EgaDataset, EgaFile, EgaOptions, Emulator, Fault
from mirror.sources.ega_data import CLIENT_ID, CLIENT_SECRET

from .conftest import read_index
from .replay import RECORDINGS, Answer, Replay
from .test_cli import slices_done, wait_for
from .threaded import serving

USER, PASSWORD, REKEY = "testuser@ebi.ac.uk", "pw-S3CRET-4a1f", "rekey-S3CRET-9b2c"
CREDS = {"EGA_USERNAME": USER, "EGA_PASSWORD": PASSWORD, "EGA_REKEY": REKEY}
DATASET = "EGAD00010000805"
#: Waits long enough for an event handler in the same loop to act between attempts.
SLOW_RETRY = RetryPolicy(attempts=8, base=0.3, cap=0.6)


def ega_manifest(
    endpoints: dict[str, str], dest: Path, protocol: str = "tickets", **source: Any
) -> dict[str, Any]:
    return {
        "version": 1,
        "dest": str(dest),
        "workers": 4,
        "endpoints": endpoints,
        "sources": [{"ega": {"datasets": [DATASET], "protocol": protocol, **source}}],
    }


def md5_file(path: Path) -> str:
    h = hashlib.md5()
    with path.open("rb") as f:
        while chunk := f.read(8 << 20):
            h.update(chunk)
    return h.hexdigest()


async def test_five_files_over_tickets_with_a_ticket_expiring_and_a_session_lost(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    catalog = Catalog.generate_ega(dataset=DATASET, files=5, size=400_000, size_spread=0.5)
    victim = catalog.ega_datasets[0].files[2]
    async with Emulator(catalog, ega=EgaOptions(users={USER: PASSWORD})) as emu:
        # The victim's first stream breaks mid-way; at that moment its ticket expires
        # (the 7-day removal) and every session is lost (the 10-minute idle timeout).
        emu.faults.add(
            Fault(kind="reset", host="ega", match="*/downloads/*", after_bytes=150_000, times=1)
        )
        expired: list[bool] = []
        seen: list[str] = []
        async with mirror.Mirror(
            ega_manifest(emu.endpoints, tmp_path), retry=SLOW_RETRY, credentials=CREDS
        ) as m:
            async for event in m.events():
                seen.append(repr(event))
                if event.kind == "file-failed" and not expired:
                    path = getattr(event, "path", "")
                    tickets = [t for t in emu.ega.tickets(user=USER) if t.file.file_id in path]
                    expired += [emu.ega.expire_ticket(t.ticket) for t in tickets]
                    emu.ega.expire_sessions()
        await emu.wait_idle()
        stats = emu.ega.stats()
        expected = {
            f.file_id: emu.ega.stream_md5(f.file_id, REKEY) for f in catalog.ega_datasets[0].files
        }
        labels = {t.label for t in emu.ega.tickets(user=USER)}
        sessions = emu.ega.session_tokens()
    assert expired == [True]
    summary = m.summary
    assert (summary.planned, summary.verified, summary.failed, summary.exit_code) == (5, 5, 0, 0)
    rows = read_index(tmp_path)
    assert {r["verified_by"] for r in rows} == {"ega-results"}
    for f in catalog.ega_datasets[0].files:
        local = tmp_path / f"ega/{DATASET}/{f.file_id}/{Path(f.file_name).name}"
        assert md5_file(local) == expected[f.file_id]
    assert stats.logins == 2  # the lost session was logged in again, transparently
    assert stats.tickets_issued == 6  # 5, then one more for the expired ticket
    assert labels == set()  # the request was deleted once the dataset was complete
    # No password, rekey or session token in any log line, event, or file under dest.
    secrets = [PASSWORD, REKEY, *sessions]
    assert len(sessions) == 2
    text = caplog.text + "\n".join(seen) + str(summary)
    for secret in secrets:
        assert secret not in text
    assert _files_holding(tmp_path, secrets) == []
    assert victim.file_id in expected


#: The killed run's streams are paced: a file of tens of MB then takes seconds to
#: arrive, so the kill comes well before its end however loaded the machine is. The
#: pace is lifted for the rerun.
KILL_PACE = 4_000_000


@pytest.mark.slow  # SIGKILL of a child process mid-stream, then a rerun
@pytest.mark.parametrize("ranges", [True, False], ids=["206", "200"])
def test_sigkill_during_a_ticket_stream_then_rerun(
    tmp_path: Path,
    ranges: bool,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    size = 24_000_000
    file_id = "EGAF00000900001"
    catalog = one_file(file_id, "/bams/big.bam.cip", size)
    pace = Fault(kind="slow", host="ega", match="*/downloads/*", bytes_per_second=KILL_PACE)
    log_path = tmp_path / "requests.jsonl"
    options = EgaOptions(users={USER: PASSWORD}, range_support=ranges)
    with serving(Emulator(catalog, ega=options, faults=[pace], log_path=log_path)) as served:
        emu = served.value
        manifest = tmp_path / "m.yaml"
        manifest.write_text(yaml.safe_dump(ega_manifest(emu.endpoints, tmp_path / "data")))
        final = tmp_path / "data/ega" / DATASET / file_id / "big.bam.cip"
        part = final.with_name(final.name + ".part")
        held = _kill_midway(manifest, {**os.environ, **CREDS}, functools.partial(_size, part), 0)
        assert 0 < held < size
        assert not final.exists()
        served.wait(emu.wait_idle)  # the killed stream is logged
        killed = len(emu.log)
        served.call(emu.faults.clear)
        for name, value in CREDS.items():
            monkeypatch.setenv(name, value)
        assert mirror_main(["run", str(manifest), "-q"]) == 0
        out = capsys.readouterr()
        served.wait(emu.wait_idle)
        log = emu.log
        expected = emu.ega.stream_md5(file_id, REKEY)
    rows = read_index(tmp_path / "data")
    assert [(r["status"], r["verified_by"]) for r in rows] == [("verified", "ega-results")]
    assert md5_file(final) == expected
    assert not part.exists()
    streams = [(e.range, e.status, e.bytes) for e in log[killed:] if "/downloads/" in e.path]
    if ranges:
        # Resumed where the .part ended: the rerun fetched only the rest.
        assert streams == [(f"bytes={held}-", 206, size - held)]
    else:
        assert streams == [(f"bytes={held}-", 200, size)]  # asked to resume, restarted
    for text in (out.out, out.err, log_path.read_text()):
        assert PASSWORD not in text
        assert REKEY not in text


async def test_results_md5_that_disagrees_fails_the_file(tmp_path: Path) -> None:
    catalog = Catalog.generate_ega(dataset=DATASET, files=3, size=50_000)
    bad = catalog.ega_datasets[0].files[1]
    async with Emulator(
        catalog, ega=EgaOptions(users={USER: PASSWORD}, wrong_results=(bad.file_id,))
    ) as emu:
        summary = await mirror.run(
            ega_manifest(emu.endpoints, tmp_path),
            credentials=CREDS,
            retry=RetryPolicy(attempts=5, base=0.01, cap=0.05),
        )
    assert (summary.planned, summary.verified, summary.failed, summary.exit_code) == (3, 2, 1, 1)
    final = tmp_path / f"ega/{DATASET}/{bad.file_id}/{Path(bad.file_name).name}"
    assert not final.exists()
    assert not final.with_name(final.name + ".part").exists()
    (row,) = [r for r in read_index(tmp_path) if r["status"] == "failed"]
    assert "EGA /results" in row["reason"]


#: Slices small enough that a file of tens of MB has several (by default slicing
#: starts at 512 MiB); four are in flight at once.
SEGMENT_MIN, SLICE = 1 << 20, 4 << 20
SLICED = mirror.Tuning(transfer=mirror.TransferTuning(segment_min=SEGMENT_MIN, slice=SLICE))
#: ``mirror`` with the run's tuning set to SLICED.
SLICED_CLI = (
    "import sys\n"
    "import mirror, mirror._engine\n"
    "mirror._engine.Tuning = lambda: mirror.Tuning(\n"
    f"    transfer=mirror.TransferTuning(segment_min={SEGMENT_MIN}, slice={SLICE})\n"
    ")\n"
    "from mirror._cli import main\n"
    "raise SystemExit(main(sys.argv[1:]))\n"
)


@pytest.mark.slow  # SIGKILL of a child process mid-way through slices, then a rerun
def test_data_api_file_in_slices_killed_and_resumed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    size = 18_000_000  # five slices, the last one short
    file_id = "EGAF00000900002"
    catalog = one_file(file_id, "/wgs/sample.cram", size)
    # Each slice of the killed run paced at 1 MB/s: four seconds a slice, killed part-way.
    pace = Fault(kind="slow", host="ega", match="/v2/files/*", bytes_per_second=1_000_000)
    log_path = tmp_path / "requests.jsonl"
    options = EgaOptions(users={USER: PASSWORD})
    with serving(Emulator(catalog, ega=options, faults=[pace], log_path=log_path)) as served:
        emu = served.value
        manifest = tmp_path / "m.yaml"
        doc = ega_manifest(emu.endpoints, tmp_path / "data", protocol="data-api")
        manifest.write_text(yaml.safe_dump(doc))
        final = tmp_path / "data/ega" / DATASET / file_id / "sample.cram"
        part = final.with_name(final.name + ".part")

        # Killed once the sidecar records a tenth of the file and two slices part-way:
        # the rerun then has partial slices to resume.
        def ready() -> int:
            held = slices_done(part)
            return held if held > size // 10 and len(_partial_slices(part)) >= 2 else 0

        _kill_midway(manifest, {**os.environ, **CREDS}, ready, 0, code=SLICED_CLI)
        held, partial = slices_done(part), _partial_slices(part)
        assert size // 10 < held < size
        assert len(partial) >= 2  # slices were fetched in parallel
        assert not final.exists()
        served.wait(emu.wait_idle)  # the killed run's requests are logged
        before = len(emu.log)
        served.call(emu.faults.clear)
        for name, value in CREDS.items():
            monkeypatch.setenv(name, value)
        monkeypatch.setattr(mirror._engine, "Tuning", lambda: SLICED)
        assert mirror_main(["run", str(manifest), "-q", "--json"]) == 0
        out = capsys.readouterr()
        served.wait(emu.wait_idle)
        log = emu.log
        expected = emu.ega.plain_md5(file_id)
    assert final.stat().st_size == size
    assert md5_file(final) == expected
    (row,) = read_index(tmp_path / "data")
    assert (row["status"], row["verified_by"]) == ("verified", "md5")
    rerun = [e for e in log[before:] if e.path == f"/v2/files/{file_id}"]
    complete = set()
    for e in rerun:
        assert e.range
        first, last = (int(x) for x in e.range.removeprefix("bytes=").split("-"))
        if e.bytes == last - first + 1:
            complete.add((first, last + 1))
    # Byte-level resume: each part-done slice continues exactly where the sidecar left
    # it, and the rerun fetches only what the sidecar did not record.
    assert set(partial) <= complete, (partial, sorted(complete))
    assert sum(e.bytes for e in rerun) == size - held
    for text in (out.out, out.err, log_path.read_text()):
        assert PASSWORD not in text
    for path in (tmp_path / "data").rglob("*"):
        if path.is_file() and path.stat().st_size < 10_000_000:
            assert PASSWORD.encode() not in path.read_bytes()
    assert json.loads(out.out.splitlines()[-1])["event"] == "run-finished"


async def test_data_api_401s_at_once_renew_the_token_once(tmp_path: Path) -> None:
    catalog = Catalog.generate_ega(dataset=DATASET, files=4, size=300_000)
    files = catalog.ega_datasets[0].files
    creds = {"EGA_USERNAME": USER, "EGA_PASSWORD": PASSWORD}
    async with Emulator(catalog, ega=EgaOptions(users={USER: PASSWORD})) as emu:
        # Every file's first request meets a 401, all four in flight at once, as when
        # the token they carry is revoked.
        emu.faults.add(
            Fault(kind="status", status=401, host="ega", match="/v2/files/*", times=4, together=4)
        )
        summary = await mirror.run(
            ega_manifest(emu.endpoints, tmp_path, protocol="data-api"),
            credentials=creds,
            retry=RetryPolicy(attempts=4, base=0.01, cap=0.05),
        )
        log = emu.log
        expected = {f.file_id: emu.ega.plain_md5(f.file_id) for f in files}
    assert (summary.planned, summary.verified, summary.failed) == (4, 4, 0)
    data = [e for e in log if e.path.startswith("/v2/files/")]
    assert sorted(e.status for e in data) == [200] * 4 + [401] * 4
    # The four 401s renew the token once between them (before: once each).
    assert [e.status for e in log if e.path.endswith("/token")] == [200, 200]
    for f in files:
        name = Path(f.file_name).name.removesuffix(".cip")
        assert md5_file(tmp_path / f"ega/{DATASET}/{f.file_id}/{name}") == expected[f.file_id]


def _partial_slices(part: Path) -> list[tuple[int, int]]:
    """``(resume offset, end)`` of each slice the ``.slices`` sidecar records part-done."""
    try:
        doc = json.loads(part.with_name(part.name + ".slices").read_text())
        size, width, done = int(doc["size"]), int(doc["slice"]), [int(d) for d in doc["done"]]
    except (FileNotFoundError, ValueError, KeyError):
        return []
    found = []
    for i, d in enumerate(done):
        start, end = i * width, min((i + 1) * width, size)
        if 0 < d < end - start:
            found.append((start + d, end))
    return found


def _kill_midway(
    manifest: Path,
    env: dict[str, str],
    held: Callable[[], int],
    past: int,
    *,
    code: str | None = None,
) -> int:
    """Start ``mirror run``, SIGKILL it once ``held()`` bytes exceed ``past``; return them.

    The process is stopped (SIGSTOP) before the condition is checked again and the
    kill sent, so what ``held()`` saw is exactly what the killed run left behind.
    ``code``, when given, is the program run instead of ``-m mirror``.
    """
    program = ["-m", "mirror"] if code is None else ["-c", code]
    proc = subprocess.Popen(
        [sys.executable, *program, "run", str(manifest), "-q"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    try:
        while True:
            wait_for(lambda: held() > past or proc.poll() is not None, "the transfer")
            if proc.poll() is not None:
                raise AssertionError(f"the run ended (exit {proc.returncode}) before the kill")
            os.kill(proc.pid, signal.SIGSTOP)
            if held() > past:
                break
            os.kill(proc.pid, signal.SIGCONT)  # it changed before it stopped: go on
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    return held()


def one_file(file_id: str, file_name: str, size: int) -> Catalog:
    """A catalog of one EGA dataset holding one file."""
    return Catalog(
        ega_datasets=(
            EgaDataset(
                dataset_id=DATASET,
                files=(EgaFile(file_id=file_id, file_name=file_name, size=size, dataset=DATASET),),
            ),
        )
    )


def _files_holding(root: Path, secrets: list[str]) -> list[Path]:
    return [
        p
        for p in root.rglob("*")
        if p.is_file() and any(secret.encode() in p.read_bytes() for secret in secrets)
    ]


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


# -- the Data API as EGA answers it (recorded listing) ------------------------------------

RECORDED_DATASET = "EGAD00001003338"
#: The one file of the recording that pyega3 downloads: available, not .gpg.
RECORDED_FILE = "EGAF00001753747"
RECORDED_PLAIN = 8_949_984 - 16
RECORDED_TOKEN = json.loads((RECORDINGS / "ega/token_answer.json").read_text())["access_token"]
BAD_CLIENT = b'{"error":"invalid_client","error_description":"Bad client credentials"}'


def recorded_data_api(listing: str, content: bytes, forms: list[dict[str, str]]) -> Replay:
    """The token endpoint, the recorded ``listing`` of the dataset, and its one file."""

    def token(request: web.Request, body: bytes) -> Answer:
        form = dict(parse_qsl(body.decode()))
        forms.append(form)
        # As EGA's IdP: only a registered client with its own secret gets a token.
        if (form.get("client_id"), form.get("client_secret")) != (CLIENT_ID, CLIENT_SECRET):
            return Answer(body=BAD_CLIENT, status=401)
        return Answer.recorded("ega/token_answer.json")

    def data(request: web.Request, body: bytes) -> Answer | None:
        if request.headers.get("Authorization") != f"Bearer {RECORDED_TOKEN}":
            return Answer(body=b'{"error":"invalid_token"}', status=401)
        if request.query.get("destinationFormat") != "plain":
            return None
        return Answer(body=content, content_type="application/octet-stream")

    return Replay(
        {
            "/ega-openid-connect-server/token": token,
            f"/v2/metadata/datasets/{RECORDED_DATASET}/files": Answer.recorded(listing),
            f"/v2/files/{RECORDED_FILE}": data,
        }
    )


def recorded_manifest(replay: Replay, dest: Path) -> Path:
    endpoints = {
        "ega_auth": replay.base + "/ega-openid-connect-server/token",
        "ega_data": replay.base + "/v2",
    }
    doc = {
        "version": 1,
        "dest": str(dest),
        "endpoints": endpoints,
        "sources": [{"ega": {"datasets": [RECORDED_DATASET], "protocol": "data-api"}}],
    }
    path = dest.parent / "m.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


async def planned_files(dest: Path) -> list[StoredFile]:
    store = await open_store(None, dest)
    try:
        return [f async for f in store.files(await store.generation())]
    finally:
        await store.aclose()


@pytest.mark.parametrize(
    ("listing", "skipped"),
    [
        ("ega/dataset_files.json", ["EGAF00001753748", "EGAF00001753749 (unavailable)"]),
        ("ega/pyega3_doc_item_v1.json", []),
    ],
)
def test_recorded_listing_plans_and_fetches_what_pyega3_would(
    tmp_path: Path,
    listing: str,
    skipped: list[str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    content = hashlib.sha256(b"NA12878.bam.bai").digest() * (RECORDED_PLAIN // 32 + 1)
    content = content[:RECORDED_PLAIN]
    dest = tmp_path / "data"
    monkeypatch.setenv("EGA_USERNAME", USER)
    monkeypatch.setenv("EGA_PASSWORD", PASSWORD)
    forms: list[dict[str, str]] = []
    with serving(recorded_data_api(listing, content, forms)) as served:
        manifest = recorded_manifest(served.value, dest)
        assert mirror_main(["plan", str(manifest), "--json"]) == 0
        plan = capsys.readouterr().out
        planned = asyncio.run(planned_files(dest))
        assert mirror_main(["run", str(manifest), "-q"]) == 0
    assert json.loads(plan.splitlines()[-1])["files"] == 1
    assert json.loads(plan.splitlines()[-1])["bytes"] == RECORDED_PLAIN
    # Only the available file that is not .gpg, named as pyega3 names it: .cip removed.
    path = f"ega/{RECORDED_DATASET}/{RECORDED_FILE}/NA12878.bam.bai"
    assert [(f.path, f.accession, f.size, f.checksum, f.verify) for f in planned] == [
        # The recorded plainChecksum is a 33-character placeholder, no MD5: pyega3
        # then skips the check, and the size is what is left to verify.
        (path, RECORDED_FILE, RECORDED_PLAIN, None, "size")
    ]
    events = [json.loads(line) for line in plan.splitlines()]
    warnings = " ".join(str(e) for e in events if e["event"] == "warning")
    for file_id in skipped:
        assert file_id in warnings
    if skipped:
        assert "legacy .gpg file" in warnings
        assert "not available" in warnings
    assert (dest / path).read_bytes() == content
    assert [(r["path"], r["bytes"], r["status"]) for r in read_index(dest)] == [
        (path, str(RECORDED_PLAIN), "verified")
    ]
    # Every token request carried pyega3's published client.
    assert forms
    assert all(f["client_id"] == CLIENT_ID for f in forms)
    assert all(f["client_secret"] == CLIENT_SECRET for f in forms)


def test_own_oauth_client_from_the_environment_and_its_refusal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    dest = tmp_path / "data"
    own = {"EGA_CLIENT_ID": "my-client", "EGA_CLIENT_SECRET": "client-S3CRET-77d1"}
    for name, value in {"EGA_USERNAME": USER, "EGA_PASSWORD": PASSWORD, **own}.items():
        monkeypatch.setenv(name, value)
    forms: list[dict[str, str]] = []
    with serving(recorded_data_api("ega/dataset_files.json", b"", forms)) as served:
        manifest = recorded_manifest(served.value, dest)
        code = mirror_main(["plan", str(manifest)])
    plan = capsys.readouterr()
    assert [(f["client_id"], f["client_secret"]) for f in forms] == [
        ("my-client", "client-S3CRET-77d1")
    ]
    assert code == 2, plan.err
    assert "EGA refused the OAuth client (EGA_CLIENT_ID/EGA_CLIENT_SECRET" in plan.err
    assert "Traceback" not in plan.err
    for text in (plan.out, plan.err):
        assert "client-S3CRET-77d1" not in text
        assert PASSWORD not in text
