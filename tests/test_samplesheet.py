"""``mirror samplesheet`` and ``metadata/ena/runinfo_ftp.tsv`` on a pull of the emulator's
demo study: paired runs, a single-end run, a PAIRED run with one FASTQ, a run with
three FASTQs (unpaired + _1 + _2) and a run with no FASTQ at all."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import pytest
import yaml

import mirror
from mirror._cli import main
from mirror._samplesheet_rules import FORMATS, check_sheet
from mirror.emulator import Catalog, Emulator, EnaFile, EnaRun
from mirror.sources.ena_runinfo import RUNINFO_COLUMNS, pick_reads

from .conftest import FAST_RETRY, MIXED, ena_manifest, md5_of_file, read_index
from .inproc import mirror_main

FASTQ_COLUMNS = {
    "rnaseq": ("fastq_1", "fastq_2"),
    "atacseq": ("fastq_1", "fastq_2"),
    "viralrecon": ("fastq_1", "fastq_2"),
    "taxprofiler": ("fastq_1", "fastq_2"),
    "fetchngs": ("fastq_1", "fastq_2"),
    "mag": ("short_reads_1", "short_reads_2"),
}


async def _pull(emulator: Emulator, dest: Path, accessions: list[str] = MIXED) -> None:
    doc = ena_manifest(emulator.endpoints, dest, accessions)
    summary = await mirror.run(doc, retry=FAST_RETRY)
    assert summary.exit_code == 0
    await emulator.wait_idle()


def _sheet(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


async def test_every_format_passes_its_schema_rules_with_verified_absolute_paths(
    emulator: Emulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dest = tmp_path / "data"
    await _pull(emulator, dest)
    md5s = {str((dest / r["path"]).absolute()): r["md5"] for r in read_index(dest)}
    for fmt, rules in FORMATS.items():
        assert main(["samplesheet", "--dest", str(dest), "--format", fmt]) == 0, fmt
        out, err = capsys.readouterr()
        path = dest / "samplesheets" / f"{fmt}.csv"
        assert out.strip() == f"{path}: 7 runs ({fmt})"
        # The run with only a BAM is named, not silently dropped.
        assert "ERR4080003: no FASTQ files at ENA; left out" in err
        text = path.read_text()
        rows = _sheet(text)
        assert check_sheet(rules, rows) == [], fmt
        assert list(rows[0])[: len(rules.columns)] == list(rules.columns)
        by_run = {Path(r[FASTQ_COLUMNS[fmt][0]]).parent.name: r for r in rows}
        assert set(by_run) == {
            "ERR164407",
            "ERR4080001",
            "ERR4080002",
            "ERR11000001",
            "ERR11000002",
            "ERR120000001",
            "SRR9320616",
        }
        for row in rows:
            for column in FASTQ_COLUMNS[fmt]:
                if row[column]:
                    assert Path(row[column]).is_absolute()
                    assert md5_of_file(Path(row[column])) == md5s[row[column]]
        one, two = FASTQ_COLUMNS[fmt]
        # Three FASTQs: the pair goes in, the unpaired file stays out.
        three = by_run["ERR4080002"]
        assert (Path(three[one]).name, Path(three[two]).name) == (
            "ERR4080002_1.fastq.gz",
            "ERR4080002_2.fastq.gz",
        )
        assert "ERR4080002.fastq.gz" not in text.replace("/ERR4080002.fastq.gz", "")
        # Single-end by the files: a SINGLE run, and a PAIRED one with one file.
        assert by_run["ERR11000002"][two] == ""
        assert by_run["SRR9320616"][two] == ""
        assert Path(by_run["SRR9320616"][one]).name == "SRR9320616.fastq.gz"
    mag = _sheet((dest / "samplesheets/mag.csv").read_text())
    assert {(r["sample"], r["run"], r["group"]) for r in mag} >= {
        ("SAMEA1500001", "ERR164407", "PRJEB40001"),
        ("SAMEA110000010", "ERR11000002", "PRJEB40002"),
    }
    assert {r["short_reads_platform"] for r in mag} == {"ILLUMINA"}
    rnaseq = _sheet((dest / "samplesheets/rnaseq.csv").read_text())
    assert {r["strandedness"] for r in rnaseq} == {"auto"}
    fetchngs = (dest / "samplesheets/fetchngs.csv").read_text().splitlines()
    assert fetchngs[0].startswith('"sample","fastq_1","fastq_2","run_accession",')


async def test_a_run_with_an_unverified_read_is_warned_of_and_left_out(
    emulator: Emulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dest = tmp_path / "data"
    await _pull(emulator, dest)
    (dest / "ena/ERR4080001/ERR4080001_2.fastq.gz").unlink()
    assert main(["samplesheet", "--dest", str(dest), "--format", "rnaseq", "-o", "-"]) == 0
    out, err = capsys.readouterr()
    assert "ERR4080001: ERR4080001_2.fastq.gz is gone from " in err
    # A failed file is named with its status.
    index = (dest / "index.tsv").read_text()
    lines = [
        line.replace("\tverified\t", "\tfailed\t") if "ERR11000001_1" in line else line
        for line in index.splitlines()
    ]
    assert sum("\tfailed\t" in line for line in lines) == 1
    (dest / "index.tsv").write_text("\n".join(lines) + "\n")
    assert main(["samplesheet", "--dest", str(dest), "--format", "rnaseq", "-o", "-"]) == 0
    out2, err2 = capsys.readouterr()
    assert "ERR11000001: ERR11000001_1.fastq.gz is failed; run left out" in err2
    assert len(_sheet(out2)) == 5
    # A run whose FASTQs were never asked for (another entry's files: [submitted]).
    (dest / "index.tsv").write_text(
        "\n".join(line for line in lines if "SRR9320616" not in line) + "\n"
    )
    assert main(["samplesheet", "--dest", str(dest), "--format", "rnaseq", "-o", "-"]) == 0
    out3, err3 = capsys.readouterr()
    assert (
        "SRR9320616: SRR9320616.fastq.gz was never planned (not in index.tsv: is 'fastq' "
        "among the ENA entry's files?); run left out"
    ) in err3
    assert len(_sheet(out3)) == 4
    rows = _sheet(out)
    assert len(rows) == 6
    assert not any("ERR4080001" in r["fastq_1"] for r in rows)


def test_no_mirror_is_a_usage_error_and_nothing_to_write_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["samplesheet", "--dest", str(tmp_path), "--format", "mag"]) == 2
    assert "no index.tsv under" in capsys.readouterr().err
    (tmp_path / "metadata/ena").mkdir(parents=True)
    (tmp_path / "index.tsv").write_text("source\taccession\tpath\tbytes\tmd5\turl\tstatus\n")
    (tmp_path / "metadata/ena/runs.tsv").write_text("run_accession\tfastq_ftp\nERR1\t\n")
    assert main(["samplesheet", "--dest", str(tmp_path), "--format", "mag"]) == 1
    err = capsys.readouterr().err
    assert "ERR1: no FASTQ files at ENA" in err
    assert "nothing written" in err
    assert not (tmp_path / "samplesheets").exists()


async def test_runinfo_ftp_has_fetchngs_columns_and_pairs_three_fastqs(
    emulator: Emulator, tmp_path: Path
) -> None:
    dest = tmp_path / "data"
    await _pull(emulator, dest)
    lines = (dest / "metadata/ena/runinfo_ftp.tsv").read_text().splitlines()
    header = lines[0].split("\t")
    assert tuple(header) == RUNINFO_COLUMNS
    rows = {
        r["run_accession"]: r
        for r in (dict(zip(header, x.split("\t"), strict=True)) for x in lines[1:])
    }
    three = rows["ERR4080002"]
    assert three["id"] == "ERX4080002_ERR4080002_T1"
    assert three["fastq_1"].endswith("/ERR4080002_1.fastq.gz")
    assert three["fastq_2"].endswith("/ERR4080002_2.fastq.gz")
    assert three["md5_1"] == md5_of_file(dest / "ena/ERR4080002/ERR4080002_1.fastq.gz")
    assert three["md5_2"] == md5_of_file(dest / "ena/ERR4080002/ERR4080002_2.fastq.gz")
    assert three["single_end"] == "false"
    assert rows["SRR9320616"]["single_end"] == "true"
    assert rows["SRR9320616"]["fastq_2"] == ""
    assert rows["ERR4080003"]["fastq_1"] == ""
    assert rows["ERR164407"]["instrument_model"] == "Illumina HiSeq 2500"


def test_pick_reads_pairs_by_name_and_leaves_the_unpaired_file_out() -> None:
    assert pick_reads(["R.fastq.gz", "R_1.fastq.gz", "R_2.fastq.gz"]) == (1, 2)
    assert pick_reads(["R_2.fastq.gz", "R_1.fastq.gz"]) == (1, 0)
    assert pick_reads(["R.fastq.gz"]) == (0, None)
    assert pick_reads(["a.fastq.gz", "b.fastq.gz"]) is None
    assert pick_reads([]) is None


def test_the_rules_catch_what_the_schemas_refuse() -> None:
    mag = FORMATS["mag"]
    # nf-core/fetchngs#401: an empty group and fastq_* names fail mag's schema.
    bad = [{"sample": "S1", "group": "", "fastq_1": "/d/a_1.fastq.gz"}]
    problems = check_sheet(mag, bad)
    assert "row 1: group is empty" in problems
    assert "row 1: neither short_reads_1 nor long_reads is given" in problems
    no_platform = [{"sample": "S1", "group": "G", "short_reads_1": "/d/a_1.fastq.gz"}]
    assert check_sheet(mag, no_platform) == ["row 1: short_reads_1 needs short_reads_platform"]
    rnaseq = FORMATS["rnaseq"]
    spaced = [{"sample": "my sample", "fastq_1": "/d/a.fq", "strandedness": "both"}]
    assert len(check_sheet(rnaseq, spaced)) == 3
    twice = [{"sample": "S", "run_accession": "R", "instrument_platform": "ILLUMINA"}] * 2
    assert check_sheet(FORMATS["taxprofiler"], twice) == [
        "row 2: sample+run_accession ('S', 'R') repeats an earlier row"
    ]


def _manifest(path: Path, endpoints: dict[str, str], sheets: object) -> Path:
    doc = {
        "version": 1,
        "dest": "data",
        "workers": 4,
        "endpoints": endpoints,
        "samplesheets": sheets,
        "sources": [{"ena": {"accessions": MIXED, "files": ["fastq"]}}],
    }
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def test_the_manifest_option_writes_its_sheets_after_every_run(
    emulator_thread: Any, tmp_path: Path
) -> None:
    emu = emulator_thread(Catalog.demo())
    m = _manifest(tmp_path / "m.yaml", emu.endpoints, ["mag", "rnaseq"])
    ran = mirror_main("run", str(m))
    assert ran.returncode == 0, ran.stderr
    sheets = tmp_path / "data/samplesheets"
    assert sorted(p.name for p in sheets.iterdir()) == ["mag.csv", "rnaseq.csv"]
    assert f"samplesheets: {sheets / 'mag.csv'}: 7 runs" in ran.stderr
    assert "samplesheets: ERR4080003: no FASTQ files at ENA; left out" in ran.stderr
    mag = _sheet((sheets / "mag.csv").read_text())
    assert check_sheet(FORMATS["mag"], mag) == []
    assert all(r["group"] for r in mag)
    # A second run (nothing to download) writes them again, from the same files.
    (sheets / "mag.csv").unlink()
    again = mirror_main("run", str(m), "-q")
    assert again.returncode == 0, again.stderr
    assert _sheet((sheets / "mag.csv").read_text()) == mag
    # The command finds DEST through the manifest, as status does.
    viral = mirror_main("samplesheet", str(m), "--format", "viralrecon", "-o", "-", "-q")
    assert viral.returncode == 0, viral.stderr
    assert viral.stderr == ""
    assert len(_sheet(viral.stdout)) == 7


def test_a_manifest_status_cannot_read_simply_gives_its_error(tmp_path: Path) -> None:
    m = tmp_path / "m.yaml"
    m.write_text("dest: [1]\nsources: []\n")
    ran = mirror_main("samplesheet", str(m), "--format", "mag")
    assert ran.returncode == 2
    assert f"{m}:1: dest: expected a path (a string), got a list" in ran.stderr


@pytest.mark.parametrize(
    ("sheets", "line", "message"),
    [
        (["rnaseq", "nextflow"], 7, "samplesheets[1]: expected a samplesheet format"),
        ({"rnaseq": 1}, 5, "samplesheets: expected a list of samplesheet formats"),
    ],
)
def test_a_bad_samplesheets_key_is_a_manifest_error_with_its_line(
    tmp_path: Path, sheets: object, line: int, message: str
) -> None:
    m = _manifest(tmp_path / "m.yaml", {}, sheets)
    ran = mirror_main("plan", str(m))
    assert ran.returncode == 2
    assert f"m.yaml:{line}: {message}" in ran.stderr


def _platform_run(n: int, platform: str, *names: str) -> EnaRun:
    acc = f"ERR90000{n:02d}"
    return EnaRun(
        accession=acc,
        experiment=f"ERX90000{n:02d}",
        sample=f"SAMEA90000{n:02d}",
        secondary_sample=f"ERS90000{n:02d}",
        study="PRJEB90001",
        secondary_study="ERP190001",
        library_layout="SINGLE" if len(names) == 1 else "PAIRED",
        fastq=tuple(
            EnaFile(path=f"vol1/fastq/ERR900/0{n:02d}/{acc}/{acc}{name}.fastq.gz", size=4000 + n)
            for name in names
        ),
        extra={"instrument_platform": platform, "study_title": "Soil, long and short"},
    )


async def test_platforms_decide_mag_columns_and_what_a_pipeline_cannot_take(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    catalog = Catalog(
        runs=(
            _platform_run(1, "OXFORD_NANOPORE", ""),
            _platform_run(2, "PACBIO_SMRT", ""),
            _platform_run(3, "CAPILLARY", "_1", "_2"),
            _platform_run(4, "ILLUMINA", "_1", "_2"),
        )
    )
    dest = tmp_path / "data"
    async with Emulator(catalog, seed=3) as emu:
        await _pull(emu, dest, ["PRJEB90001"])
    assert main(["samplesheet", "--dest", str(dest), "--format", "mag", "-o", "-"]) == 0
    out, err = capsys.readouterr()
    mag = {r["run"]: r for r in _sheet(out)}
    assert check_sheet(FORMATS["mag"], list(mag.values())) == []
    assert set(mag) == {"ERR9000001", "ERR9000002", "ERR9000004"}
    nanopore = mag["ERR9000001"]
    assert Path(nanopore["long_reads"]).name == "ERR9000001.fastq.gz"
    assert (nanopore["long_reads_platform"], nanopore["short_reads_1"]) == ("OXFORD_NANOPORE", "")
    assert mag["ERR9000002"]["long_reads_platform"] == "PACBIO_SMRT"
    assert mag["ERR9000004"]["short_reads_platform"] == "ILLUMINA"
    capillary = [line for line in err.splitlines() if "ERR9000003" in line]
    assert len(capillary) == 1
    assert "ERR9000003: short_reads_platform 'CAPILLARY' is not one of" in capillary[0]
    assert capillary[0].endswith("left out of the mag sheet")
    # taxprofiler takes every ENA platform; fetchngs quotes the title's comma.
    assert main(["samplesheet", "--dest", str(dest), "--format", "taxprofiler", "-o", "-"]) == 0
    tax = _sheet(capsys.readouterr().out)
    assert sorted(r["instrument_platform"] for r in tax) == [
        "CAPILLARY",
        "ILLUMINA",
        "OXFORD_NANOPORE",
        "PACBIO_SMRT",
    ]
    assert main(["samplesheet", "--dest", str(dest), "--format", "fetchngs", "-o", "-"]) == 0
    fetchngs = _sheet(capsys.readouterr().out)
    assert {r["study_title"] for r in fetchngs} == {"Soil, long and short"}


async def test_a_run_listed_twice_in_runs_tsv_is_one_row(
    emulator: Emulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dest = tmp_path / "data"
    await _pull(emulator, dest)
    runs = dest / "metadata/ena/runs.tsv"
    lines = runs.read_text().splitlines()
    # As two entries asking for other fields leave it: the same run, one cell more.
    again = next(line for line in lines if line.startswith("ERR164407\t")) + "\textra"
    runs.write_text("\n".join([lines[0] + "\tmore", *lines[1:], again]) + "\n")
    assert main(["samplesheet", "--dest", str(dest), "--format", "rnaseq", "-o", "-"]) == 0
    rows = _sheet(capsys.readouterr().out)
    assert len(rows) == 7
    assert sum("ERR164407_1" in r["fastq_1"] for r in rows) == 1


async def test_one_sample_one_layout_for_rnaseq_and_atacseq(
    emulator: Emulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dest = tmp_path / "data"
    await _pull(emulator, dest)
    # SAMEA110000010 has a paired run (ERR11000001) and a single-end one (ERR11000002).
    for fmt in ("rnaseq", "atacseq"):
        args = ["samplesheet", "--dest", str(dest), "--format", fmt, "--sample-by", "sample"]
        assert main([*args, "-o", "-"]) == 0
        out, err = capsys.readouterr()
        rows = _sheet(out)
        assert check_sheet(FORMATS[fmt], rows) == []
        assert [r["sample"] for r in rows].count("SAMEA110000010") == 1
        assert (
            "ERR11000002: sample 'SAMEA110000010' is paired-end in an earlier row, single-end "
            f"here (one sample, one layout); left out of the {fmt} sheet"
        ) in err
    # Named by run, every run is a sample of its own: all seven go in.
    assert (
        main(
            [
                "samplesheet",
                "--dest",
                str(dest),
                "--format",
                "rnaseq",
                "--sample-by",
                "run",
                "-o",
                "-",
            ]
        )
        == 0
    )
    rows = _sheet(capsys.readouterr().out)
    assert sorted(r["sample"] for r in rows) == sorted(Path(r["fastq_1"]).parent.name for r in rows)
    assert len(rows) == 7


def test_the_layout_rule_fails_a_mixed_sample() -> None:
    mixed = [
        {"sample": "S", "fastq_1": "/d/a_1.fastq.gz", "fastq_2": "/d/a_2.fastq.gz"},
        {"sample": "S", "fastq_1": "/d/b.fastq.gz", "fastq_2": ""},
    ]
    assert check_sheet(FORMATS["viralrecon"], mixed) == []  # no such rule
    problems = check_sheet(FORMATS["atacseq"], [{**r, "replicate": "1"} for r in mixed])
    assert problems == [
        "row 2: sample 'S' is paired-end in an earlier row, single-end here "
        "(one sample, one layout)"
    ]
