"""``mirror plan`` against EnteroBase's recorded answers, replayed.

The recordings (``tests/fixtures/real-responses/enterobase/``) are the wiki's example
pages: ``assemblies`` in two pages (the last with ``"paging": {}``), and ``straindata``
keyed by strain barcode. Their links name ``http://enterobase.warwick.ac.uk``; the
engine must follow them on the configured endpoint, here a replay under another path.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import pytest
import yaml
from aiohttp import web

from mirror._http import basic_auth
from mirror.sources.enterobase import MERGE_SUFFIX
from tests.replay import RECORDINGS, Answer, Chooser, Replay

from .inproc import mirror_main

TOKEN = "eb-recorded-token-5d1e"
PREFIX = "/eb/api"
RECORDED = RECORDINGS / "enterobase"


def recorded(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((RECORDED / name).read_text())
    return doc


def only_fields(doc: dict[str, Any], fields: list[str]) -> dict[str, Any]:
    """The page as EnteroBase answers it when ``only_fields`` names ``fields``."""
    if not fields:
        return doc
    records = [{k: v for k, v in r.items() if k in fields} for r in doc["Assemblies"]]
    return {**doc, "Assemblies": records}


class Service:
    """The replayed API, and what the client had done when page 2 was asked for."""

    def __init__(self, dest: Path) -> None:
        self.dest = dest
        self.planned_before_page_2: list[str] | None = None
        self.kept_before_page_2: int | None = None

    def _snapshot(self) -> None:
        with sqlite3.connect(self.dest / ".mirror" / "state.sqlite") as db:
            self.planned_before_page_2 = sorted(p for (p,) in db.execute("SELECT key FROM files"))
        merge = self.dest / "metadata/enterobase/senterica" / ("assemblies.jsonl" + MERGE_SUFFIX)
        self.kept_before_page_2 = 0
        if merge.exists():
            with sqlite3.connect(merge) as db:
                self.kept_before_page_2 = db.execute("SELECT COUNT(*) FROM r").fetchone()[0]

    def assemblies(self, request: web.Request, body: bytes) -> Answer | None:
        if request.headers.get("Authorization") != basic_auth(TOKEN, ""):
            return Answer(body=b'{"error": "unauthorized"}', status=401)
        offset = request.query.get("offset")
        if offset == "0":
            doc = recorded("assemblies_page1.json")
        elif offset == "2" and request.query.get("limit") == "2":
            self._snapshot()
            doc = recorded("assemblies_page2_last.json")
        else:
            return None
        fields = request.query.getall("only_fields", [])
        return Answer(body=json.dumps(only_fields(doc, fields)).encode())

    def straindata(self, request: web.Request, body: bytes) -> Answer | None:
        if request.headers.get("Authorization") != basic_auth(TOKEN, ""):
            return Answer(body=b'{"error": "unauthorized"}', status=401)
        return Answer.recorded("enterobase/straindata_page1_last.json")

    def routes(self) -> dict[str, Answer | Chooser]:
        return {
            f"{PREFIX}/senterica/assemblies": self.assemblies,
            f"{PREFIX}/senterica/straindata": self.straindata,
        }


async def plan(tmp_path: Path, replay: Replay, **source: Any) -> tuple[int, str, str]:
    host = replay.base.split("//", 1)[1]
    doc = {
        "version": 1,
        "dest": str(tmp_path / "data"),
        "endpoints": {"enterobase": replay.base + PREFIX},
        "hosts": {host: {"rate": 50, "connections": 2}},
        "sources": [{"enterobase": {"database": "senterica", "assemblies": True, **source}}],
    }
    path = tmp_path / "manifest.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    done = await asyncio.to_thread(mirror_main, "plan", str(path), env={"ENTEROBASE_TOKEN": TOKEN})
    return done.returncode, done.stdout, done.stderr


def planned(dest: Path) -> dict[str, tuple[str, str]]:
    with sqlite3.connect(dest / ".mirror" / "state.sqlite") as db:
        return {p: (u, v) for p, u, v in db.execute("SELECT key, url, verify FROM files")}


def kept(dest: Path, resource: str) -> list[dict[str, Any]]:
    text = (dest / f"metadata/enterobase/senterica/{resource}.jsonl").read_text()
    return [json.loads(line) for line in text.splitlines()]


@pytest.mark.parametrize("fields", [[], ["strain_name"]], ids=["all-fields", "only-fields"])
async def test_assemblies_pages_plan_exactly_the_recorded_assemblies(
    tmp_path: Path, fields: list[str]
) -> None:
    """Both pages, every assembly: page 2 is asked with the fields we asked for (the
    recorded next link carries ``only_fields=assembly_barcode``, which would drop
    the download link), and the run plans and keeps page 1 before asking page 2."""
    service = Service(tmp_path / "data")
    async with Replay(service.routes()) as replay:
        code, out, err = await plan(
            tmp_path, replay, query={"assembly_status": "Assembled"}, only_fields=fields
        )
    assert (code, out, err) == (0, "3 files, 0 bytes (0 B); 3 of unknown size (not counted)\n", "")
    barcodes = ["SAL_IA5204AA_AS", "SAL_KA9491AA_AS", "SAL_ZZ0001AA_AS"]
    base = replay.base + "/upload/download?assembly_barcode={}&database=senterica"
    assert planned(tmp_path / "data") == {
        f"enterobase/senterica/{b}.fasta": (base.format(b), "size") for b in barcodes
    }
    assert [r["assembly_barcode"] for r in kept(tmp_path / "data", "assemblies")] == barcodes
    # No memory of the whole list: page 1 was planned and kept before page 2 was asked.
    assert service.planned_before_page_2 == [
        f"enterobase/senterica/{b}.fasta" for b in barcodes[:2]
    ]
    assert service.kept_before_page_2 == 2
    assert not list((tmp_path / "data/metadata").rglob("*" + MERGE_SUFFIX))
    [first, second] = [dict(parse_qsl(q)) for _, _, q, _ in replay.log]
    assert (first["offset"], second["offset"], second["limit"]) == ("0", "2", "2")
    assert second["assembly_status"] == "Assembled"


async def test_straindata_keyed_by_strain_barcode(tmp_path: Path) -> None:
    service = Service(tmp_path / "data")
    async with Replay(service.routes()) as replay:
        code, out, err = await plan(tmp_path, replay, resource="straindata")
    assert (code, out, err) == (0, "2 files, 0 bytes (0 B); 2 of unknown size (not counted)\n", "")
    base = replay.base + "/upload/download?assembly_barcode={}&database=senterica"
    assert planned(tmp_path / "data") == {
        f"enterobase/senterica/{b}.fasta": (base.format(b), "size")
        for b in ("SAL_KA3160AA_AS", "SAL_AA0630AA_AS")
    }
    records = kept(tmp_path / "data", "straindata")
    assert [(r["strain_barcode"], r["strain_name"]) for r in records] == [
        ("SAL_BA0001AA", "FSIS1605678"),
        ("SAL_BA0002AA", "RM_172"),
    ]


async def test_a_refused_token_keeps_the_earlier_records(tmp_path: Path) -> None:
    """A listing that fails leaves the kept records as they were, and no merge file."""
    kept_file = tmp_path / "data/metadata/enterobase/senterica/assemblies.jsonl"
    kept_file.parent.mkdir(parents=True)
    kept_file.write_text('{"assembly_barcode": "SAL_OLD"}\n')
    service = Service(tmp_path / "data")
    routes = service.routes()
    routes[f"{PREFIX}/senterica/assemblies"] = Answer(body=b"{}", status=401)
    async with Replay(routes) as replay:
        code, _, err = await plan(tmp_path, replay)
    assert code == 2
    assert "refused the API token" in err
    assert kept_file.read_text() == '{"assembly_barcode": "SAL_OLD"}\n'
    assert not list(kept_file.parent.glob("*" + MERGE_SUFFIX))
