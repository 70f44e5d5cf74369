"""``mirror plan`` and ``mirror run`` against MGnify's recorded answers, replayed.

The recordings (``tests/fixtures/real-responses/mgnify/``, rendered by emgapi's own code)
describe study MGYS00000001 (ENA ERP136943) with one analysis, MGYA00000001, and its 47
downloads; three carry a SHA1, the rest an empty checksum. Every link in them names
``https://www.ebi.ac.uk/metagenomics/api/v1/...``: the engine must follow them on the
configured endpoint, here a replay under another base path.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import pytest
import yaml
from aiohttp import web

import mirror
from mirror._state import open_store
from mirror._state._base import StoredFile
from tests.replay import RECORDINGS, Answer, Chooser, Replay

from .conftest import FAST_RETRY
from .inproc import mirror_main

RECORDED = RECORDINGS / "mgnify"
INDEX: dict[str, dict[str, Any]] = json.loads((RECORDED / "_index.json").read_text())
#: Where the replay serves the API: not the public base path, so links must be mapped.
PREFIX = "/mirror/mgnify"
ANALYSIS = "MGYA00000001"
DOWNLOADS = json.loads((RECORDED / "analysis_MGYA00000001_downloads_ps100.json").read_text())[
    "data"
]


def content(alias: str) -> bytes:
    """Deterministic bytes for one download, a different length for each."""
    return hashlib.sha256(alias.encode()).digest() * (1 + len(alias))


def routes(*, honour_page_size: bool = True) -> dict[str, Answer | Chooser]:
    """Each recording at its request path (query included), and the 47 files.

    ``honour_page_size=False`` answers the downloads list as a server capped at the
    default page size would: the recorded pages 1 and 2 of 25, whatever was asked.
    """
    table: dict[str, dict[frozenset[tuple[str, str]], str]] = {}
    for name, where in INDEX.items():
        path, _, query = where["path"].partition("?")
        table.setdefault(PREFIX + path.removeprefix("/v1"), {})[frozenset(parse_qsl(query))] = name

    def chooser(choices: dict[frozenset[tuple[str, str]], str]) -> Chooser:
        def choose(request: web.Request, body: bytes) -> Answer | None:
            query = dict(request.query)
            if not honour_page_size and request.path.endswith("/downloads"):
                query.pop("page_size", None)
            name = choices.get(frozenset(query.items()))
            if name is None:
                return None
            return Answer.recorded(f"mgnify/{name}", status=INDEX[name]["status"])

        return choose

    answers: dict[str, Answer | Chooser] = {path: chooser(c) for path, c in table.items()}
    for item in DOWNLOADS:
        alias = item["attributes"]["alias"]
        answers[f"{PREFIX}/analyses/{ANALYSIS}/file/{alias}"] = Answer(
            body=content(alias), content_type="application/octet-stream"
        )
    return answers


def manifest(tmp_path: Path, replay: Replay, **source: Any) -> Path:
    path = tmp_path / "manifest.yaml"
    doc = {
        "version": 1,
        "dest": str(tmp_path / "data"),
        "endpoints": {"mgnify": replay.base + PREFIX},
        "sources": [{"mgnify": source}],
    }
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return path


async def planned(dest: Path) -> list[StoredFile]:
    store = await open_store(None, dest)
    try:
        return [f async for f in store.files(await store.generation())]
    finally:
        await store.aclose()


def expected_plan() -> dict[str, tuple[str | None, str]]:
    """Path → (checksum, verify) for every recorded download: SHA1 where given."""
    out: dict[str, tuple[str | None, str]] = {}
    for item in DOWNLOADS:
        checksum = item["attributes"]["file-checksum"]
        sha1 = checksum["checksum"] if checksum["checksum-algorithm"] == "SHA1" else ""
        out[f"mgnify/{ANALYSIS}/{item['attributes']['alias']}"] = (
            (sha1, "sha1") if sha1 else (None, "size")
        )
    return out


def requests(replay: Replay) -> list[str]:
    return [path + (f"?{query}" if query else "") for _, path, query, _ in replay.log]


async def plan(tmp_path: Path, replay: Replay, **source: Any) -> tuple[int, str, str]:
    done = await asyncio.to_thread(mirror_main, "plan", str(manifest(tmp_path, replay, **source)))
    return done.returncode, done.stdout, done.stderr


@pytest.mark.parametrize(
    ("source", "honour_page_size"),
    [
        pytest.param({"studies": ["MGYS00000001"]}, True, id="study"),
        pytest.param({"studies": ["ERP136943"]}, True, id="ena-study"),
        pytest.param(
            {"studies": ["MGYS00000001"], "pipeline_version": "5.0"}, True, id="pipeline-5.0"
        ),
        pytest.param({"analyses": [ANALYSIS]}, True, id="analysis"),
        pytest.param({"studies": ["MGYS00000001"]}, False, id="pages-of-25"),
    ],
)
async def test_plan_is_exactly_the_recorded_downloads(
    tmp_path: Path, source: dict[str, Any], honour_page_size: bool
) -> None:
    async with Replay(routes(honour_page_size=honour_page_size)) as replay:
        code, out, err = await plan(tmp_path, replay, **source)
    assert (code, err) == (0, ""), err
    assert out.startswith("47 files, 0 bytes")
    files = await planned(tmp_path / "data")
    assert {f.path: (f.checksum, f.verify) for f in files} == expected_plan()
    assert sum(f.verify == "sha1" for f in files) == 3
    assert {f.url for f in files} == {
        f"{replay.base}{PREFIX}/analyses/{ANALYSIS}/file/{item['attributes']['alias']}"
        for item in DOWNLOADS
    }
    # Every link followed on the replay (none left for the public host), none twice.
    asked = requests(replay)
    assert len(asked) == len(set(asked))
    downloads = [r for r in asked if r.startswith(f"{PREFIX}/analyses/{ANALYSIS}/downloads")]
    if honour_page_size:
        assert downloads == [f"{PREFIX}/analyses/{ANALYSIS}/downloads?page_size=100"]
    else:
        # Page 2 asked by the recorded links.next (page=2), on the replay's base path.
        assert sorted(downloads) == [
            f"{PREFIX}/analyses/{ANALYSIS}/downloads?page=2",
            f"{PREFIX}/analyses/{ANALYSIS}/downloads?page_size=100",
        ]


async def test_unknown_study_plans_nothing_and_says_so(tmp_path: Path) -> None:
    """An unknown study is a 200 with an empty list: the entry yields nothing, exit 1."""
    async with Replay(routes()) as replay:
        code, out, err = await plan(tmp_path, replay, studies=["MGYS99999999"])
    assert (code, out) == (1, "0 files, 0 bytes (0 B)\n")
    assert "MGYS99999999: no analyses" in err
    assert "nothing to download: MGYS99999999 listed no downloads" in err
    assert "Traceback" not in err


async def test_refused_pipeline_version_is_one_line_with_the_service_message(
    tmp_path: Path,
) -> None:
    async with Replay(routes()) as replay:
        code, _, err = await plan(
            tmp_path, replay, studies=["MGYS00000001"], pipeline_version="4.1"
        )
    assert code == 1
    assert "Traceback" not in err
    [line] = [line for line in err.splitlines() if "MGYS00000001" in line]
    detail = "Select a valid choice. 4.1 is not one of the available choices."
    assert line.endswith(f"HTTP 400: {detail}")
    assert '{"errors"' not in line


async def test_run_downloads_the_recorded_files_and_checks_the_recorded_sha1(
    tmp_path: Path,
) -> None:
    """44 size-checked files land with their bytes; the 3 whose recorded SHA1 (an
    invented value) matches no bytes fail verification instead of landing."""
    async with Replay(routes()) as replay:
        # The library, to retry the failing checksums without production's backoff.
        summary = await mirror.run(
            manifest(tmp_path, replay, studies=["ERP136943"]), retry=FAST_RETRY
        )
    assert (summary.verified, summary.failed, summary.exit_code) == (44, 3, 1), summary.errors
    files = {f.path: f for f in await planned(tmp_path / "data")}
    assert len(files) == 47
    for item in DOWNLOADS:
        alias = item["attributes"]["alias"]
        stored = files[f"mgnify/{ANALYSIS}/{alias}"]
        on_disk = tmp_path / "data" / stored.path
        if stored.verify == "sha1":
            assert stored.status.value == "failed"
            assert "sha1" in (stored.reason or "").lower(), stored.reason
            assert not on_disk.exists()
        else:
            assert stored.status.value == "verified", stored.reason
            assert on_disk.read_bytes() == content(alias)
