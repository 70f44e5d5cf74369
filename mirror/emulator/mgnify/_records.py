"""MGnify catalog records: studies (MGYS), analyses (MGYA) and their downloads."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "MGNIFY_LATEST",
    "MGNIFY_PREFIX",
    "PIPELINE_VERSIONS",
    "MgnifyAnalysis",
    "MgnifyDownload",
    "MgnifyStudy",
    "download_key",
]

MGNIFY_PREFIX = "/metagenomics/api/v1"
#: The public host's alias of v1, the base address MGnify's own toolkit uses.
MGNIFY_LATEST = "/metagenomics/api/latest"
_STUDY = re.compile(r"MGYS[0-9]{8}")
_ANALYSIS = re.compile(r"MGYA[0-9]{8}")
# The pipeline_version filter's choices in emgapi (filters.py); others answer 400.
PIPELINE_VERSIONS = ("1.0", "2.0", "3.0", "4.0", "4.1", "5.0")


def download_key(analysis: str, alias: str) -> str:
    """The identity the file bytes are generated from: the download's path."""
    return f"metagenomics/api/v1/analyses/{analysis}/file/{alias}"


@dataclass(frozen=True, kw_only=True, slots=True)
class MgnifyDownload:
    """One result file of an analysis, as ``analyses/{MGYA}/downloads`` lists it.

    ``sha1=False`` is an older analysis never back-filled with checksums: the API
    then gives ``"checksum": ""``. The alias is taken as given, unsafe ones too
    (``../../evil.txt``): the emulator must be able to serve what a client must refuse.
    """

    alias: str
    label: str
    description: str = ""
    group_type: str
    format_name: str
    format_extension: str = ""
    compression: bool = False
    size: int
    sha1: bool = True
    pipeline: str = "5.0"
    #: API v2: the file's name in its URL when it is not the alias (v2 keeps v1's alias,
    #: the URL ends in the real file name).
    real_name: str = ""
    #: API v2: ``index_files[]`` types (``fai``, ``gzi``, ``csi``), each at ``url.<type>``.
    index_types: tuple[str, ...] = ()
    #: API v2: False gives ``url: null`` (a legacy analysis without a results directory).
    has_url: bool = True
    #: API v2 ``download_group``; empty: ``all`` for legacy pipelines, else derived.
    group: str = ""

    def __post_init__(self) -> None:
        # Control characters could not go into the Content-Disposition header.
        if not self.alias or any(ord(c) < 0x20 for c in self.alias):
            raise ValueError(f"download alias must be printable and non-empty: {self.alias!r}")
        if self.size < 0:
            raise ValueError(f"download size must be >= 0, got {self.size}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "alias": self.alias,
            "label": self.label,
            "description": self.description,
            "group_type": self.group_type,
            "format_name": self.format_name,
            "format_extension": self.format_extension,
            "compression": self.compression,
            "size": self.size,
            "sha1": self.sha1,
            "pipeline": self.pipeline,
            "real_name": self.real_name,
            "index_types": list(self.index_types),
            "has_url": self.has_url,
            "group": self.group,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MgnifyDownload:
        index_types = tuple(data.get("index_types", ()))
        return cls(**{**data, "size": int(data["size"]), "index_types": index_types})


@dataclass(frozen=True, kw_only=True, slots=True)
class MgnifyAnalysis:
    """An analysis job (MGYA) of a study's run.

    ``run`` or ``assembly`` is what was analysed (an ERR or ERZ accession).
    ``status`` is emgapi's ``analysis-status``; analyses that did not pass QC have no
    downloads. ``cursor=True`` serves its downloads list with cursor pagination (as
    emgapi does for contigs), so a client's cursor lister can be tested on it.
    """

    accession: str
    study: str
    pipeline_version: str = "5.0"
    experiment_type: str = "metagenomic"
    run: str = ""
    sample: str = ""
    assembly: str = ""
    downloads: tuple[MgnifyDownload, ...] = ()
    status: str = "completed"
    complete_time: str = "2023-03-01T12:00:00"
    instrument_platform: str = "ILLUMINA"
    instrument_model: str = "Illumina NovaSeq 6000"
    cursor: bool = False
    #: API v2: the Webin account that owns a private analysis ("" = public).
    owner: str = ""

    def __post_init__(self) -> None:
        if _ANALYSIS.fullmatch(self.accession) is None:
            raise ValueError(f"analysis accession {self.accession!r} is not MGYA + 8 digits")
        if _STUDY.fullmatch(self.study) is None:
            raise ValueError(f"study accession {self.study!r} is not MGYS + 8 digits")
        aliases = [d.alias for d in self.downloads]
        if len(set(aliases)) != len(aliases):
            raise ValueError(f"duplicate download alias in {self.accession}")

    def download(self, alias: str) -> MgnifyDownload | None:
        for item in self.downloads:
            if item.alias == alias:
                return item
        return None

    def to_dict(self) -> dict[str, Any]:
        return {
            "accession": self.accession,
            "study": self.study,
            "pipeline_version": self.pipeline_version,
            "experiment_type": self.experiment_type,
            "run": self.run,
            "sample": self.sample,
            "assembly": self.assembly,
            "downloads": [d.to_dict() for d in self.downloads],
            "status": self.status,
            "complete_time": self.complete_time,
            "instrument_platform": self.instrument_platform,
            "instrument_model": self.instrument_model,
            "cursor": self.cursor,
            "owner": self.owner,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MgnifyAnalysis:
        downloads = tuple(MgnifyDownload.from_dict(d) for d in data.get("downloads", ()))
        return cls(**{**data, "downloads": downloads})


@dataclass(frozen=True, kw_only=True, slots=True)
class MgnifyStudy:
    """A study (MGYS) with its analyses; ``secondary_accession`` is the ENA ERP.

    ``biomes`` are GOLD-style lineages (``root:Host-associated:Human:Digestive system``).
    """

    accession: str
    analyses: tuple[MgnifyAnalysis, ...] = ()
    bioproject: str = ""
    secondary_accession: str = ""
    name: str = ""
    biomes: tuple[str, ...] = ()
    #: API v2: the Webin account that owns a private study ("" = public).
    owner: str = ""

    def __post_init__(self) -> None:
        if _STUDY.fullmatch(self.accession) is None:
            raise ValueError(f"study accession {self.accession!r} is not MGYS + 8 digits")
        for analysis in self.analyses:
            if analysis.study != self.accession:
                raise ValueError(f"{analysis.accession} names study {analysis.study}")

    @classmethod
    def generate(
        cls,
        accession: str = "MGYS00009001",
        analyses: int = 150,
        seed: int = 0,
        *,
        chunk_every: int = 5,
        qc_failed_every: int = 12,
        cursor: bool = False,
    ) -> MgnifyStudy:
        """A big realistic study; see ``_generate.generate_study``."""
        from ._generate import generate_study

        return generate_study(
            accession,
            analyses,
            seed,
            chunk_every=chunk_every,
            qc_failed_every=qc_failed_every,
            cursor=cursor,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "accession": self.accession,
            "analyses": [a.to_dict() for a in self.analyses],
            "bioproject": self.bioproject,
            "secondary_accession": self.secondary_accession,
            "name": self.name,
            "biomes": list(self.biomes),
            "owner": self.owner,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MgnifyStudy:
        analyses = tuple(MgnifyAnalysis.from_dict(a) for a in data.get("analyses", ()))
        biomes = tuple(data.get("biomes", ()))
        return cls(**{**data, "analyses": analyses, "biomes": biomes})
