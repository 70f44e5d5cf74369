"""MGnify studies built from a seed: the demo study, and big realistic ones for tests."""

from __future__ import annotations

import random
from collections.abc import Sequence

from ._records import MgnifyAnalysis, MgnifyDownload, MgnifyStudy

__all__ = ["demo_mgnify_study", "generate_study"]

KIB = 1024

# (alias suffix after "<run>_MERGED_FASTQ", label, group type, format, extension,
# compressed). Labels and groups are those of emgapi's webuploader configs, casing
# included: v4.1 writes "taxonomic analysis SSU rRNA", v5.0 "Taxonomic analysis SSU
# rRNA", so a client must compare group types case-insensitively (as mg-toolkit does).
Template = tuple[str, str, str, str, str, bool]
_SSU_OTUS = "OTUs, counts and taxonomic assignments for SSU rRNA"
_LSU_OTUS = "OTUs, counts and taxonomic assignments for LSU rRNA"
_SSU_V5, _SSU_V4 = "Taxonomic analysis SSU rRNA", "taxonomic analysis SSU rRNA"
_LSU_V5 = "Taxonomic analysis LSU rRNA"
_FUNCTIONAL = "Functional analysis"
_READS: Template = (
    ".fasta.gz",
    "Processed nucleotide reads",
    "Sequence data",
    "FASTA",
    "fasta",
    True,
)
_SSU_READS_V5: Template = (
    "_SSU.fasta.gz",
    "Reads encoding SSU rRNA",
    _SSU_V5,
    "FASTA",
    "fasta",
    True,
)
_SSU_TSV_V5: Template = ("_SSU_OTU.tsv", _SSU_OTUS, _SSU_V5, "TSV", "tsv", False)
_SSU_BIOM_V5: Template = ("_SSU_OTU_TABLE_JSON.biom", _SSU_OTUS, _SSU_V5, "JSON", "biom", False)
_IPR: Template = ("_IPR.tsv.gz", "InterPro matches", _FUNCTIONAL, "TSV", "tsv", True)
_GO: Template = ("_GO.csv", "Complete GO annotation", _FUNCTIONAL, "CSV", "csv", False)
_GO_SLIM: Template = ("_GO_slim.csv", "GO slim annotation", _FUNCTIONAL, "CSV", "csv", False)
_QC: Template = ("_qc_summary.tab", "Quality control statistics", "Statistics", "TAB", "tab", False)
_V5_WGS: tuple[Template, ...] = (
    _READS,
    _SSU_READS_V5,
    ("_LSU.fasta.gz", "Reads encoding LSU rRNA", _LSU_V5, "FASTA", "fasta", True),
    _SSU_TSV_V5,
    _SSU_BIOM_V5,
    ("_LSU_OTU.tsv", _LSU_OTUS, _LSU_V5, "TSV", "tsv", False),
    _IPR,
    _GO,
    _GO_SLIM,
    (
        "_ncRNA.fasta.gz",
        "Predicted tRNA and other ncRNAs",
        "non-coding RNAs",
        "FASTA",
        "fasta",
        True,
    ),
)
_V41_WGS: tuple[Template, ...] = (
    _READS,
    (
        "_CDS_annotated.faa.gz",
        "Predicted CDS with annotation",
        "Sequence data",
        "FASTA",
        "faa",
        True,
    ),
    ("_SSU.fasta.gz", "Reads encoding SSU rRNA", _SSU_V4, "FASTA", "fasta", True),
    ("_SSU_OTU.tsv", _SSU_OTUS, _SSU_V4, "TSV", "tsv", False),
    _IPR,
    _GO,
    ("_GO_slim.csv", "GO slim annotation", "functional analysis", "CSV", "csv", False),
    _QC,
)
_AMPLICON: tuple[Template, ...] = (_READS, _SSU_READS_V5, _SSU_TSV_V5, _SSU_BIOM_V5, _QC)


def _downloads(
    run: str,
    templates: Sequence[Template],
    sizes: Sequence[int],
    *,
    pipeline: str,
    chunks: int = 1,
    sha1: bool = True,
) -> tuple[MgnifyDownload, ...]:
    """One download per template; processed reads split into ``chunks`` files."""
    items: list[MgnifyDownload] = []
    sized = iter(sizes)
    for suffix, label, group, fmt, ext, gz in templates:
        stem = f"{run}_MERGED_FASTQ"
        if suffix == _READS[0] and chunks > 1:
            # emgapi's "_chunked" outputs: _1 … _N, each its own download item.
            aliases = [f"{stem}_{n}{suffix}" for n in range(1, chunks + 1)]
        else:
            aliases = [stem + suffix]
        for alias in aliases:
            items.append(
                MgnifyDownload(
                    alias=alias,
                    label=label,
                    group_type=group,
                    format_name=fmt,
                    format_extension=ext,
                    compression=gz,
                    size=next(sized),
                    sha1=sha1,
                    pipeline=pipeline,
                )
            )
    return tuple(items)


def generate_study(
    accession: str,
    analyses: int,
    seed: int,
    *,
    chunk_every: int = 5,
    qc_failed_every: int = 12,
    cursor: bool = False,
) -> MgnifyStudy:
    """A study of ``analyses`` analyses, the same for the same arguments.

    Study MGYS0000NNNN gets analyses MGYA{NNNN*10000 + i + 1} and runs ERR/ERS numbered
    from it. Mix: pipelines 4.1 (~40%, of which ~40% never back-filled with
    checksums) and 5.0; ~20% amplicon; every ``chunk_every``-th analysis has its
    processed reads in 2–5 chunks; every ``qc_failed_every``-th did not pass QC and
    has no downloads. Sizes are 1–64 KiB. 0 turns a periodic feature off.
    """
    number = int(accession[4:]) % 10_000
    if not 0 <= analyses < 10_000:
        raise ValueError("a generated MGnify study has 0..9999 analyses")
    built: list[MgnifyAnalysis] = []
    for i in range(analyses):
        rng = random.Random(f"mgnify:{seed}:{accession}:{i}")
        run = f"ERR{10_000_000 + number * 10_000 + i}"
        amplicon = rng.random() < 0.2
        pipeline = "4.1" if rng.random() < 0.4 else "5.0"
        failed = qc_failed_every > 0 and i % qc_failed_every == qc_failed_every - 1
        templates = _AMPLICON if amplicon else (_V41_WGS if pipeline == "4.1" else _V5_WGS)
        chunks = rng.randint(2, 5) if chunk_every > 0 and i % chunk_every == 0 else 1
        sizes = [rng.randint(KIB, 64 * KIB) for _ in range(len(templates) + chunks)]
        backfilled = pipeline == "5.0" or rng.random() < 0.6
        downloads = (
            ()
            if failed
            else _downloads(
                run, templates, sizes, pipeline=pipeline, chunks=chunks, sha1=backfilled
            )
        )
        year, month, day = rng.randint(2019, 2023), rng.randint(1, 12), rng.randint(1, 28)
        built.append(
            MgnifyAnalysis(
                accession=f"MGYA{number * 10_000 + i + 1:08d}",
                study=accession,
                pipeline_version=pipeline,
                experiment_type="amplicon" if amplicon else "metagenomic",
                run=run,
                sample=f"ERS{20_000_000 + number * 10_000 + i}",
                downloads=downloads,
                status="QC not passed" if failed else "completed",
                complete_time=f"{year}-{month:02d}-{day:02d}T10:00:00",
                cursor=cursor,
            )
        )
    return MgnifyStudy(
        accession=accession,
        analyses=tuple(built),
        bioproject=f"PRJEB{30_000 + number}",
        secondary_accession=f"ERP{110_000 + number}",
        name=f"Emulated metagenome study {number}",
    )


def demo_mgnify_study() -> MgnifyStudy:
    """MGYS00005001: 3 analyses, 12 downloads; the cases a client must get right.

    MGYA00005001 (v5.0) has its processed reads in 3 chunks; MGYA00005002 (v4.1,
    amplicon) has one download never back-filled with a checksum; MGYA00005003 did
    not pass QC and has no downloads.
    """
    study = "MGYS00005001"
    wgs = _downloads(
        "ERR3477396",
        (_READS, _SSU_READS_V5, _SSU_TSV_V5, _SSU_BIOM_V5, _IPR, _GO, _GO_SLIM),
        # Three chunks of reads first, then one size per other template.
        (
            40 * KIB,
            36 * KIB + 5,
            30 * KIB + 7,
            12 * KIB,
            3 * KIB + 1,
            20 * KIB,
            9 * KIB,
            2 * KIB,
            999,
        ),
        pipeline="5.0",
        chunks=3,
    )
    amplicon = _downloads("ERR3477397", (_READS, _QC), (16 * KIB + 1, KIB), pipeline="4.1")
    otu = MgnifyDownload(
        alias="ERR3477397_MERGED_FASTQ_SSU_OTU.tsv",
        label="OTUs, counts and taxonomic assignments for SSU rRNA",
        group_type="taxonomic analysis SSU rRNA",
        format_name="TSV",
        format_extension="tsv",
        size=5 * KIB + 11,
        sha1=False,
        pipeline="4.1",
    )
    return MgnifyStudy(
        accession=study,
        bioproject="PRJEB35001",
        secondary_accession="ERP117001",
        name="Demo gut metagenome time series",
        biomes=("root:Host-associated:Human:Digestive system",),
        analyses=(
            MgnifyAnalysis(
                accession="MGYA00005001",
                study=study,
                run="ERR3477396",
                sample="ERS3800001",
                downloads=wgs,
                complete_time="2022-11-04T09:12:31",
            ),
            MgnifyAnalysis(
                accession="MGYA00005002",
                study=study,
                pipeline_version="4.1",
                experiment_type="amplicon",
                run="ERR3477397",
                sample="ERS3800002",
                downloads=(amplicon[0], otu, amplicon[1]),
                complete_time="2019-05-20T16:40:02",
            ),
            MgnifyAnalysis(
                accession="MGYA00005003",
                study=study,
                run="ERR3477398",
                sample="ERS3800003",
                status="QC not passed",
                complete_time="2022-11-05T10:00:00",
            ),
        ),
    )


#: The account that owns the private analyses of ``generate_v2_study``.
V2_OWNER = "Webin-1001"


def generate_v2_study(
    accession: str, analyses: int, seed: int, *, private: int = 1, private_size: int = 256 * KIB
) -> MgnifyStudy:
    """A study for API v2: ``analyses`` public analyses and ``private`` private ones.

    Every third analysis is pipeline V6 (v2 only: no SHA1 anywhere, its contigs
    indexed by a ``.fai``); the others are legacy (4.1 or 5.0) with the same MGYA and
    bytes in v1, whose listing carries their SHA1s. Each analysis has two downloads:
    contigs, whose alias differs from the URL's file name, and ``taxonomy`` (the
    alias of the web client's fixture) at ``…krona.txt.gz``. Private analyses (after
    the public ones, owned by ``V2_OWNER``) have one V6 file of ``private_size``
    bytes whose name holds ``/``, ``+`` and ``=``. Sizes are 1–4 KiB.
    """
    number = int(accession[4:]) % 10_000
    built: list[MgnifyAnalysis] = []
    for i in range(analyses + private):
        rng = random.Random(f"mgnify-v2:{seed}:{accession}:{i}")
        run = f"ERR{30_000_000 + number * 10_000 + i}"
        mgya = f"MGYA{number * 10_000 + i + 1:08d}"
        if i >= analyses:
            contigs = MgnifyDownload(
                alias=f"{run}_contigs.fasta",
                label="Contigs",
                group_type="Sequence data",
                format_name="FASTA",
                format_extension="fasta",
                size=private_size,
                sha1=False,
                pipeline="6.0",
                real_name=f"bins/{run}+1=final.fa",
                group="assembly",
            )
            built.append(
                MgnifyAnalysis(
                    accession=mgya,
                    study=accession,
                    pipeline_version="6.0",
                    experiment_type="assembly",
                    assembly=f"ERZ{40_000_000 + i}",
                    downloads=(contigs,),
                    owner=V2_OWNER,
                )
            )
            continue
        v6 = i % 3 == 0
        pipeline = "6.0" if v6 else ("4.1" if rng.random() < 0.4 else "5.0")
        downloads = (
            MgnifyDownload(
                alias=f"{run}_contigs.fasta.gz",
                label="Contigs",
                group_type="Sequence data",
                format_name="FASTA",
                format_extension="fasta",
                compression=True,
                size=rng.randint(KIB, 4 * KIB),
                sha1=not v6,
                pipeline=pipeline,
                real_name=f"{run}.contigs.fa.gz",
                index_types=("fai",) if v6 else (),
            ),
            MgnifyDownload(
                alias="taxonomy",
                label="Krona taxonomy",
                group_type="Taxonomic analysis SSU rRNA",
                format_name="TSV",
                format_extension="tsv",
                compression=True,
                size=rng.randint(KIB, 4 * KIB),
                sha1=not v6,
                pipeline=pipeline,
                real_name=f"{run}.krona.txt.gz",
            ),
        )
        built.append(
            MgnifyAnalysis(
                accession=mgya,
                study=accession,
                pipeline_version=pipeline,
                run=run,
                sample=f"ERS{40_000_000 + number * 10_000 + i}",
                downloads=downloads,
            )
        )
    return MgnifyStudy(
        accession=accession,
        analyses=tuple(built),
        bioproject=f"PRJEB{60_000 + number}",
        secondary_accession=f"ERP{160_000 + number}",
        name=f"Emulated v2 study {number}",
        biomes=("root:Engineered:Wastewater",),
    )
