"""The Emulator: one aiohttp site per emulated host, each on its own loopback port."""

from __future__ import annotations

import dataclasses
import datetime
import os
import socket
import ssl
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType
from typing import Any

from aiohttp import web

from ._catalog import Catalog
from ._context import CONTEXT, Clock, Context
from ._faults import Fault, FaultSet
from ._log import LogEntry, RequestLog
from ._middleware import record
from ._options import HOSTS, FilesOptions, TlsOptions
from .cram._controls import CramControls
from .cram._registry import CRAM_PREFIX, build_cram_app
from .ega._controls import EgaControls
from .ega._metadata import (
    METADATA_PREFIX,
    OUTBOX,
    OutboxControls,
    OutboxOptions,
    OutboxState,
    build_metadata_app,
)
from .ega._options import EgaOptions
from .ega._rest import ACCESS_PREFIX, DATA_PREFIX, DOWNLOAD_PREFIX, TOKEN_PATH, add_ega_routes
from .ega._state import EGA, EgaState
from .ena._browser import BROWSER_PREFIX, TAXONOMY_PREFIX, build_browser_app, build_taxonomy_app
from .ena._controls import EnaControls
from .ena._files import add_file_routes
from .ena._options import ENA, EnaOptions, EnaState
from .ena._portal import PORTAL_PREFIX, build_portal_app
from .enterobase._api import ENTEROBASE_PREFIX, add_enterobase_routes
from .enterobase._controls import EnterobaseControls
from .enterobase._options import ENTEROBASE, EnterobaseOptions, EnterobaseState
from .mgnify._api import MGNIFY_LATEST, MGNIFY_PREFIX, build_mgnify_app
from .mgnify._controls import MgnifyControls
from .mgnify._options import MGNIFY, MgnifyOptions
from .webin._api import DROPBOX_PREFIX, WEBIN_PREFIX, build_dropbox_app, build_webin_app
from .webin._controls import WebinControls
from .webin._options import WebinOptions
from .webin._state import WEBIN, WebinState

__all__ = ["Emulator"]


def _www(app: web.Application) -> None:
    app.add_subapp(PORTAL_PREFIX, build_portal_app())
    app.add_subapp(MGNIFY_PREFIX, build_mgnify_app())
    app.add_subapp(MGNIFY_LATEST, build_mgnify_app())
    app.add_subapp(CRAM_PREFIX, build_cram_app())
    app.add_subapp(WEBIN_PREFIX, build_webin_app())
    app.add_subapp(DROPBOX_PREFIX, build_dropbox_app())
    app.add_subapp(BROWSER_PREFIX, build_browser_app())
    app.add_subapp(TAXONOMY_PREFIX, build_taxonomy_app())


def _ega(app: web.Application) -> None:
    add_ega_routes(app)
    app.add_subapp(METADATA_PREFIX, build_metadata_app())


# Each emulated host is a separate app on a separate port, because the engine
# rate-limits per host:port as it must against the real services. More services join
# a host by mounting their app here; more hosts are more entries. EGA's access,
# download and Data API servers share one host: its rate limits are per user, not
# per server.
_HOSTS: Mapping[str, Callable[[web.Application], None]] = {
    "www": _www,
    "ftp": add_file_routes,
    "enterobase": add_enterobase_routes,
    "ega": _ega,
}
assert tuple(_HOSTS) == HOSTS
# Public endpoint name → (host, path prefix on that host); the names are the
# engine's endpoint keys.
_ENDPOINTS: Mapping[str, tuple[str, str]] = {
    "ena_portal": ("www", PORTAL_PREFIX),
    "ena_files": ("ftp", ""),
    "mgnify": ("www", MGNIFY_PREFIX),
    "enterobase": ("enterobase", ENTEROBASE_PREFIX),
    "ega_access": ("ega", ACCESS_PREFIX),
    "ega_download": ("ega", DOWNLOAD_PREFIX),
    "ega_auth": ("ega", TOKEN_PATH),
    "ega_data": ("ega", DATA_PREFIX),
    "ega_metadata": ("ega", METADATA_PREFIX),
    "cram_registry": ("www", CRAM_PREFIX),
    "webin": ("www", WEBIN_PREFIX),
    "ena_browser": ("www", BROWSER_PREFIX),
}
# Where POST bodies are never logged, by host: path prefixes. EGA's bodies carry
# passwords and rekeys; Webin's are whole submission documents (unpublished metadata,
# up to 15 MB) that the log has no use for.
_FORMLESS: Mapping[str, tuple[str, ...]] = {"ega": ("/",), "www": (WEBIN_PREFIX, DROPBOX_PREFIX)}
_SHUTDOWN_TIMEOUT = 2.0
# Request bodies up to this size: Webin takes documents of up to 15 MB (aiohttp's
# default is 1 MiB), and a Portal includeAccessions batch can be long too.
_MAX_BODY = 32 * 1024 * 1024


class Emulator:
    """The archives on loopback, one port per host.

    ``www``: ENA's Portal API, CRAM reference registry and Webin submission services
    (REST V2 and the drop-box), and MGnify's v1 API; ``ftp``: ENA's file tree;
    ``enterobase``: EnteroBase's API v2.0 and its FASTA downloads; ``ega``: EGA's REST
    API v2 (access and download servers), its current Data API (token, metadata,
    plain files) and its metadata API for the Live Outbox (whose SFTP server is not
    part of this emulator). Use as ``async with Emulator(Catalog.demo()) as emu:`` and point
    clients at ``emu.endpoints[...]`` (``ena_portal``, ``ena_files``, ``mgnify``,
    ``enterobase``, ``ega_access``, ``ega_download``, ``ega_auth``, ``ega_data``,
    ``ega_metadata``, ``cram_registry``, ``webin``).
    Faults can be added and cleared while it runs; ``emu.log`` lists every request in
    arrival order. Each service has its options (``ena=EnaOptions(...)``, ...) and
    its controls for tests (``emu.ena``, ``emu.cram``, ``emu.webin``, ``emu.mgnify``,
    ``emu.enterobase``, ``emu.ega``, ``emu.outbox``).

    Args:
        catalog: what the archives hold; ``Catalog.demo()`` when None.
        ena: ENA's Portal API (its rate limit). Each service's options default to
            that class's defaults (here ``EnaOptions()``) when None.
        mgnify: MGnify's API (public or local links).
        enterobase: EnteroBase's tokens, rate limit and links.
        ega: EGA's accounts, grants, lifetimes, range support.
        webin: Webin's accounts and how long queued submissions stay pending.
        outbox: EGA's metadata API for the Live Outbox (display names, wrong checksums).
        files: how every file host sends bodies (bandwidth cap, range support).
        faults: initial fault rules (``emu.faults`` changes them later).
        seed: seed of the RNG that decides ``Fault.probability`` (and EGA's ids).
        log_path: also append each LogEntry as a JSON line here (flushed per line).
        keep_log: keep entries in memory for ``emu.log`` (off for huge benchmarks).
        ports: fixed port per host name (``{"www": 8080, "ftp": 8081,
            "enterobase": 8082, "ega": 8083}``); 0 = any.
        host: the address to bind, loopback by default.
        tls: serve HTTPS (on all hosts, or on ``TlsOptions.hosts``) instead of HTTP.
        local_links: absolute links name the emulator's own hosts, never the public
            ones: ENA's ``*_ftp`` values become ``127.0.0.1:PORT/vol1/…`` and Browser
            XML links name its Portal; MGnify's and EnteroBase's links too. For
            clients that follow the links they are given.
        today: the emulator's calendar day (what EnteroBase's ``reldate`` counts back
            from, the date of Webin's receipts); None follows the real UTC date.
    """

    def __init__(
        self,
        catalog: Catalog | None = None,
        *,
        ena: EnaOptions | None = None,
        mgnify: MgnifyOptions | None = None,
        enterobase: EnterobaseOptions | None = None,
        ega: EgaOptions | None = None,
        webin: WebinOptions | None = None,
        outbox: OutboxOptions | None = None,
        files: FilesOptions | None = None,
        faults: Iterable[Fault] = (),
        seed: int = 0,
        log_path: str | os.PathLike[str] | None = None,
        keep_log: bool = True,
        ports: Mapping[str, int] | None = None,
        host: str = "127.0.0.1",
        tls: TlsOptions | None = None,
        local_links: bool = False,
        today: datetime.date | None = None,
    ) -> None:
        self.catalog = catalog if catalog is not None else Catalog.demo()
        ena = ena or EnaOptions()
        mgnify = mgnify or MgnifyOptions()
        enterobase = enterobase or EnterobaseOptions()
        ega = ega or EgaOptions()
        webin = webin or WebinOptions()
        self.faults = FaultSet(faults, seed=seed)
        self._log = RequestLog(log_path, keep=keep_log)
        self._clock = Clock(today)
        self._context = Context(
            catalog=self.catalog,
            faults=self.faults,
            log=self._log,
            files=files,
            clock=self._clock,
            local_links=local_links,
        )
        if local_links:
            mgnify = dataclasses.replace(mgnify, public_links=False)
            enterobase = dataclasses.replace(enterobase, public_links=False)
        ega_state = EgaState(self.catalog.ega_datasets, ega, seed=seed)
        enterobase_state = EnterobaseState(enterobase, self.catalog.enterobase_assemblies)
        webin_state = WebinState(webin)
        outbox_state = OutboxState(outbox or OutboxOptions())
        # Each service's state, under its own key on every host's app.
        self._states: tuple[tuple[web.AppKey[Any], object], ...] = (
            (ENA, EnaState(ena)),
            (MGNIFY, mgnify),
            (ENTEROBASE, enterobase_state),
            (EGA, ega_state),
            (WEBIN, webin_state),
            (OUTBOX, outbox_state),
        )
        #: ENA's file host: the files, their bytes, MD5s and URLs.
        self.ena = EnaControls(self.catalog, lambda: self.endpoints["ena_files"])
        #: The CRAM reference registry's sequences.
        self.cram = CramControls(self.catalog)
        #: Webin's counters, submissions and submitted objects.
        self.webin = WebinControls(webin_state)
        #: MGnify's downloads, their bytes and SHA1s.
        self.mgnify = MgnifyControls(self.catalog)
        #: EnteroBase's records, new releases, FASTA bytes.
        self.enterobase = EnterobaseControls(enterobase_state, self._clock)
        #: EGA's files, streams, tickets, sessions, tokens and its clock.
        self.ega = EgaControls(self.catalog, ega_state)
        #: The Live Outbox's files and its metadata API's switches.
        self.outbox = OutboxControls(self.catalog, outbox_state)
        unknown = set(ports or {}) - set(_HOSTS)
        if unknown:
            raise ValueError(f"unknown host(s) {sorted(unknown)}; hosts are {sorted(_HOSTS)}")
        self._ports = {name: (ports or {}).get(name, 0) for name in _HOSTS}
        self._tls: ssl.SSLContext | None = None
        self._tls_hosts: frozenset[str] = frozenset()
        if tls is not None:
            self._tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            self._tls.load_cert_chain(tls.cert, tls.key)
            self._tls_hosts = tls.served
        self._host = host
        self._runners: dict[str, web.AppRunner] = {}
        self._bound: dict[str, int] = {}

    async def start(self) -> None:
        if self._runners:
            raise RuntimeError("emulator already started")
        self._log.open_file()
        try:
            for name, register in _HOSTS.items():
                middleware = record(name, formless=_FORMLESS.get(name, ()))
                app = web.Application(middlewares=[middleware], client_max_size=_MAX_BODY)
                app[CONTEXT] = self._context
                for key, state in self._states:
                    app[key] = state
                register(app)
                runner = web.AppRunner(
                    app, access_log=None, handle_signals=False, shutdown_timeout=_SHUTDOWN_TIMEOUT
                )
                await runner.setup()
                self._runners[name] = runner
                sock = _listen(self._host, self._ports[name])
                self._bound[name] = sock.getsockname()[1]
                tls = self._tls if name in self._tls_hosts else None
                await web.SockSite(runner, sock, backlog=1024, ssl_context=tls).start()
                scheme = "https" if tls is not None else "http"
                self._context.bases[name] = f"{scheme}://{self._host}:{self._bound[name]}"
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        runners, self._runners = self._runners, {}
        for runner in runners.values():
            await runner.cleanup()
        self._bound.clear()
        self._context.bases.clear()
        self._log.close_file()

    async def __aenter__(self) -> Emulator:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def ports(self) -> dict[str, int]:
        """Bound port per host name (``www``, ``ftp``, ``enterobase``, ``ega``); empty until
        started."""
        return dict(self._bound)

    @property
    def endpoints(self) -> dict[str, str]:
        """Base URLs: ``ena_portal`` (…/ena/portal/api), ``ena_files`` (the vol1 root),
        ``mgnify`` (…/metagenomics/api/v1), ``enterobase`` (…/api/v2.0), ``ega_access``
        (…/ega/rest/access/v2), ``ega_download`` (…/ega/rest/download/v2), ``ega_auth``
        (…/ega-openid-connect-server/token), ``ega_data`` (…/v2), ``ega_metadata``
        (…/ega-metadata: ``/datasets/{EGAD}/files``), ``cram_registry``
        (…/ena/cram), ``webin`` (…/ena/submit/webin-v2) and ``ena_browser``
        (…/ena/browser/api); ``https://`` for the hosts served over TLS. These are
        the engine's endpoint keys; see ``taxonomy_url`` for ENA's taxonomy service."""
        if not self._bound:
            raise RuntimeError("emulator not started")
        bases = self._context.bases
        return {name: f"{bases[host]}{prefix}" for name, (host, prefix) in _ENDPOINTS.items()}

    @property
    def taxonomy_url(self) -> str:
        """ENA's taxonomy REST service (…/ena/taxonomy/rest), which the engine does not use."""
        return self.endpoints["ena_browser"].removesuffix(BROWSER_PREFIX) + TAXONOMY_PREFIX

    @property
    def log(self) -> list[LogEntry]:
        """Finished requests in arrival order (a snapshot list)."""
        return self._log.entries()

    def clear_log(self) -> None:
        self._log.clear()

    async def wait_idle(self) -> None:
        """Return once no request is in flight, so ``log`` has every request so far.

        A client can read the last byte before the server's handler returns; tests
        that inspect the log right after a download await this first.
        """
        await self._log.wait_idle()

    @property
    def today(self) -> datetime.date:
        """The emulator's calendar day; EnteroBase's ``reldate`` counts back from it."""
        return self._clock.today

    def set_today(self, today: datetime.date | None) -> None:
        """Move the emulator's clock (None: follow the real UTC date again)."""
        self._clock.set(today)


def _listen(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        # A fixed --www-port/--ftp-port must be reusable right after a restart.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    return sock
