"""ena-upload-cli (usegalaxy-eu/ena-upload-cli, from PyPI) submits to the emulator's drop-box.

ena-upload-cli renders one XML document per object type from its TSV tables (its
packaged templates and XSDs; the sample checklist is a packaged template too), POSTs
them as multipart parts (SUBMISSION, STUDY, SAMPLE, EXPERIMENT, RUN) with Basic auth
to ``https://wwwdev.ebi.ac.uk/ena/submit/drop-box/submit/`` (``--dev``), writes the
answer to ``receipt.xml``, prints each object's alias and accession and writes them
back into ``<table>_updated.tsv``. Its data upload (FTPS to webin2.ebi.ac.uk) is
skipped with its own ``--no_data_upload`` when the run table gives the checksums, and
its taxonomy lookups (plain HTTP to www.ebi.ac.uk) only happen for a sample that lacks
a taxon id or a scientific name, so these samples give both. It runs through
ena_upload_launch.py: redirect.py, plus the test CA for its sessions, which ignore
``REQUESTS_CA_BUNDLE``.
"""

from __future__ import annotations

import csv
import io
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from .emulated import Emulated, emulated, python_of

pytestmark = pytest.mark.clients

LAUNCHER = Path(__file__).with_name("ena_upload_launch.py")
ACCOUNT, PASSWORD = "Webin-12345", "webin-password"
MD5 = "3e69af1f875fab020aed82f5edbc1f03"

TABLES = {
    "study": [
        ["alias", "title", "study_type", "study_abstract"],
        ["gut-study", "Gut study", "Metagenomics", "Stool samples"],
    ],
    "sample": [
        ["alias", "title", "taxon_id", "scientific_name", "sample_description",
         "collection date", "geographic location (country and/or sea)"],
        ["gut-1", "Gut sample 1", "408170", "human gut metagenome", "stool", "2024-05-01",
         "Belgium"],
    ],
    "experiment": [
        ["alias", "title", "study_alias", "sample_alias", "design_description",
         "library_name", "library_strategy", "library_source", "library_selection",
         "library_layout", "insert_size", "library_construction_protocol", "platform",
         "instrument_model"],
        ["gut-1-wgs", "WGS of gut 1", "gut-study", "gut-1", "shotgun", "lib-1", "WGS",
         "METAGENOMIC", "RANDOM", "single", "0", "none", "ILLUMINA", "Illumina NovaSeq 6000"],
    ],
    "run": [
        ["alias", "experiment_alias", "file_name", "file_type", "file_checksum"],
        ["gut-1-run", "gut-1-wgs", "gut-1.fastq.gz", "fastq", MD5],
    ],
}  # fmt: skip


def _write_tables(where: Path) -> dict[str, Path]:
    paths = {}
    for schema, rows in TABLES.items():
        path = where / f"{schema}.tsv"
        path.write_text("".join("\t".join(row) + "\n" for row in rows))
        paths[schema] = path
    return paths


def _updated(path: Path) -> dict[str, str]:
    text = path.with_name(f"{path.stem}_updated.tsv").read_text()
    (row,) = csv.DictReader(io.StringIO(text), delimiter="\t")
    return row


async def _submit(
    world: Emulated, work: Path, tables: dict[str, Path], password: str
) -> tuple[int, str, str]:
    world.env |= {"ENA_USERNAME": ACCOUNT, "ENA_PASSWORD": password, "TMPDIR": str(work)}
    done = await world.run(
        python_of("ena_upload_cli"), "ena-upload-cli", "--action", "add", "--center", "EMU",
        "--study", str(tables["study"]), "--sample", str(tables["sample"]),
        "--experiment", str(tables["experiment"]), "--run", str(tables["run"]),
        "--no_data_upload", "--dev",
        cwd=work, launcher=LAUNCHER,
    )  # fmt: skip
    return done.returncode, done.stdout, done.stderr


async def test_ena_upload_cli_adds_study_sample_experiment_run(tmp_path: Path) -> None:
    async with emulated(tmp_path) as world:
        www = urlsplit(world.emu.endpoints["webin"]).netloc
        # Only the test service's host: a submission to www.ebi.ac.uk would be refused.
        world.env["EMU_CONNECT"] = f"wwwdev.ebi.ac.uk:443={www}"
        work = tmp_path / "work"
        work.mkdir()
        tables = _write_tables(work)

        code, out, err = await _submit(world, work, tables, PASSWORD)
        assert code == 0, err
        assert "Submitting XMLs to ENA server: https://wwwdev.ebi.ac.uk/ena/submit/drop-box/" in out
        assert "Submission was done successfully" in out
        made = {(o.kind, o.alias): o.accession for o in world.emu.webin.objects(ACCOUNT)}
        assert set(made) == {
            ("study", "gut-study"),
            ("sample", "gut-1"),
            ("experiment", "gut-1-wgs"),
            ("run", "gut-1-run"),
        }
        patterns = {"study": "ERP", "sample": "ERS", "experiment": "ERX", "run": "ERR"}
        for (kind, alias), accession in made.items():
            assert re.fullmatch(patterns[kind] + r"\d+", accession)
            # Printed as "alias accession receiptDate ADDED" under its type's heading…
            heading = f"{kind.capitalize()} accession details:\n{alias}\t{accession}\t"
            assert heading in out
            # …and written back into the table.
            row = _updated(tables[kind])
            assert (row["alias"], row["accession"], row["status"]) == (alias, accession, "ADDED")
        assert _updated(tables["run"])["file_checksum"] == MD5
        receipt = ET.parse(work / "receipt.xml").getroot()
        assert receipt.get("success") == "true"
        (submission,) = receipt.iterfind("SUBMISSION")
        assert submission.get("accession") == world.emu.webin.objects(ACCOUNT)[0].submission
        await world.emu.wait_idle()
        # One request, to the drop-box, with no document in the log.
        assert [(e.method, e.path, e.status, e.form) for e in world.emu.log] == [
            ("POST", "/ena/submit/drop-box/submit/", 200, None)
        ]

        # The same tables again: the aliases exist, the receipt says so and ena-upload-cli
        # stops with the service's message.
        code, out, err = await _submit(world, work, tables, PASSWORD)
        assert code == 1
        assert "\nOops:\n" in err, err
        for (kind, alias), accession in made.items():
            assert (
                f'In {kind}, alias: "{alias}". The object being added already exists in the '
                f'submission account with accession: "{accession}".'
            ) in err
        assert len(world.emu.webin.objects()) == 4

        # A refused password: 401, nothing created; ena-upload-cli keeps the answer in
        # receipt.xml and fails (it parses any answer as XML).
        code, out, err = await _submit(world, work, tables, PASSWORD + "-wrong")
        assert code == 1
        assert '"status": 401' in (work / "receipt.xml").read_text()
        assert world.emu.webin.stats().unauthorized == 1
        assert len(world.emu.webin.objects()) == 4
        await world.emu.wait_idle()
        assert [e.status for e in world.emu.log] == [200, 200, 401]
