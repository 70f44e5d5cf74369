"""The fixed demo catalog, built to carry the edge cases real ENA data has."""

from __future__ import annotations

import datetime

from ._catalog import Catalog
from .cram._records import CramReference
from .ega._records import EgaDataset, EgaFile
from .ena._layout import analysis_dir, fastq_dir, run_dir, sra_path
from .ena._records import EnaAnalysis, EnaFile, EnaRun
from .enterobase._records import generate_assemblies
from .mgnify._generate import demo_mgnify_study

__all__ = ["demo_catalog"]

KIB = 1024
MIB = 1024 * KIB

_HUMAN = {
    "scientific_name": "Homo sapiens",
    "tax_id": "9606",
    "instrument_platform": "ILLUMINA",
    "instrument_model": "Illumina HiSeq 2500",
    "library_strategy": "WGS",
    "library_source": "GENOMIC",
}
_GUT = {
    "scientific_name": "human gut metagenome",
    "tax_id": "408170",
    "instrument_platform": "ILLUMINA",
    "instrument_model": "Illumina NovaSeq 6000",
    "library_strategy": "WGS",
    "library_source": "METAGENOMIC",
}


def _fastq(
    accession: str, *sizes: int, names: tuple[str, ...] = ("_1", "_2")
) -> tuple[EnaFile, ...]:
    directory = fastq_dir(accession)
    return tuple(
        EnaFile(path=f"{directory}/{accession}{name}.fastq.gz", size=size)
        for name, size in zip(names, sizes, strict=True)
    )


def _sra(accession: str, size: int) -> tuple[EnaFile, ...]:
    return (EnaFile(path=sra_path(accession), size=size),)


def _ega_demo() -> EgaDataset:
    # The docs' example dataset and file (331-01-3TD.CEL.cip, EGAF00000867414), made
    # small; one size odd and one just past 256 KiB, so block and XOR edges are hit.
    dataset = "EGAD00010000805"
    files = (
        ("EGAF00000867414", "/arrays/331-01-3TD.CEL.cip", 100_003),
        ("EGAF00000867415", "/bams/sample1.bam.cip", 256 * KIB + 5),
        ("EGAF00000867416", "/bams/sample1.bam.bai.cip", 80 * KIB),
    )
    return EgaDataset(
        dataset_id=dataset,
        files=tuple(
            EgaFile(file_id=file_id, file_name=name, size=size, dataset=dataset)
            for file_id, name, size in files
        ),
    )


def _cram_demo() -> tuple[CramReference, ...]:
    # Real references' lengths (human mitochondrion, phiX174), and one just past
    # 1 MiB so that ranges and resumes cross the file host's block size.
    return (
        CramReference(name="MT", length=16_569),
        CramReference(name="phiX174", length=5_386),
        CramReference(name="chr22_part", length=MIB + 3),
    )


def demo_catalog() -> Catalog:
    # ERR164407 is the docs' own example; its directory ERR164/007 is *not* what the
    # read-download rule gives for a 9-character accession (none), as on the real tree.
    err164407 = EnaRun(
        accession="ERR164407",
        experiment="ERX148014",
        sample="SAMEA1500001",
        secondary_sample="ERS1500001",
        study="PRJEB40001",
        secondary_study="ERP124001",
        fastq=tuple(
            EnaFile(path=f"vol1/fastq/ERR164/007/ERR164407/ERR164407{name}.fastq.gz", size=size)
            for name, size in (("_1", 3 * MIB + 1234), ("_2", 3 * MIB - 4321))
        ),
        sra=(EnaFile(path="vol1/err/ERR164/007/ERR164407", size=2 * MIB + 17),),
        extra=_HUMAN,
    )
    # Exactly one block and one byte more: the content generator's boundary cases.
    err4080001 = EnaRun(
        accession="ERR4080001",
        experiment="ERX4080001",
        sample="SAMEA1500001",
        secondary_sample="ERS1500001",
        study="PRJEB40001",
        secondary_study="ERP124001",
        fastq=_fastq("ERR4080001", MIB, MIB + 1),
        sra=_sra("ERR4080001", 700 * KIB),
        extra=_HUMAN,
    )
    # Three FASTQs for a paired run: unpaired reads + _1 + _2 (ERR1109373 on real ENA;
    # fetchngs#331 paired the wrong MD5s with these).
    err4080002 = EnaRun(
        accession="ERR4080002",
        experiment="ERX4080002",
        sample="SAMEA1500002",
        secondary_sample="ERS1500002",
        study="PRJEB40001",
        secondary_study="ERP124001",
        fastq=_fastq("ERR4080002", KIB, 512 * KIB + 7, 512 * KIB + 3, names=("", "_1", "_2")),
        extra=_HUMAN,
    )
    # No FASTQ at all, only a submitted BAM + BAI (SRR6835844 on real ENA).
    err4080003 = EnaRun(
        accession="ERR4080003",
        experiment="ERX4080003",
        sample="SAMEA1500003",
        secondary_sample="ERS1500003",
        study="PRJEB40001",
        secondary_study="ERP124001",
        submitted=(
            EnaFile(path=f"{run_dir('ERR4080003')}/patient3.bam", size=2 * MIB + 99),
            EnaFile(path=f"{run_dir('ERR4080003')}/patient3.bam.bai", size=4 * KIB),
        ),
        extra=_HUMAN,
    )
    # Second study: two runs of one sample, one of them SINGLE with a submitted file too.
    err11000001 = EnaRun(
        accession="ERR11000001",
        experiment="ERX10500001",
        sample="SAMEA110000010",
        secondary_sample="ERS14000010",
        study="PRJEB40002",
        secondary_study="ERP124002",
        fastq=_fastq("ERR11000001", 100_000, 100_003),
        extra=_GUT,
    )
    err11000002 = EnaRun(
        accession="ERR11000002",
        experiment="ERX10500002",
        sample="SAMEA110000010",
        secondary_sample="ERS14000010",
        study="PRJEB40002",
        secondary_study="ERP124002",
        library_layout="SINGLE",
        fastq=_fastq("ERR11000002", 65_536, names=("",)),
        submitted=(EnaFile(path=f"{run_dir('ERR11000002')}/gut_s2.fastq.gz", size=70_001),),
        extra=_GUT,
    )
    # Standalone runs, each alone in its study. A 12-character accession (dir2 = last
    # three digits), and an NCBI run mirrored by ENA that is PAIRED with one file
    # (SRR9320616 on real ENA, fetchngs docs/usage.md).
    err120000001 = EnaRun(
        accession="ERR120000001",
        experiment="ERX120000001",
        sample="SAMEA120000001",
        secondary_sample="ERS16000001",
        study="PRJEB40003",
        secondary_study="ERP124003",
        fastq=_fastq("ERR120000001", 2 * KIB, 3 * KIB),
        sra=_sra("ERR120000001", 5 * KIB),
        extra=_GUT,
    )
    srr9320616 = EnaRun(
        accession="SRR9320616",
        experiment="SRX6075361",
        sample="SAMN12094341",
        secondary_sample="SRS4932120",
        study="PRJNA549520",
        secondary_study="SRP201111",
        fastq=_fastq("SRR9320616", 300_000, names=("",)),
        extra=_HUMAN,
    )
    erz = "ERZ1000001"
    analysis = EnaAnalysis(
        accession=erz,
        study="PRJEB40001",
        secondary_study="ERP124001",
        sample="SAMEA1500001",
        secondary_sample="ERS1500001",
        analysis_type="SEQUENCE_ASSEMBLY",
        submitted=(EnaFile(path=f"{analysis_dir(erz)}/contigs.fasta.gz", size=200_000),),
        generated=(EnaFile(path=f"{analysis_dir(erz)}/{erz}.fasta.gz", size=150_001),),
        extra={"scientific_name": "Homo sapiens", "tax_id": "9606"},
    )
    return Catalog(
        runs=(
            err164407,
            err4080001,
            err4080002,
            err4080003,
            err11000001,
            err11000002,
            err120000001,
            srr9320616,
        ),
        analyses=(analysis,),
        mgnify_studies=(demo_mgnify_study(),),
        # Released over the 30 days before 2024-06-01, none on that day itself.
        enterobase_assemblies=generate_assemblies(
            "senterica",
            12,
            serotypes=("Agona", "Typhimurium", "Enteritidis"),
            until=datetime.date(2024, 6, 1),
            days=30,
            fasta_size=(2048, 16384),
        ),
        ega_datasets=(_ega_demo(),),
        cram_references=_cram_demo(),
    )
