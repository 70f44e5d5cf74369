"""EnteroBase records: a strain with its assembly, its FASTA text, a generator, the live store."""

from __future__ import annotations

import datetime
import functools
import hashlib
import random
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "DATABASES",
    "EnterobaseAssembly",
    "EnterobaseStore",
    "fasta_bytes",
    "generate_assemblies",
    "iter_fasta",
]

# Database name → (barcode prefix, species of its top_species field).
DATABASES: Mapping[str, tuple[str, str]] = {
    "senterica": ("SAL", "Salmonella enterica"),
    "ecoli": ("ESC", "Escherichia coli"),
    "yersinia": ("YER", "Yersinia enterocolitica"),
    "mcatarrhalis": ("MOR", "Moraxella catarrhalis"),
    "clostridium": ("CLO", "Clostridioides difficile"),
    "vibrio": ("VIB", "Vibrio cholerae"),
    "helicobacter": ("HEL", "Helicobacter pylori"),
}
_STRAIN = re.compile(r"[A-Z]{3}_[A-Z0-9]+")
_ASSEMBLY = re.compile(r"[A-Z]{3}_[A-Z0-9]+_AS")
MIN_FASTA = 512
_LINE = 60
_ACGT = bytes.maketrans(bytes(range(256)), b"ACGT" * 64)
# Strain and assembly IDs come from different counters on the real service
# (SAL_EA9564AA's assembly is SAL_KA3160AA): never derive one from the other.
_STRAIN_OFFSET = 130_000
_COUNTRIES = ("United States", "United Kingdom", "Germany", "Brazil", "China", "Kenya")
_NICHES = ("Human", "Livestock", "Poultry", "Food", "Environment")


@dataclass(frozen=True, kw_only=True, slots=True)
class EnterobaseAssembly:
    """A strain and its (one) assembly in an EnteroBase database.

    ``release_date`` is what ``reldate=N`` filters on; ``fasta_size`` is the exact
    length of the FASTA served at the assembly's ``download_fasta_link``.
    """

    database: str = "senterica"
    assembly_barcode: str
    strain_barcode: str
    strain_name: str
    serotype: str = ""
    assembly_status: str = "Assembled"
    n50: int = 0
    top_species: str = ""
    version: int = 1
    lastmodified: str
    release_date: datetime.date
    fasta_size: int
    secondary_sample_accession: str = ""
    country: str = ""
    collection_year: int | None = None
    source_niche: str = ""

    def __post_init__(self) -> None:
        if self.database not in DATABASES:
            raise ValueError(f"unknown EnteroBase database {self.database!r}")
        if _ASSEMBLY.fullmatch(self.assembly_barcode) is None:
            raise ValueError(
                f"assembly barcode {self.assembly_barcode!r} is not like SAL_AA0001AA_AS"
            )
        if _STRAIN.fullmatch(self.strain_barcode) is None:
            raise ValueError(f"strain barcode {self.strain_barcode!r} is not like SAL_AA0001AA")
        if self.fasta_size < MIN_FASTA:
            raise ValueError(f"fasta_size must be >= {MIN_FASTA} bytes")

    def to_dict(self) -> dict[str, Any]:
        return {
            "database": self.database,
            "assembly_barcode": self.assembly_barcode,
            "strain_barcode": self.strain_barcode,
            "strain_name": self.strain_name,
            "serotype": self.serotype,
            "assembly_status": self.assembly_status,
            "n50": self.n50,
            "top_species": self.top_species,
            "version": self.version,
            "lastmodified": self.lastmodified,
            "release_date": self.release_date.isoformat(),
            "fasta_size": self.fasta_size,
            "secondary_sample_accession": self.secondary_sample_accession,
            "country": self.country,
            "collection_year": self.collection_year,
            "source_niche": self.source_niche,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EnterobaseAssembly:
        released = datetime.date.fromisoformat(data["release_date"])
        return cls(**{**data, "release_date": released})

    @classmethod
    def generate(
        cls,
        database: str = "senterica",
        records: int = 250,
        seed: int = 0,
        **options: Any,
    ) -> tuple[EnterobaseAssembly, ...]:
        """Shorthand for ``generate_assemblies`` (same arguments)."""
        return generate_assemblies(database, records, seed, **options)


def _code(index: int) -> str:
    """ID code of a barcode: AA0001AA, AA0002AA, … AA9999AA, AB0001AA, …"""
    letters, number = divmod(index, 9999)
    high, low = divmod(letters, 26)
    return f"{chr(65 + high % 26)}{chr(65 + low)}{number + 1:04d}AA"


def make_record(
    database: str,
    index: int,
    seed: int,
    *,
    released: datetime.date,
    serotypes: Sequence[str],
    fasta_size: tuple[int, int],
) -> EnterobaseAssembly:
    """Record number ``index`` of a generated database, released on ``released``."""
    prefix, species = DATABASES[database]
    rng = random.Random(f"enterobase:{seed}:{database}:{index}")
    name = rng.choice(
        (f"{released.year}K-{rng.randint(1, 9999):04d}", f"FSIS{rng.randint(10**6, 10**7 - 1)}")
    )
    clock = f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}"
    return EnterobaseAssembly(
        database=database,
        assembly_barcode=f"{prefix}_{_code(index)}_AS",
        strain_barcode=f"{prefix}_{_code(index + _STRAIN_OFFSET)}",
        strain_name=name,
        serotype=rng.choice(tuple(serotypes)) if serotypes else "",
        n50=rng.randint(50_000, 900_000),
        top_species=f"{species};{rng.uniform(85.0, 99.9):.2f}%",
        version=2 if rng.random() < 0.1 else 1,
        lastmodified=f"{released.isoformat()}T{clock}.{rng.randint(0, 999_999):06d}+00:00",
        release_date=released,
        fasta_size=rng.randint(*fasta_size),
        secondary_sample_accession=f"SRS{rng.randint(10**6, 10**7 - 1)}",
        country=rng.choice(_COUNTRIES),
        collection_year=released.year - rng.randint(0, 3),
        source_niche=rng.choice(_NICHES),
    )


def generate_assemblies(
    database: str = "senterica",
    records: int = 250,
    seed: int = 0,
    *,
    serotypes: Sequence[str] = ("Agona", "Typhimurium"),
    until: datetime.date = datetime.date(2024, 6, 1),
    days: int = 365,
    fasta_size: tuple[int, int] = (4096, 32768),
    start: int = 0,
) -> tuple[EnterobaseAssembly, ...]:
    """``records`` strains with assemblies; the same for the same arguments.

    Record i has assembly ``<PREFIX>_<code(start+i)>_AS`` (SAL_AA0001AA_AS for the
    first) and a strain barcode from another counter; it was released 1..``days`` days
    before ``until`` (never on it, so ``reldate=1`` on that day finds only what a
    test releases at runtime); FASTA sizes are drawn from ``fasta_size``.
    """
    if database not in DATABASES:
        raise ValueError(f"unknown EnteroBase database {database!r}; known: {sorted(DATABASES)}")
    if days < 1 or not MIN_FASTA <= fasta_size[0] <= fasta_size[1]:
        raise ValueError(f"need days >= 1 and {MIN_FASTA} <= fasta_size[0] <= fasta_size[1]")
    built = []
    for index in range(start, start + records):
        age = random.Random(f"enterobase-age:{seed}:{database}:{index}").randint(1, days)
        released = until - datetime.timedelta(days=age)
        built.append(
            make_record(
                database, index, seed, released=released, serotypes=serotypes, fasta_size=fasta_size
            )
        )
    return tuple(built)


def _bases_for(room: int) -> int:
    """Bases whose 60-column lines take exactly ``room`` bytes (room % 61 != 1)."""
    lines, rest = divmod(room, _LINE + 1)
    return _LINE * lines + (rest - 1 if rest else 0)


def _contigs(barcode: str, size: int) -> list[int]:
    """Contig lengths in bases so that the FASTA text is exactly ``size`` bytes."""
    rng = random.Random(f"fasta:{barcode}:{size}")
    lengths: list[int] = []
    used = 0
    while True:
        header = len(f">contig_{len(lengths) + 1}\n")
        room = size - used - header
        want = rng.randint(500, 20_000)
        if not lengths:
            want = min(want, size // 2)  # two contigs at least: the fix-up below needs one
        if want % _LINE == 0:
            want += 1  # a last line not full, so one more base costs exactly one byte
        cost = want + -(-want // _LINE)
        if room - cost >= header + 2 * (_LINE + 1):
            lengths.append(want)
            used += header + cost
            continue
        if room % (_LINE + 1) == 1:
            # No line layout fills this room; give one byte to the previous contig.
            lengths[-1] += 1
            room -= 1
        lengths.append(_bases_for(room))
        return lengths


@functools.lru_cache(maxsize=32)
def fasta_bytes(barcode: str, size: int) -> bytes:
    """The assembly's FASTA: ``>contig_N`` headers, 60-column ACGT lines, ``size`` bytes."""
    parts: list[bytes] = []
    for n, bases in enumerate(_contigs(barcode, size), start=1):
        sequence = hashlib.shake_128(f"{barcode}:{n}".encode()).digest(bases).translate(_ACGT)
        parts.append(f">contig_{n}\n".encode())
        parts.extend(sequence[i : i + _LINE] + b"\n" for i in range(0, bases, _LINE))
    text = b"".join(parts)
    assert len(text) == size, (barcode, size, len(text))
    return text


def iter_fasta(barcode: str, size: int, start: int, end: int, chunk: int) -> Iterator[memoryview]:
    view = memoryview(fasta_bytes(barcode, size))
    for begin in range(start, end, chunk):
        yield view[begin : min(end, begin + chunk)]


class EnterobaseStore:
    """The catalog's EnteroBase records plus those released while the emulator runs.

    The catalog is frozen; incremental-pull tests need a database that grows, so the
    records live here, in release order, with lookups by assembly barcode.
    """

    def __init__(self, records: Iterable[EnterobaseAssembly] = ()) -> None:
        self._records: dict[str, list[EnterobaseAssembly]] = {name: [] for name in DATABASES}
        self._assemblies: dict[tuple[str, str], EnterobaseAssembly] = {}
        self._strains: set[tuple[str, str]] = set()
        for record in records:
            self.add(record)

    def add(self, record: EnterobaseAssembly) -> None:
        key = (record.database, record.assembly_barcode)
        strain = (record.database, record.strain_barcode)
        if key in self._assemblies or strain in self._strains:
            raise ValueError(f"duplicate EnteroBase barcode {record.assembly_barcode} or strain")
        self._assemblies[key] = record
        self._strains.add(strain)
        self._records[record.database].append(record)

    def records(self, database: str) -> list[EnterobaseAssembly]:
        return self._records.get(database, [])

    def assembly(self, database: str, barcode: str) -> EnterobaseAssembly | None:
        return self._assemblies.get((database, barcode))

    def release(
        self,
        database: str,
        count: int,
        *,
        today: datetime.date,
        seed: int = 0,
        serotypes: Sequence[str] = ("Agona", "Typhimurium"),
        fasta_size: tuple[int, int] = (4096, 32768),
    ) -> tuple[EnterobaseAssembly, ...]:
        """Add ``count`` new records released ``today``; their barcodes follow the others."""
        if database not in DATABASES:
            raise ValueError(f"unknown EnteroBase database {database!r}")
        added: list[EnterobaseAssembly] = []
        index = len(self._records[database])
        while len(added) < count:
            record = make_record(
                database,
                index,
                seed,
                released=today,
                serotypes=serotypes,
                fasta_size=fasta_size,
            )
            index += 1
            taken = (database, record.assembly_barcode) in self._assemblies
            if taken or (database, record.strain_barcode) in self._strains:
                continue  # an explicit record holds this barcode already
            self.add(record)
            added.append(record)
        return tuple(added)
