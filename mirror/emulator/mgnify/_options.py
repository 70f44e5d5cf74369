"""What can be set about MGnify's API."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

__all__ = ["MGNIFY", "MgnifyOptions"]


@dataclass(frozen=True, kw_only=True, slots=True)
class MgnifyOptions:
    """MGnify's API v1 (``/metagenomics/api/v1``, also at ``/metagenomics/api/latest``).

    Attributes:
        public_links: absolute links name https://www.ebi.ac.uk, as the real service's
            do; False names the emulator instead (as does the emulator's
            ``local_links``).
    """

    public_links: bool = True


MGNIFY = web.AppKey("mirror_emulator_mgnify", MgnifyOptions)
