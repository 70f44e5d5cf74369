"""The ``ena:`` manifest entry: accessions of any ENA kind, and the file families wanted."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final, Literal, cast

from .. import _validate as v
from .._accessions import ena_kind, is_ena
from .._exceptions import ManifestError
from .._registry import Accessions, GetOptions, route_of

__all__ = [
    "ACCESSIONS",
    "ENA_FILE_FAMILIES",
    "ENDPOINTS",
    "FIELDS",
    "EnaFamily",
    "EnaSpec",
    "parse",
]

ENA_FILE_FAMILIES = ("fastq", "submitted", "sra", "generated")
EnaFamily = Literal["fastq", "submitted", "sra", "generated"]

#: The Portal API (reports), the Browser API (records), and the file host.
ENDPOINTS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "ena_portal": "https://www.ebi.ac.uk/ena/portal/api",
        "ena_browser": "https://www.ebi.ac.uk/ena/browser/api",
        "ena_files": "https://ftp.sra.ebi.ac.uk",
    }
)
FIELDS: Final = ("accessions", "files")


@dataclass(frozen=True, kw_only=True, slots=True)
class EnaSpec:
    accessions: tuple[str, ...]
    #: File families to fetch; ``None`` means fastq for runs, submitted+generated for analyses.
    files: tuple[EnaFamily, ...] | None = None
    #: Built from ``mirror get``'s command line, where families are chosen with ``--files``
    #: (a manifest's with ``files:``): messages then name the right one. Not part of
    #: what the entry asks for, so not compared.
    from_command_line: bool = field(default=False, compare=False)


_FAMILIES: Final[Mapping[str, EnaFamily]] = {
    "fastq": "fastq",
    "submitted": "submitted",
    "sra": "sra",
    "generated": "generated",
}
_FAMILY_NAMES: Final = tuple(_FAMILIES)


def _accession(acc: str) -> str:
    if ena_kind(acc) is None:
        other = route_of(acc)
        if other is not None and other[0].key != "ena":
            title, key = other[1].title, other[0].key
            hint = f" (it is {v.article(title)} {title} accession: list it under '{key}:')"
        else:
            hint = v.case_hint(acc)
        raise v.Invalid(f"{v.show(acc)} is not an ENA accession{hint}")
    return acc


def _family(name: str) -> str:
    if name not in _FAMILIES:
        suggestion = v.suggest(name, _FAMILY_NAMES)
        if suggestion is not None:
            hint = f"did you mean {suggestion!r}?"
        else:
            hint = f"expected one of {v.one_of(_FAMILY_NAMES)}"
        raise v.Invalid(f"unknown file family {v.show(name)} ({hint})")
    return name


def parse(w: v.Where, path: v.KeyPath, body: dict[str, object]) -> EnaSpec:
    raw = v.required(w, path, body, "accessions")
    here = (*path, "accessions")
    accessions = () if raw is None else v.strings(w, here, raw, item="accession", check=_accession)
    if not accessions:
        raise w.error(here, "no accessions given")
    files: tuple[EnaFamily, ...] | None = None
    raw_files = body.get("files")
    if raw_files is not None:
        names = v.strings(w, (*path, "files"), raw_files, item="file family", check=_family)
        if not names:
            raise w.error(
                (*path, "files"),
                f"no file families given (choose from {v.one_of(_FAMILY_NAMES)}, "
                "or leave out 'files' for the defaults)",
            )
        files = tuple(_FAMILIES[name] for name in names)
    return EnaSpec(accessions=accessions, files=files)


def _families_given(files: Sequence[str], origin: str) -> tuple[EnaFamily, ...]:
    chosen: dict[EnaFamily, None] = {}
    for given in files:
        name = given.strip().lower()
        if not name:
            continue
        if name not in ENA_FILE_FAMILIES:
            raise ManifestError(
                f"--files: {v.show(given)} is not an ENA file family; expected any of "
                f"{', '.join(ENA_FILE_FAMILIES)}",
                file=origin,
            )
        chosen[cast(EnaFamily, name)] = None
    if not chosen:
        raise ManifestError(
            f"--files: no file family given; expected any of {', '.join(ENA_FILE_FAMILIES)}",
            file=origin,
        )
    return tuple(chosen)


def _check(options: GetOptions) -> None:
    if options.files is not None:
        _families_given(options.files, options.origin)


def _entry(accessions: tuple[str, ...], options: GetOptions) -> EnaSpec:
    families = None if options.files is None else _families_given(options.files, options.origin)
    return EnaSpec(accessions=accessions, files=families, from_command_line=True)


#: ``mirror get`` hands ENA every accession of one of its patterns.
ACCESSIONS: Final = Accessions(title="ENA", claims=is_ena, entry=_entry, check=_check)
