"""Recorded ENA Portal answers planned through ``mirror plan``, file for file.

A replay server answers the engine's requests with the recordings in
``tests/fixtures/real-responses/ena/`` (their README says where each came from). It
answers like the real Portal where the recording cannot: ``/returnFields`` from the
recorded field lists, a 400 ``Invalid fieldName(s) supplied`` for any other field name,
and 204 for the result type a recording does not hold. Each recording must plan exactly
the files it lists: names, URLs, sizes where given, MD5s.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl

import pytest
import yaml
from aiohttp import web

import mirror
from mirror._state import open_store

from .conftest import FAST_RETRY, read_index
from .inproc import mirror_main
from .replay import RECORDINGS, Answer, Chooser, Replay

ENA = RECORDINGS / "ena"
FILES = "/files"
#: The Portal's own field lists, as recorded.
KNOWN = {
    result: {
        item["columnId"] for item in json.loads((ENA / f"returnFields_{result}.json").read_text())
    }
    for result in ("read_run", "analysis")
}


def columns_of(recording: str) -> list[str]:
    """The column names (TSV header) or keys (JSON objects) a recording answers with."""
    text = (ENA / recording).read_text()
    if recording.endswith(".json"):
        return list(dict.fromkeys(key for row in json.loads(text) for key in row))
    return text.split("\n", 1)[0].split("\t")


@dataclass
class Portal:
    """The replayed Portal: one recording answers every report request of its result."""

    recording: str
    result: str
    asked: list[list[str]] = field(default_factory=list)

    def routes(self) -> dict[str, Answer | Chooser]:
        return {
            "/portal/returnFields": self.return_fields,
            "/portal/search": self.report,
            "/portal/filereport": self.report,
        }

    def return_fields(self, request: web.Request, body: bytes) -> Answer | None:
        result = request.query.get("result", "")
        if result not in KNOWN:
            return Answer(body=b"Invalid result", status=400, content_type="text/plain")
        return Answer.recorded(f"ena/returnFields_{result}.json")

    def report(self, request: web.Request, body: bytes) -> Answer | None:
        params = dict(request.query)
        params.update(parse_qsl(body.decode()))
        fields = [name for name in params.get("fields", "").split(",") if name]
        unknown = [name for name in fields if name not in KNOWN.get(params["result"], ())]
        if unknown:
            text = f"Invalid fieldName(s) supplied: {','.join(unknown)}"
            return Answer(body=text.encode(), status=400, content_type="text/plain")
        if params["result"] != self.result:
            return Answer(body=b"", status=204, content_type="text/plain")
        self.asked.append(fields)
        return Answer.recorded(f"ena/{self.recording}")


@dataclass(frozen=True)
class Planned:
    path: str
    url: str
    size: int | None
    md5: str | None


def plan(
    tmp_path: Path,
    base: str,
    accessions: list[str],
    files: list[str] | None,
    *,
    empty: bool = False,
) -> None:
    entry: dict[str, object] = {"accessions": accessions}
    if files is not None:
        entry["files"] = files
    manifest = tmp_path / "manifest.yaml"
    doc = {
        "version": 1,
        "dest": str(tmp_path / "data"),
        "endpoints": {"ena_portal": f"{base}/portal", "ena_files": f"{base}{FILES}"},
        "sources": [{"ena": entry}],
    }
    manifest.write_text(yaml.safe_dump(doc))
    done = mirror_main("plan", str(manifest), "--json")
    assert "Traceback" not in done.stderr
    errors = json.loads(done.stdout.splitlines()[-1])["errors"]
    if empty:  # an entry that yields no file fails, saying why
        assert done.returncode == 1, done.stderr
        assert len(errors) == 1
        assert "nothing to download" in errors[0]
        return
    assert done.returncode == 0, done.stderr
    assert errors == []


async def planned_files(dest: Path) -> list[Planned]:
    store = await open_store(None, dest)
    try:
        generation = await store.generation()
        return [
            Planned(path=f.path, url=f.url, size=f.size, md5=f.checksum)
            async for f in store.files(generation)
        ]
    finally:
        await store.aclose()


def fq(acc: str, name: str, url: str, size: int | None, md5: str) -> Planned:
    return Planned(path=f"ena/{acc}/{name}", url=f"{FILES}/vol1/{url}", size=size, md5=md5)


PHCUE_157 = [
    fq(
        "SRR16298157",
        "SRR16298157",
        "srr/SRR162/057/SRR16298157",
        157435,
        "baa98dd72f2a966be8f76569e46c03d9",
    ),
    fq(
        "SRR16298157",
        "SRR16298157_1.fastq.gz",
        "fastq/SRR162/057/SRR16298157/SRR16298157_1.fastq.gz",
        43409,
        "aaf5b365c1b45083c014baa35657b463",
    ),
    fq(
        "SRR16298157",
        "SRR16298157_2.fastq.gz",
        "fastq/SRR162/057/SRR16298157/SRR16298157_2.fastq.gz",
        42752,
        "e80f09063bf017fa08b0dd881e840ed9",
    ),
]
PHCUE_THREE = [
    fq(
        "ERR5556343",
        f"ERR5556343{suffix}.fastq.gz",
        f"fastq/ERR555/003/ERR5556343/ERR5556343{suffix}.fastq.gz",
        size,
        md5,
    )
    for suffix, size, md5 in (
        ("", 41148, "2b1b1d16d7b5a3d9c27f057c5064dd04"),
        ("_1", 7479353, "2dd162ca91d340667b611d7f014eaaa5"),
        ("_2", 8349710, "8041deb0614dc669a3f28c20b330a599"),
    )
]
PHCUE_PAIRED = [
    fq(
        f"SRR1629817{n}",
        f"SRR1629817{n}_{mate}.fastq.gz",
        f"fastq/SRR162/07{n}/SRR1629817{n}/SRR1629817{n}_{mate}.fastq.gz",
        size,
        md5,
    )
    for n, mate, size, md5 in (
        (3, 1, 7332259, "76c841d58a4949736555f6fe2adcc86a"),
        (3, 2, 7765784, "861e40962c89d62bf298fde8ca1b7415"),
        (4, 1, 7444532, "ca4365343d144947b5acf6e8ee124e49"),
        (4, 2, 10960575, "39523f0e9757e953cb0a5d707b9e2b58"),
    )
]
ALL_RUN_FILES = ["fastq", "submitted", "sra"]

CASES = [
    pytest.param(
        "ffq_fastqs.tsv",
        "read_run",
        ["SRR8426358"],
        ["fastq"],
        [
            fq(
                "SRR8426358",
                f"SRR8426358_{mate}.fastq.gz",
                f"fastq/SRR842/008/SRR8426358/SRR8426358_{mate}.fastq.gz",
                size,
                md5,
            )
            for mate, size, md5 in (
                (1, 5507959060, "be7e88cf6f6fd90f1b1170f1cb367123"),
                (2, 7194107512, "2124da22644d876c4caa92ffd9e2402e"),
            )
        ],
        id="ffq_fastqs",
    ),
    pytest.param("ffq_fastqs_empty.tsv", "read_run", ["SRR6835844"], ["fastq"], [], id="ffq_empty"),
    pytest.param(
        "ffq_bam.tsv",
        "read_run",
        ["SRR6835844"],
        ["submitted"],
        [
            fq(
                "SRR6835844",
                "10X_P4_0.bam",
                "SRA653/SRA653146/bam/10X_P4_0.bam",
                17093057664,
                "5355fe6a07155026085ce46631268ab1",
            ),
            fq(
                "SRR6835844",
                "10X_P4_0.bam.bai",
                "run/SRR683/SRR6835844/10X_P4_0.bam.bai",
                7163216,
                "c9396c2596254831470a9138ae86ded7",
            ),
        ],
        id="ffq_bam",
    ),
    pytest.param(
        "ffq_bam_empty.tsv", "read_run", ["SRR8426358"], ["submitted"], [], id="ffq_bam_empty"
    ),
    pytest.param(
        "ebt_ERR2512031_search.tsv",
        "read_run",
        ["ERR2512031"],
        ALL_RUN_FILES,
        # No *_bytes in this answer: sizes unknown, each file checked by its MD5.
        [
            fq(
                "ERR2512031",
                "20104421_S5_L999_R1_001.fastq.gz",
                "run/ERR251/ERR2512031/20104421_S5_L999_R1_001.fastq.gz",
                None,
                "5267a0aa15395983b08318af330bfe47",
            ),
            fq(
                "ERR2512031",
                "20104421_S5_L999_R2_001.fastq.gz",
                "run/ERR251/ERR2512031/20104421_S5_L999_R2_001.fastq.gz",
                None,
                "e351cea6ed9d2f45f2d5fc01238789e5",
            ),
            fq(
                "ERR2512031",
                "ERR2512031",
                "err/ERR251/001/ERR2512031",
                None,
                "1cf4167dfebec580f3a9f8927c546cc7",
            ),
            fq(
                "ERR2512031",
                "ERR2512031_1.fastq.gz",
                "fastq/ERR251/001/ERR2512031/ERR2512031_1.fastq.gz",
                None,
                "950123b5264f6483040901575a8e8383",
            ),
            fq(
                "ERR2512031",
                "ERR2512031_2.fastq.gz",
                "fastq/ERR251/001/ERR2512031/ERR2512031_2.fastq.gz",
                None,
                "8bb209553d1c0292593524813cffb67f",
            ),
        ],
        id="ebt_search",
    ),
    *(
        pytest.param(
            f"{stem}.{ext}", "read_run", accessions, ALL_RUN_FILES, expected, id=f"{stem}.{ext}"
        )
        for stem, accessions, expected in (
            ("phcue_SRR16298157_filereport", ["SRR16298157"], PHCUE_157),
            ("phcue_ERR5556343_3fastq", ["ERR5556343"], PHCUE_THREE),
            ("phcue_SRR16298173_4_paired", ["SRR16298173", "SRR16298174"], PHCUE_PAIRED),
        )
        for ext in ("tsv", "json")
    ),
    pytest.param(
        "mock_analysis_ERZ1738264.tsv",
        "analysis",
        ["ERZ1738264"],
        None,
        [
            fq(
                "ERZ1738264",
                "Chr2-Run8-TAUIND-public.vcf.gz",
                "ERZ173/ERZ1738264/Chr2-Run8-TAUIND-public.vcf.gz",
                56789,
                "fedcba9876543210fedcba9876543210",
            ),
            fq(
                "ERZ1738264",
                "ChrMT-Run8-TAUIND-public.vcf.gz",
                "ERZ173/ERZ1738264/ChrMT-Run8-TAUIND-public.vcf.gz",
                1234,
                "0123456789abcdef0123456789abcdef",
            ),
            fq(
                "ERZ1738264",
                "ChrMT-Run8-TAUIND-public.vcf.gz.tbi",
                "ERZ173/ERZ1738264/ChrMT-Run8-TAUIND-public.vcf.gz.tbi",
                321,
                "00112233445566778899aabbccddeeff",
            ),
        ],
        id="analysis",
    ),
    pytest.param(
        "mock_same_name.tsv",
        "read_run",
        ["ERR0000001"],
        ["fastq", "submitted"],
        # Generated and submitted FASTQs share their names: both land, the later
        # family in a directory of its own.
        [
            *(
                fq(
                    "ERR0000001",
                    f"ERR0000001_{mate}.fastq.gz",
                    f"fastq/ERR000/001/ERR0000001/ERR0000001_{mate}.fastq.gz",
                    size,
                    md5,
                )
                for mate, size, md5 in ((1, 100, "1" * 32), (2, 200, "2" * 32))
            ),
            *(
                fq(
                    "ERR0000001",
                    f"submitted/ERR0000001_{mate}.fastq.gz",
                    f"run/ERR000/ERR0000001/ERR0000001_{mate}.fastq.gz",
                    size,
                    md5,
                )
                for mate, size, md5 in ((1, 300, "3" * 32), (2, 400, "4" * 32))
            ),
        ],
        id="same_name",
    ),
    pytest.param(
        "mock_hash_in_name.tsv",
        "read_run",
        ["ERR3256745"],
        ["submitted"],
        [
            fq(
                "ERR3256745",
                "27604_8#1.cram",
                "run/ERR325/ERR3256745/27604_8%231.cram",
                1000,
                "0123456789abcdef0123456789abcdef",
            )
        ],
        id="hash_in_name",
    ),
    pytest.param(
        "mock_ont_many_files.tsv",
        "read_run",
        ["ERR9990001"],
        ["submitted"],
        [
            fq(
                "ERR9990001",
                f"FAR12345_pass_abcdef12_{i}.fast5",
                f"run/ERR999/ERR9990001/reads/fast5_pass/FAR12345_pass_abcdef12_{i}.fast5",
                4000 + i,
                f"{i:032x}",
            )
            for i in range(3000)
        ],
        id="ont_3000_files_one_row",
    ),
]


@pytest.mark.parametrize(("recording", "result", "accessions", "files", "expected"), CASES)
async def test_recorded_answer_plans_exactly_its_files(
    tmp_path: Path,
    recording: str,
    result: str,
    accessions: list[str],
    files: list[str] | None,
    expected: list[Planned],
) -> None:
    portal = Portal(recording, result)
    async with Replay(portal.routes()) as replay:
        await asyncio.to_thread(plan, tmp_path, replay.base, accessions, files, empty=not expected)
    got = await planned_files(tmp_path / "data")
    base = replay.base
    want = sorted(expected, key=lambda p: p.path)
    assert [p.path for p in got] == [p.path for p in want]
    assert got == [Planned(p.path, base + p.url, p.size, p.md5) for p in want]
    # The engine asked for every column the recording holds, and the Portal was asked
    # once per request the engine needed (nothing re-asked, nothing dropped).
    assert portal.asked, "the recording was never asked for"
    for fields in portal.asked:
        assert set(columns_of(recording)) <= set(fields)


async def test_a_run_row_longer_than_the_http_clients_line_limit(tmp_path: Path) -> None:
    # The ONT recording's shape, one 2.2 MB line: past the 2 MiB the HTTP client reads
    # as one line. A PromethION run has some 20,000 FAST5 files; 5,000 under a run
    # folder nested as MinKNOW nests its output make the same length. Every file is planned.
    n = 5_000
    folder = "/".join(
        [
            "ftp.sra.ebi.ac.uk/vol1/run/ERR999/ERR9990001/reads",
            *(
                f"{part}_20231115_1502_1A_PAG12345_0a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b"
                for part in ("experiment", "sample", "run", "flowcell")
            ),
            "fast5_pass/barcode01",
        ]
    )
    columns = ["run_accession", "submitted_ftp", "submitted_md5", "submitted_bytes"]
    values = [
        "ERR9990001",
        ";".join(f"{folder}/PAG12345_pass_barcode01_0a1b2c3d_{i}.fast5" for i in range(n)),
        ";".join(f"{i:032x}" for i in range(n)),
        ";".join(str(4000 + i) for i in range(n)),
    ]
    body = ("\t".join(columns) + "\n" + "\t".join(values) + "\n").encode()
    assert len(body) > 2 * 1024 * 1024
    portal = Portal("mock_ont_many_files.tsv", "read_run")
    routes = portal.routes()

    def report(request: web.Request, form: bytes) -> Answer | None:
        if portal.report(request, form) is None:
            return None
        return Answer(body=body, content_type="text/plain")

    routes["/portal/search"] = report
    async with Replay(routes) as replay:
        await asyncio.to_thread(plan, tmp_path, replay.base, ["ERR9990001"], ["submitted"])
    got = await planned_files(tmp_path / "data")
    assert len(got) == n
    by_name = {p.path.rsplit("/", 1)[-1]: p for p in got}
    for i in (0, 2_345, n - 1):
        p = by_name[f"PAG12345_pass_barcode01_0a1b2c3d_{i}.fast5"]
        assert (p.size, p.md5) == (4000 + i, f"{i:032x}")


async def test_a_report_without_sizes_downloads_and_verifies_by_md5(tmp_path: Path) -> None:
    # The enaBrowserTools row's shape: no *_bytes column at all. The size is unknown
    # until the body ends; the MD5 decides, and a wrong body never lands.
    good, bad = b"@r1\nACGT\n+\nIIII\n" * 500, b"x" * 1000
    rows = {
        "ERR2512031_1.fastq.gz": (good, hashlib.md5(good).hexdigest()),
        "ERR2512031_2.fastq.gz": (bad, "0" * 32),
    }
    folder = "vol1/fastq/ERR251/001/ERR2512031"
    body = "fastq_ftp\tfastq_md5\trun_accession\n" + "\t".join(
        [
            ";".join(f"ftp.sra.ebi.ac.uk/{folder}/{name}" for name in rows),
            ";".join(md5 for _, md5 in rows.values()),
            "ERR2512031",
        ]
    )
    portal = Portal("ebt_ERR2512031_search.tsv", "read_run")
    routes = portal.routes()

    def report(request: web.Request, form: bytes) -> Answer | None:
        if portal.report(request, form) is None:
            return None
        return Answer(body=body.encode(), content_type="text/plain")

    routes["/portal/search"] = report
    for name, (data, _) in rows.items():
        routes[f"{FILES}/{folder}/{name}"] = Answer(
            body=data, content_type="application/octet-stream"
        )
    async with Replay(routes) as replay:
        doc = {
            "version": 1,
            "dest": str(tmp_path),
            "endpoints": {"ena_portal": f"{replay.base}/portal", "ena_files": replay.base + FILES},
            "sources": [{"ena": {"accessions": ["ERR2512031"]}}],
        }
        summary = await mirror.run(doc, retry=FAST_RETRY)
    assert (summary.verified, summary.failed) == (1, 1)
    assert (tmp_path / "ena/ERR2512031/ERR2512031_1.fastq.gz").read_bytes() == good
    assert not (tmp_path / "ena/ERR2512031/ERR2512031_2.fastq.gz").exists()
    index = {row["path"]: row for row in read_index(tmp_path)}
    assert index["ena/ERR2512031/ERR2512031_1.fastq.gz"]["verified_by"] == "md5"
    assert index["ena/ERR2512031/ERR2512031_1.fastq.gz"]["bytes"] == str(len(good))
    assert index["ena/ERR2512031/ERR2512031_2.fastq.gz"]["status"] == "failed"


@pytest.mark.parametrize("result", ["read_run", "analysis"])
def test_the_fields_searched_by_are_real_portal_fields(result: str) -> None:
    # Secondary and submission accessions are searched by these (ena.py); both
    # recorded field lists hold them.
    assert {
        "secondary_study_accession",
        "secondary_sample_accession",
        "submission_accession",
    } <= KNOWN[result]
