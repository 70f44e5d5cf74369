"""What can be set about MGnify's API."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from aiohttp import web

__all__ = ["MGNIFY", "MgnifyOptions"]


@dataclass(frozen=True, kw_only=True, slots=True)
class MgnifyOptions:
    """MGnify's API v1 (``/metagenomics/api/v1``, also at ``/metagenomics/api/latest``)
    and v2 (``/metagenomics/api/v2``).

    Attributes:
        public_links: absolute links name https://www.ebi.ac.uk, as the real service's
            do; False names the emulator instead (as does the emulator's
            ``local_links``).
        insdc_route: v2 serves ``/studies/insdc/{acc}``; False answers it 404, as a
            deployment without that route does.
        link_lifetime: seconds a v2 signed private-data link stays valid (3600 in
            emgapi-v2's ``generate_secure_link``).
        jwt_lifetime: seconds a v2 sliding JWT is accepted after it is issued or
            refreshed (django-ninja-jwt: ``exp``).
        jwt_refresh_lifetime: seconds after login within which a token may be
            refreshed (``refresh_exp``; a refresh keeps it).
        page_size_max: v2's page size cap, applied silently.
        accounts: Webin accounts (user → password) that ``POST /auth/sliding`` accepts.
    """

    public_links: bool = True
    insdc_route: bool = True
    link_lifetime: float = 3600.0
    jwt_lifetime: float = 86400.0
    jwt_refresh_lifetime: float = 86400.0
    page_size_max: int = 100
    accounts: Mapping[str, str] = field(
        default_factory=lambda: MappingProxyType({"Webin-1001": "emulated-webin-password"})
    )


MGNIFY = web.AppKey("mirror_emulator_mgnify", MgnifyOptions)
