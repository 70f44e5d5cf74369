"""MGnify API v2's state on the emulator: accounts' tokens, the link-signing clock and
secret, and the names and labels v2 gives the catalog's files (see :mod:`._v2`)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from aiohttp import web

from .._context import Context
from ._options import MgnifyOptions
from ._records import MgnifyAnalysis, MgnifyDownload, MgnifyStudy, download_key

__all__ = [
    "MGNIFY_V2",
    "RESULTS_ROOT",
    "MgnifyV2State",
    "download_type",
    "file_path",
    "file_type",
    "index_size",
    "is_legacy",
    "v2_pipeline",
]

#: Where public results live on the file host (ftp.ebi.ac.uk's tree).
RESULTS_ROOT = "/pub/databases/metagenomics/mgnify_results/"


def index_size(size: int) -> int:
    """The size of an index file (``.fai``…) of a download of ``size`` bytes."""
    return 24 + size // 64


@dataclass(frozen=True, slots=True)
class _File:
    key: str
    size: int


@dataclass(kw_only=True, slots=True)
class MgnifyV2State:
    """What v2 keeps between requests: its clock, the signing secret, test switches."""

    options: MgnifyOptions
    offset: float = 0.0
    secret: bytes = b"emulated MGnify private-data and JWT secret"
    #: ``(MGYA, alias)`` whose v1 listing carries a wrong SHA1.
    wrong_sha1: set[tuple[str, str]] = field(default_factory=set)
    #: Request targets (path and query, as sent) of private-data requests.
    private_targets: list[str] = field(default_factory=list)
    #: One-shot clock moves: (path substring, seconds) applied when such a request ends.
    advance_after: list[tuple[str, float]] = field(default_factory=list)
    _files: dict[tuple[str, str], _File] | None = None
    _ids: itertools.count[int] = field(default_factory=itertools.count)

    def now(self) -> float:
        return time.time() + self.offset

    # -- JWT (django-ninja-jwt sliding tokens) ------------------------------------------

    def issue(self, user: str, refresh_exp: int | None = None) -> str:
        now = self.now()
        payload = {
            "token_type": "sliding",
            "exp": int(now + self.options.jwt_lifetime),
            "iat": int(now),
            "jti": f"{next(self._ids):032x}",
            "refresh_exp": (
                refresh_exp
                if refresh_exp is not None
                else int(now + self.options.jwt_refresh_lifetime)
            ),
            "username": user,
        }
        head = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
        body = _b64(json.dumps(payload).encode())
        signature = hmac.new(self.secret, f"{head}.{body}".encode(), hashlib.sha256).digest()
        return f"{head}.{body}.{_b64(signature)}"

    def decode(self, token: str) -> dict[str, Any] | None:
        """The payload of a token this emulator signed, else None (expiry not checked)."""
        parts = token.split(".")
        if len(parts) != 3:
            return None
        signed = hmac.new(self.secret, f"{parts[0]}.{parts[1]}".encode(), hashlib.sha256)
        try:
            if not hmac.compare_digest(_unb64(parts[2]), signed.digest()):
                return None
            payload = json.loads(_unb64(parts[1]))
        except (ValueError, UnicodeDecodeError):
            return None
        return payload if isinstance(payload, dict) else None

    # -- signed links ------------------------------------------------------------------

    def sign(self, path: str) -> str:
        """``?expires=&token=`` for ``path`` (relative to ``private-data/``, as sent)."""
        expires = str(int(self.now() + self.options.link_lifetime))
        token = hmac.new(self.secret, (path + expires).encode(), hashlib.sha256).hexdigest()
        return f"?expires={expires}&token={token}"

    def files(self, ctx: Context) -> dict[tuple[str, str], _File]:
        """Every v2 file by (``private``/``public``, path as in its URL)."""
        if self._files is None:
            found: dict[tuple[str, str], _File] = {}
            for study in ctx.catalog.mgnify_studies:
                for analysis in study.analyses:
                    private = bool(analysis.owner or study.owner)
                    where = "private" if private else "public"
                    for item in analysis.downloads:
                        path = file_path(study, analysis, item, private=private)
                        key = download_key(analysis.accession, item.alias)
                        found[(where, path)] = _File(key, item.size)
                        for kind in item.index_types:
                            found[(where, f"{path}.{kind}")] = _File(
                                f"{key}.{kind}", index_size(item.size)
                            )
            self._files = found
        return self._files

    def ended(self, path: str) -> None:
        for i, (part, seconds) in enumerate(self.advance_after):
            if part in path:
                del self.advance_after[i]
                self.offset += seconds
                return


MGNIFY_V2 = web.AppKey("mirror_emulator_mgnify_v2", MgnifyV2State)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def file_path(
    study: MgnifyStudy, analysis: MgnifyAnalysis, item: MgnifyDownload, *, private: bool
) -> str:
    """A download's path under the results root, percent-encoded as its URL carries it.

    ``=`` and ``/`` inside a file name are sent encoded (``%3D``, ``%2F``) and ``+``
    as is; a private path has a ``//`` as study paths sometimes do: a client that
    normalises or re-encodes the URL no longer matches its signature.
    """
    name = quote(item.real_name or item.alias, safe="+")
    sep = "//" if private else "/"
    return f"{study.accession[:7]}/{study.accession}{sep}{analysis.accession}/{name}"


def v2_pipeline(version: str) -> str:
    """v1's ``5.0`` as v2 spells it: ``V5`` (``4.1``: ``V4.1``)."""
    return "V" + version.removesuffix(".0")


def is_legacy(analysis: MgnifyAnalysis) -> bool:
    try:
        return float(analysis.pipeline_version) < 6
    except ValueError:
        return False


_TYPES = (
    ("taxonomic", "Taxonomic analysis"),
    ("functional", "Functional analysis"),
    ("sequence", "Sequence data"),
    ("statistics", "Statistics"),
    ("non-coding", "non-coding RNAs"),
    ("quality", "Quality control"),
)
_FILE_TYPES = {"fasta": "fasta", "faa": "fasta", "fa": "fasta", "tsv": "tsv", "tab": "tsv"}


def download_type(group_type: str) -> str:
    folded = group_type.casefold()
    return next((name for start, name in _TYPES if folded.startswith(start)), "Other")


def file_type(extension: str) -> str:
    ext = extension.casefold()
    return _FILE_TYPES.get(ext, ext if ext in ("biom", "csv", "json") else "other")


# --------------------------------------------------------------------------- requests
