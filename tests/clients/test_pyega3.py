"""pyega3, EGA's own download client, unchanged, against the emulator's EGA Data API.

pyega3 is pointed at the emulator with its own options only: a server file (``-sf``)
that is its packaged default_server_file.json with the URLs replaced (so the client
secret it sends is the one it ships), and a credentials file (``-cf``) or its test
account (``-t``). It looks up the machine's public IP at https://ipinfo.io on every
start (pyega3/libs/utils.py, ``get_client_ip``), which has no switch of its own: an
``HTTPS_PROXY`` on a closed loopback port makes that lookup fail at once (pyega3 then
sends "Unknown"), and ``NO_PROXY`` keeps the emulator direct. No other request leaves
the machine; pyega3 5.2.0 does not check PyPI for a newer version.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from mirror.emulator import Catalog, EgaOptions, Emulator

from ..emulator.ega_helpers import DATASET, recorded_catalog, recorded_items
from .conftest import client_bin

pytestmark = pytest.mark.clients

USER, PASSWORD = "reader@example.org", "pw-S3CRET-pyega3"
#: pyega3 -t: the account of its default_credential_file.json.
TEST_USER = "ega-test-data@ebi.ac.uk"
RECORDED = recorded_items()
RECORDED_DATASET = str(RECORDED[0]["datasetId"])
AVAILABLE, GPG, UNAVAILABLE = (str(item["fileId"]) for item in RECORDED)
#: A demo file of 256 KiB + 5 bytes: fetched in 64 KiB slices.
SLICED = "EGAF00000867415"


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port bound but not listening: connecting to it is refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def server_file(emu: Emulator, work: Path, **override: str) -> Path:
    """pyega3's own default server file, its URLs pointed at the emulator."""
    pyega3 = client_bin("pyega3", "python")
    found = subprocess.run(
        [str(pyega3), "-c", "from pyega3.libs.server_config import ServerConfig as S; "
         "print(S.default_config_path())"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    config = json.loads(Path(found).read_text())
    data = emu.endpoints["ega_data"]
    config |= {
        "url_auth": emu.endpoints["ega_auth"],
        "url_api": data,
        "url_api_ticket": data,
        "url_api_metadata": f"{data}/metadata",
        "url_api_stats": f"{data}/download-stats",
        **override,
    }
    path = work / "server.json"
    path.write_text(json.dumps(config))
    return path


async def pyega3(work: Path, proxy_port: int, *args: str) -> subprocess.CompletedProcess[str]:
    proxy = f"http://127.0.0.1:{proxy_port}"
    env = {
        **os.environ,
        "HTTPS_PROXY": proxy,
        "HTTP_PROXY": proxy,
        "NO_PROXY": "127.0.0.1,localhost",
    }
    return await asyncio.to_thread(
        subprocess.run,
        [str(client_bin("pyega3", "pyega3")), *args],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


async def test_pyega3_lists_and_fetches(tmp_path: Path, closed_port: int) -> None:
    catalog = Catalog.demo().merge(recorded_catalog())
    async with Emulator(
        catalog, ega=EgaOptions(users={USER: PASSWORD, TEST_USER: "egarocks"})
    ) as emu:
        sf = str(server_file(emu, tmp_path))
        creds = tmp_path / "credentials.json"
        creds.write_text(json.dumps({"username": USER, "password": PASSWORD}))
        cf = str(creds)
        out = tmp_path / "out"
        out.mkdir()

        datasets = await pyega3(tmp_path, closed_port, "-sf", sf, "-cf", cf, "datasets")
        files = await pyega3(
            tmp_path, closed_port, "-sf", sf, "-cf", cf, "-j", "files", RECORDED_DATASET
        )
        fetch_dataset = await pyega3(
            tmp_path, closed_port, "-sf", sf, "-cf", cf,
            "fetch", RECORDED_DATASET, "--output-dir", str(out),
        )  # fmt: skip
        fetch_file = await pyega3(
            tmp_path, closed_port, "-sf", sf, "-cf", cf, "-ms", "65536",
            "fetch", SLICED, "--output-dir", str(out),
        )  # fmt: skip
        test_account = await pyega3(tmp_path, closed_port, "-t", "-sf", sf, "datasets")
        log = emu.log
        reports = emu.ega.download_reports()
        stats = emu.ega.stats()
        expected = {f: emu.ega.plain_bytes(f) for f in (AVAILABLE, SLICED)}

    for done in (datasets, files, fetch_dataset, fetch_file, test_account):
        assert done.returncode == 0, done.stderr
        # The IP lookup went to the closed proxy, not to the internet.
        assert "Failed to obtain IP address" in done.stderr
        assert "Traceback" not in done.stderr
    # datasets: both of the catalog's, by id.
    for dataset in (DATASET, RECORDED_DATASET):
        assert f"] {dataset}\n" in datasets.stderr
        assert f"] {dataset}\n" in test_account.stderr
    # files -j: the recorded listing as pyega3 reads it (size with the IV, the status).
    (line,) = [x for x in files.stderr.splitlines() if x.endswith("]") and '"id"' in x]
    shown = json.loads(line.split("] ", 1)[1] if line.startswith("[") else line)
    assert [(f["id"], f["status"], f["bytes"], f["name"]) for f in shown] == [
        (i["fileId"], i["fileStatus"], i["fileSize"], i["displayFileName"]) for i in RECORDED
    ]
    # fetch EGAD: only the available file that is not .gpg, named without .cip.
    assert "GPG files are currently not supported" in fetch_dataset.stderr
    saved = out / AVAILABLE / "NA12878.bam.bai"
    assert saved.read_bytes() == expected[AVAILABLE]
    assert not (out / GPG).exists()
    assert not (out / UNAVAILABLE).exists()
    # fetch EGAF in 64 KiB Range slices: the bytes and the MD5 the listing gave.
    sliced = out / SLICED / "sample1.bam"
    assert sliced.read_bytes() == expected[SLICED]
    md5 = hashlib.md5(expected[SLICED]).hexdigest()
    assert (out / SLICED / "sample1.bam.md5").read_text() == md5
    slices = [e for e in log if e.path == f"/v2/files/{SLICED}"]
    assert [e.range for e in slices] == [
        f"bytes={start}-{min(start + 65536, len(expected[SLICED])) - 1}"
        for start in range(0, len(expected[SLICED]), 65536)
    ]
    assert {(e.status, e.query) for e in slices} == {(206, "destinationFormat=plain")}
    # Each download posted its report to download-stats, answered as JSON.
    assert [(r["fileId"], r["status"], r["userId"]) for r in reports] == [
        (AVAILABLE, "Succeeded", USER),
        (SLICED, "Succeeded", USER),
    ]
    assert stats.client_refusals == 0
    assert PASSWORD not in "".join(e.query for e in log)


async def test_pyega3_with_a_wrong_client_secret_is_refused(
    tmp_path: Path, closed_port: int
) -> None:
    async with Emulator(Catalog.demo()) as emu:
        sf = str(server_file(emu, tmp_path, client_secret="not-pyega3s-secret"))
        done = await pyega3(tmp_path, closed_port, "-t", "-sf", sf, "datasets")
        stats = emu.ega.stats()
        data_requests = [e for e in emu.log if "/metadata/" in e.path]
    assert "Invalid username, password or secret key" in done.stderr
    assert "401 Client Error" in done.stderr
    assert (stats.client_refusals, stats.token_grants) == (1, 0)
    assert data_requests == []
