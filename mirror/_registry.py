"""Which sources exist: each source module declares a :class:`SourceKind`, listed here.

A kind says everything the rest of the product needs to know about a source: the
manifest key of its entries and how to read one, the service URLs it uses, the
credentials it needs, how to build it, and which accessions ``mirror get`` hands it.
The manifest, the engine and ``mirror get`` loop over :func:`kinds`; adding a source
is its module and one line in :data:`BUILT_IN`.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final, Generic, TypeVar

from ._credentials import Credentials
from ._seam import Source, SourceContext
from ._validate import KeyPath, Where

if TYPE_CHECKING:
    from ._listing import Listing

__all__ = [
    "BUILT_IN",
    "OTHER_ENDPOINTS",
    "OTHER_ENVIRONMENT",
    "Accessions",
    "CredentialLookup",
    "GetOptions",
    "SourceKind",
    "default_endpoints",
    "environment_names",
    "kind_of",
    "kinds",
    "no_credentials",
    "register",
    "route_of",
    "unregister",
]

S = TypeVar("S")
C = TypeVar("C")

#: Credentials the product uses outside any source (``mirror submit``).
OTHER_ENVIRONMENT: Final = ("WEBIN_USERNAME", "WEBIN_PASSWORD")
#: Services the product uses outside any source (``mirror submit``, ``mirror upload``).
#: The upload area is one for the test and the production service (ENA's Webin docs).
OTHER_ENDPOINTS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "webin": "https://wwwdev.ebi.ac.uk/ena/submit/webin-v2",
        "webin_upload": "ftps://webin2.ebi.ac.uk:21",
    }
)


@dataclass(frozen=True, kw_only=True, slots=True)
class CredentialLookup:
    """Where a source finds its credentials, and how messages name its entry."""

    credentials: Credentials
    endpoints: Mapping[str, str]
    #: The entry as messages name it: ``sources[2].enterobase``.
    where: str


@dataclass(frozen=True, kw_only=True, slots=True)
class GetOptions:
    """What ``mirror get`` was told besides the accessions."""

    #: ``--files``, as given (``None`` when not given).
    files: Sequence[str] | None
    #: What messages name as the origin (``<command line>``, an ``-i`` file).
    origin: str


def _no_options(options: GetOptions) -> None:
    return None


@dataclass(frozen=True, kw_only=True, slots=True)
class Accessions(Generic[S]):
    """The accessions ``mirror get`` routes to a source, told by their pattern alone."""

    #: The archive's name in messages: ``ENA``, ``MGnify``.
    title: str
    claims: Callable[[str], bool]
    #: The entry for the accessions claimed, in the order given, duplicates dropped.
    entry: Callable[[tuple[str, ...], GetOptions], S]
    #: Checks the options before any accession is read; raises ``ManifestError``.
    check: Callable[[GetOptions], None] = _no_options


def no_credentials(spec: object, lookup: CredentialLookup) -> None:
    """For a source of public data."""
    return None


@dataclass(frozen=True, kw_only=True, slots=True)
class SourceKind(Generic[S, C]):
    """One kind of source: its manifest entry, credentials and construction."""

    #: The manifest key of its entries: ``- ena: {...}``.
    key: str
    #: The validated entry (a frozen dataclass).
    spec: type[S]
    #: The keys an entry may have.
    fields: tuple[str, ...]
    #: Reads an entry's body (its keys already checked against ``fields``); raises
    #: ``ManifestError`` through ``Where``.
    parse: Callable[[Where, KeyPath, dict[str, object]], S]
    #: Looks up what the source needs to log in, before any request; raises
    #: ``CredentialsError`` naming ``lookup.where``.
    credentials: Callable[[S, CredentialLookup], C]
    build: Callable[[S, SourceContext, C], Source]
    #: Environment variables its credentials come from (never the manifest): the ones
    #: a user sets, as messages name them.
    environment: tuple[str, ...] = ()
    #: Further variables it reads when set (settings a user seldom needs).
    optional_environment: tuple[str, ...] = ()
    #: Service URLs by ``endpoints:`` key, with their public defaults.
    endpoints: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    accessions: Accessions[S] | None = None
    #: What ``mirror ls KEY`` lists, for a kind that can list.
    listing: Listing | None = None

    def prepare(self, spec: object, lookup: CredentialLookup) -> Callable[[SourceContext], Source]:
        """A constructor of the source for ``spec``, its credentials looked up now."""
        if not isinstance(spec, self.spec):
            raise TypeError(f"{self.key} takes a {self.spec.__name__}, not {type(spec).__name__}")
        entry, found, build = spec, self.credentials(spec, lookup), self.build

        def make(ctx: SourceContext) -> Source:
            return build(entry, ctx, found)

        return make


_added: list[SourceKind[Any, Any]] = []


#: The built-in sources, one line each: the module of ``mirror.sources`` that declares
#: its ``KIND``. Their order is the order messages list them in.
BUILT_IN: Final = (
    "ena",
    "mgnify",
    "enterobase",
    "ega_spec",
    "cram",
)


@functools.cache
def _built_in() -> tuple[SourceKind[Any, Any], ...]:
    # Imported when first asked for: the sources import the modules that import this one.
    found = []
    for name in BUILT_IN:
        kind = importlib.import_module(f"{__package__}.sources.{name}").KIND
        if not isinstance(kind, SourceKind):
            raise TypeError(f"mirror.sources.{name}.KIND is not a SourceKind")
        found.append(kind)
    return tuple(found)


def kinds() -> tuple[SourceKind[Any, Any], ...]:
    """Every source kind, built-in first, in the order messages list them."""
    return (*_built_in(), *_added)


def register(kind: SourceKind[Any, Any]) -> None:
    """Add a source kind (a plug-in, a test); its key and endpoint names must be new."""
    taken = {k.key for k in kinds()}
    if kind.key in taken:
        raise ValueError(f"a source kind {kind.key!r} is registered already")
    known = default_endpoints()
    for name, url in kind.endpoints.items():
        if name in known and known[name] != url:
            raise ValueError(f"endpoint {name!r} has another default already")
    _added.append(kind)


def unregister(kind: SourceKind[Any, Any]) -> None:
    """Remove a kind added with :func:`register`."""
    _added.remove(kind)


def kind_of(spec: object) -> SourceKind[Any, Any] | None:
    """The kind whose entries ``spec`` is one of."""
    for kind in kinds():
        if isinstance(spec, kind.spec):
            return kind
    return None


def route_of(acc: str) -> tuple[SourceKind[Any, Any], Accessions[Any]] | None:
    """The kind ``mirror get`` hands ``acc`` to, and how; ``None`` if no source claims it."""
    for kind in kinds():
        if kind.accessions is not None and kind.accessions.claims(acc):
            return kind, kind.accessions
    return None


def environment_names(*, optional: bool = True) -> tuple[str, ...]:
    """The environment variables sources read their credentials from, by source key;
    without ``optional``, only the ones a user sets (as messages name them)."""
    names = (
        name
        for kind in sorted(kinds(), key=lambda kind: kind.key)
        for name in (*kind.environment, *(kind.optional_environment if optional else ()))
    )
    return tuple(dict.fromkeys(names))


def default_endpoints() -> Mapping[str, str]:
    """Every service URL by ``endpoints:`` key: the sources', then the others."""
    merged: dict[str, str] = {}
    for kind in kinds():
        merged.update(kind.endpoints)
    merged.update(OTHER_ENDPOINTS)
    return MappingProxyType(merged)
