"""What a test needs about EnteroBase: its records, new releases, the FASTA it serves."""

from __future__ import annotations

from collections.abc import Sequence

from .._context import Clock
from ._options import EnterobaseState
from ._records import EnterobaseAssembly, fasta_bytes

__all__ = ["EnterobaseControls"]


class EnterobaseControls:
    """``emu.enterobase``: the running database, which grows by ``release``."""

    def __init__(self, state: EnterobaseState, clock: Clock) -> None:
        self._state = state
        self._clock = clock

    def records(self, database: str = "senterica") -> list[EnterobaseAssembly]:
        """The records the running EnteroBase holds, runtime releases included."""
        return list(self._state.store.records(database))

    def release(
        self,
        database: str = "senterica",
        count: int = 1,
        *,
        seed: int = 0,
        serotypes: Sequence[str] = ("Agona", "Typhimurium"),
        fasta_size: tuple[int, int] = (4096, 32768),
    ) -> tuple[EnterobaseAssembly, ...]:
        """Release ``count`` new records today, so that ``reldate=1`` finds just them."""
        return self._state.store.release(
            database,
            count,
            today=self._clock.today,
            seed=seed,
            serotypes=serotypes,
            fasta_size=fasta_size,
        )

    def fasta(self, database: str, barcode: str) -> bytes:
        """The FASTA served for an assembly barcode (``SAL_AA0001AA_AS``)."""
        record = self._state.store.assembly(database, barcode)
        if record is None:
            raise KeyError(f"{database}/{barcode}")
        return fasta_bytes(barcode, record.fasta_size)
