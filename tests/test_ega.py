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
from mirror import RetryPolicy
from mirror._state import StoredFile, open_store
from mirror.emulator import Catalog, EgaDataset, EgaFile, EgaOptions, Emulator, Fault
from mirror.sources.ega_data import CLIENT_ID, CLIENT_SECRET

from .conftest import mirror_cmd, read_index
from .replay import RECORDINGS, Answer, Replay
from .test_cli import slices_done, wait_for

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


@pytest.mark.slow  # a 1 GiB stream, SIGKILLed in a child process, then resumed
def test_sigkill_during_a_1gb_ticket_stream_then_rerun(
    emulator_process: Any, tmp_path: Path
) -> None:
    size = 1 << 30
    catalog = one_file("EGAF00000900001", "/bams/big.bam.cip", size)
    for ranges in (True, False):
        work = tmp_path / ("206" if ranges else "200")
        work.mkdir()
        # Streams paced at 300 MB/s: time enough to kill one a third of the way in.
        faults = work / "faults.json"
        faults.write_text(
            json.dumps(
                [
                    Fault(
                        kind="slow", host="ega", match="*/downloads/*", bytes_per_second=300_000_000
                    ).to_dict()
                ]
            )
        )
        extra = ["--ega-user", f"{USER}:{PASSWORD}", "--faults", str(faults)]
        emu = emulator_process(catalog, *extra, *([] if ranges else ["--ega-no-range"]))
        manifest = work / "m.yaml"
        manifest.write_text(yaml.safe_dump(ega_manifest(emu.endpoints, work / "data")))
        env = {**os.environ, **CREDS}
        part = work / "data/ega" / DATASET / "EGAF00000900001" / "big.bam.cip.part"
        held = _kill_midway(manifest, env, functools.partial(_size, part), 300_000_000)
        assert 0 < held < size
        done = mirror_cmd("run", str(manifest), "-q", env=CREDS)
        assert done.returncode == 0, done.stderr
        rows = read_index(work / "data")
        assert [(r["status"], r["verified_by"]) for r in rows] == [("verified", "ega-results")]
        streams = [e for e in emu.log() if "/downloads/" in e["path"]]
        served = sum(e["bytes"] for e in streams)
        if ranges:
            assert streams[-1]["status"] == 206
            assert served <= 1.15 * size, f"served {served} for {size}"
        else:
            assert streams[-1]["status"] == 200  # asked to resume, restarted, completed
        for text in (done.stdout, done.stderr, emu.log_path.read_text()):
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


@pytest.mark.slow  # 2 GiB in slices (slicing starts at 512 MiB), killed in a child process, resumed
def test_data_api_2gb_file_in_slices_killed_and_resumed(
    emulator_process: Any, tmp_path: Path
) -> None:
    size = 2 << 30
    catalog = one_file("EGAF00000900002", "/wgs/sample.cram", size)
    # Each slice paced at 100 MB/s: with 8 at once, time enough to kill it mid-way.
    faults = tmp_path / "faults.json"
    slow = Fault(kind="slow", host="ega", match="*/files/*", bytes_per_second=100_000_000)
    faults.write_text(json.dumps([slow.to_dict()]))
    emu = emulator_process(
        catalog, "--ega-user", f"{USER}:{PASSWORD}", "--ega-token-ttl", "3", "--faults", str(faults)
    )
    manifest = tmp_path / "m.yaml"
    manifest.write_text(
        yaml.safe_dump(ega_manifest(emu.endpoints, tmp_path / "data", protocol="data-api"))
    )
    env = {**os.environ, **CREDS}
    part = tmp_path / "data/ega" / DATASET / "EGAF00000900002" / "sample.cram.part"

    # Killed once the sidecar records 500 MB and two slices part-way: a moment where the
    # rerun has partial slices to resume (between two waves of slices it may have none).
    def ready() -> int:
        held = slices_done(part)
        return held if held > 500_000_000 and len(_partial_slices(part)) >= 2 else 0

    _kill_midway(manifest, env, ready, 0)
    held, partial = slices_done(part), _partial_slices(part)
    assert 500_000_000 < held < size
    assert len(partial) >= 2  # slices were fetched in parallel
    # Every request the rerun makes is logged after this point (the first run's aborted
    # requests may be too, but never as complete ones).
    before = len(emu.log())
    done = mirror_cmd("run", str(manifest), "-q", "--json", env=CREDS)
    assert done.returncode == 0, done.stderr
    final = tmp_path / "data/ega" / DATASET / "EGAF00000900002" / "sample.cram"
    assert final.stat().st_size == size
    (row,) = read_index(tmp_path / "data")
    assert (row["status"], row["verified_by"]) == ("verified", "md5")
    complete = set()
    for e in emu.log()[before:]:
        if "/files/EGAF00000900002" in e["path"] and e["range"]:
            first, last = (int(x) for x in e["range"].removeprefix("bytes=").split("-"))
            if e["bytes"] == last - first + 1:
                complete.add((first, last + 1))
    # Byte-level resume: each part-done slice continues exactly where the sidecar left it.
    assert set(partial) <= complete, (partial, sorted(complete))
    for text in (done.stdout, done.stderr, emu.log_path.read_text()):
        assert PASSWORD not in text
    for path in (tmp_path / "data").rglob("*"):
        if path.is_file() and path.stat().st_size < 10_000_000:
            data = path.read_bytes()
            assert PASSWORD.encode() not in data
    assert json.loads(done.stdout.splitlines()[-1])["event"] == "run-finished"


async def test_data_api_401s_at_once_renew_the_token_once(tmp_path: Path) -> None:
    catalog = Catalog.generate_ega(dataset=DATASET, files=4, size=300_000)
    files = catalog.ega_datasets[0].files
    creds = {"EGA_USERNAME": USER, "EGA_PASSWORD": PASSWORD}
    async with Emulator(catalog, ega=EgaOptions(users={USER: PASSWORD})) as emu:
        # Every file's first request meets a 401, as when the token is revoked.
        emu.faults.add(Fault(kind="status", status=401, host="ega", match="/v2/files/*", times=4))
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


def _kill_midway(manifest: Path, env: dict[str, str], held: Callable[[], int], past: int) -> int:
    """Start ``mirror run``, SIGKILL it once ``held()`` bytes exceed ``past``; return them.

    The process is stopped (SIGSTOP) before the condition is checked again and the
    kill sent, so what ``held()`` saw is exactly what the killed run left behind.
    """
    proc = subprocess.Popen(
        [sys.executable, "-m", "mirror", "run", str(manifest), "-q"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    try:
        while True:
            wait_for(lambda: held() > past or proc.poll() is not None, "the transfer")
            if proc.poll() is not None:
                break
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


@pytest.mark.slow  # runs the mirror command (and the emulator) in child processes, as a user would
@pytest.mark.parametrize(
    ("listing", "skipped"),
    [
        ("ega/dataset_files.json", ["EGAF00001753748", "EGAF00001753749 (unavailable)"]),
        ("ega/pyega3_doc_item_v1.json", []),
    ],
)
async def test_recorded_listing_plans_and_fetches_what_pyega3_would(
    tmp_path: Path, listing: str, skipped: list[str]
) -> None:
    content = hashlib.sha256(b"NA12878.bam.bai").digest() * (RECORDED_PLAIN // 32 + 1)
    content = content[:RECORDED_PLAIN]
    dest = tmp_path / "data"
    env = {"EGA_USERNAME": USER, "EGA_PASSWORD": PASSWORD}
    forms: list[dict[str, str]] = []
    async with recorded_data_api(listing, content, forms) as replay:
        manifest = recorded_manifest(replay, dest)
        plan = await asyncio.to_thread(mirror_cmd, "plan", str(manifest), "--json", env=env)
        assert plan.returncode == 0, plan.stderr
        planned = await planned_files(dest)
        run = await asyncio.to_thread(mirror_cmd, "run", str(manifest), "-q", env=env)
    assert json.loads(plan.stdout.splitlines()[-1])["files"] == 1
    assert json.loads(plan.stdout.splitlines()[-1])["bytes"] == RECORDED_PLAIN
    # Only the available file that is not .gpg, named as pyega3 names it: .cip removed.
    path = f"ega/{RECORDED_DATASET}/{RECORDED_FILE}/NA12878.bam.bai"
    assert [(f.path, f.accession, f.size, f.checksum, f.verify) for f in planned] == [
        # The recorded plainChecksum is a 33-character placeholder, no MD5: pyega3
        # then skips the check, and the size is what is left to verify.
        (path, RECORDED_FILE, RECORDED_PLAIN, None, "size")
    ]
    events = [json.loads(line) for line in plan.stdout.splitlines()]
    warnings = " ".join(str(e) for e in events if e["event"] == "warning")
    for file_id in skipped:
        assert file_id in warnings
    if skipped:
        assert "legacy .gpg file" in warnings
        assert "not available" in warnings
    assert run.returncode == 0, run.stderr
    assert (dest / path).read_bytes() == content
    assert [(r["path"], r["bytes"], r["status"]) for r in read_index(dest)] == [
        (path, str(RECORDED_PLAIN), "verified")
    ]
    # Every token request carried pyega3's published client.
    assert forms
    assert all(f["client_id"] == CLIENT_ID for f in forms)
    assert all(f["client_secret"] == CLIENT_SECRET for f in forms)


@pytest.mark.slow  # runs the mirror command in a child process, as a user would
async def test_own_oauth_client_from_the_environment_and_its_refusal(tmp_path: Path) -> None:
    dest = tmp_path / "data"
    own = {"EGA_CLIENT_ID": "my-client", "EGA_CLIENT_SECRET": "client-S3CRET-77d1"}
    env = {"EGA_USERNAME": USER, "EGA_PASSWORD": PASSWORD, **own}
    forms: list[dict[str, str]] = []
    async with recorded_data_api("ega/dataset_files.json", b"", forms) as replay:
        manifest = recorded_manifest(replay, dest)
        plan = await asyncio.to_thread(mirror_cmd, "plan", str(manifest), env=env)
    assert [(f["client_id"], f["client_secret"]) for f in forms] == [
        ("my-client", "client-S3CRET-77d1")
    ]
    assert plan.returncode == 2, plan.stderr
    assert "EGA refused the OAuth client (EGA_CLIENT_ID/EGA_CLIENT_SECRET" in plan.stderr
    assert "Traceback" not in plan.stderr
    for text in (plan.stdout, plan.stderr):
        assert "client-S3CRET-77d1" not in text
        assert PASSWORD not in text
