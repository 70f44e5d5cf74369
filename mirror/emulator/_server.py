"""The Emulator: one aiohttp site per emulated host, each on its own loopback port."""

from __future__ import annotations

import datetime
import os
import socket
import ssl
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import TracebackType

from aiohttp import web

from ._catalog import Catalog
from ._content import content_bytes, md5_of, sha1_of
from ._context import CONTEXT, Context, Options
from ._faults import Fault, FaultSet
from ._log import LogEntry, RequestLog
from ._middleware import record
from .cram._registry import CRAM_PREFIX, build_cram_app
from .ega._controls import EgaControls
from .ega._rest import ACCESS_PREFIX, DATA_PREFIX, DOWNLOAD_PREFIX, TOKEN_PATH, add_ega_routes
from .ega._state import DEFAULT_EGA_USERS, EgaState
from .ena._browser import BROWSER_PREFIX, TAXONOMY_PREFIX, build_browser_app, build_taxonomy_app
from .ena._controls import EnaControls
from .ena._files import add_file_routes
from .ena._layout import FTP_HOST
from .ena._portal import PORTAL_PREFIX, build_portal_app
from .ena._records import EnaFile
from .enterobase._api import ENTEROBASE_PREFIX, add_enterobase_routes
from .enterobase._records import Clock, EnterobaseAssembly, fasta_bytes
from .mgnify._api import MGNIFY_LATEST, MGNIFY_PREFIX, build_mgnify_app
from .mgnify._records import MgnifyDownload, download_key
from .webin._api import DROPBOX_PREFIX, WEBIN_PREFIX, build_dropbox_app, build_webin_app
from .webin._records import DEFAULT_WEBIN_ACCOUNTS
from .webin._state import WebinState

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


# Each emulated host is a separate app on a separate port, because the engine
# rate-limits per host:port as it must against the real services. More services join
# a host by mounting their app here; more hosts are more entries. EGA's access,
# download and Data API servers share one host: its rate limits are per user, not
# per server.
_HOSTS: Mapping[str, Callable[[web.Application], None]] = {
    "www": _www,
    "ftp": add_file_routes,
    "enterobase": add_enterobase_routes,
    "ega": add_ega_routes,
}
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
    "cram_registry": ("www", CRAM_PREFIX),
    "webin": ("www", WEBIN_PREFIX),
    "ena_browser": ("www", BROWSER_PREFIX),
}
_SHUTDOWN_TIMEOUT = 2.0
# Request bodies up to this size: Webin takes documents of up to 15 MB (aiohttp's
# default is 1 MiB), and a Portal includeAccessions batch can be long too.
_MAX_BODY = 32 * 1024 * 1024


class Emulator(EgaControls, EnaControls):
    """The archives on loopback, one port per host.

    ``www``: ENA's Portal API, CRAM reference registry and Webin submission services
    (REST V2 and the drop-box), and MGnify's v1 API; ``ftp``: ENA's file tree;
    ``enterobase``: EnteroBase's API v2.0 and its FASTA downloads; ``ega``: EGA's REST
    API v2 (access and download servers) and its current Data API (token, metadata,
    plain files). Use as ``async with Emulator(Catalog.demo()) as emu:`` and point
    clients at ``emu.endpoints[...]`` (``ena_portal``, ``ena_files``, ``mgnify``,
    ``enterobase``, ``ega_access``, ``ega_download``, ``ega_auth``, ``ega_data``,
    ``cram_registry``, ``webin``).
    Faults can be added and cleared while it runs; ``emu.log`` lists every request in
    arrival order.

    Args:
        catalog: what ENA holds; ``Catalog.demo()`` when None.
        faults: initial fault rules (``emu.faults`` changes them later).
        seed: seed of the RNG that decides ``Fault.probability``.
        log_path: also append each LogEntry as a JSON line here (flushed per line).
        keep_log: keep entries in memory for ``emu.log`` (off for huge benchmarks).
        portal_rate_limit: Portal API requests per client in any 1 s window before
            429 (ENA's documented 50); None disables.
        portal_retry_after: seconds for a Retry-After on those 429s; ENA sends none.
        bandwidth: cap every file-host response at this many bytes/s.
        range_support: False makes the file host ignore Range (200, full body) and
            send ``Accept-Ranges: none``.
        ports: fixed port per host name (``{"www": 8080, "ftp": 8081,
            "enterobase": 8082, "ega": 8083}``); 0 = any.
        host: the address to bind, loopback by default.
        mgnify_public_links: MGnify's absolute links name https://www.ebi.ac.uk, as the
            real service's do; False names the emulator instead.
        enterobase_tokens: API tokens EnteroBase accepts (Basic user name).
        enterobase_expired_tokens: tokens refused with 401 as expired ones are.
        enterobase_rate_limit: EnteroBase requests per client in any 1 s window
            before 503 (its documented 3); None disables.
        enterobase_public_links: EnteroBase's next and download links name
            http://enterobase.warwick.ac.uk, as the real ones do; False: the emulator.
        today: the emulator's calendar day (what ``reldate`` counts back from);
            None follows the real UTC date.
        ega_users: EGA accounts, user name → password (both protocols).
        ega_grants: user → the datasets it may access; None: everyone, everything.
        ega_session_idle: seconds a REST v2 session lives unused (EGA: 10 minutes).
        ega_token_ttl: lifetime in seconds of a Data API bearer token.
        ega_ticket_ttl: seconds before an undownloaded ticket is removed (7 days).
        ega_range_support: False makes REST v2 streams ignore Range (200, whole);
            the Data API always honours it.
        ega_wrong_results: file IDs whose ``/results`` report a wrong MD5.
        webin_accounts: Webin submission accounts, name (``Webin-…``) → password.
        webin_poll_pending: polls of a queued submission answered 202 before its
            receipt comes (each submission's own count).
        tls_cert, tls_key: PEM certificate chain and key: serve HTTPS (the archives'
            own transport) instead of HTTP; clients trust the issuing CA, e.g. through
            ``SSL_CERT_FILE``. The certificate should name 127.0.0.1 (or ``host``).
        tls_hosts: the hosts that serve HTTPS when a certificate is given (default:
            all); the others stay on HTTP, for clients that fetch ``http://`` links.
        local_links: absolute links name the emulator's own hosts, never the public
            ones: ENA's ``*_ftp`` values become ``127.0.0.1:PORT/vol1/…`` and Browser
            XML links name its Portal; MGnify's and EnteroBase's links too. For
            clients that follow the links they are given.
    """

    def __init__(
        self,
        catalog: Catalog | None = None,
        *,
        faults: Iterable[Fault] = (),
        seed: int = 0,
        log_path: str | os.PathLike[str] | None = None,
        keep_log: bool = True,
        portal_rate_limit: int | None = 50,
        portal_retry_after: int | None = None,
        bandwidth: int | None = None,
        range_support: bool = True,
        ports: Mapping[str, int] | None = None,
        host: str = "127.0.0.1",
        mgnify_public_links: bool = True,
        enterobase_tokens: Iterable[str] = ("test-token",),
        enterobase_expired_tokens: Iterable[str] = (),
        enterobase_rate_limit: int | None = 3,
        enterobase_public_links: bool = True,
        today: datetime.date | None = None,
        ega_users: Mapping[str, str] = DEFAULT_EGA_USERS,
        ega_grants: Mapping[str, Iterable[str]] | None = None,
        ega_session_idle: float = 600.0,
        ega_token_ttl: float = 3600.0,
        ega_ticket_ttl: float = 7 * 86400.0,
        ega_range_support: bool = True,
        ega_wrong_results: Iterable[str] = (),
        webin_accounts: Mapping[str, str] = DEFAULT_WEBIN_ACCOUNTS,
        webin_poll_pending: int = 2,
        tls_cert: str | os.PathLike[str] | None = None,
        tls_key: str | os.PathLike[str] | None = None,
        tls_hosts: Iterable[str] | None = None,
        local_links: bool = False,
    ) -> None:
        self.catalog = catalog if catalog is not None else Catalog.demo()
        self.faults = FaultSet(faults, seed=seed)
        self._log = RequestLog(log_path, keep=keep_log)
        options = Options(
            bandwidth=bandwidth,
            range_support=range_support,
            portal_rate_limit=portal_rate_limit,
            portal_retry_after=portal_retry_after,
            mgnify_public_links=mgnify_public_links and not local_links,
            enterobase_public_links=enterobase_public_links and not local_links,
            enterobase_tokens=frozenset(enterobase_tokens),
            enterobase_expired_tokens=frozenset(enterobase_expired_tokens),
            enterobase_rate_limit=enterobase_rate_limit,
            local_links=local_links,
        )
        self._clock = Clock(today)
        ega = EgaState(
            self.catalog.ega_datasets,
            users=ega_users,
            grants=ega_grants,
            session_idle=ega_session_idle,
            token_ttl=ega_token_ttl,
            ticket_ttl=ega_ticket_ttl,
            range_support=ega_range_support,
            wrong_results=ega_wrong_results,
            seed=seed,
        )
        self._context = Context(
            catalog=self.catalog,
            faults=self.faults,
            log=self._log,
            options=options,
            clock=self._clock,
            ega=ega,
            webin=WebinState(webin_accounts, poll_pending=webin_poll_pending),
        )
        unknown = set(ports or {}) - set(_HOSTS)
        if unknown:
            raise ValueError(f"unknown host(s) {sorted(unknown)}; hosts are {sorted(_HOSTS)}")
        self._ports = {name: (ports or {}).get(name, 0) for name in _HOSTS}
        self._tls: ssl.SSLContext | None = None
        if (tls_cert is None) != (tls_key is None):
            raise ValueError("tls_cert and tls_key go together")
        if tls_cert is not None and tls_key is not None:
            self._tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            self._tls.load_cert_chain(tls_cert, tls_key)
        self._tls_hosts = frozenset(_HOSTS if tls_hosts is None else tls_hosts)
        if self._tls_hosts - set(_HOSTS):
            raise ValueError(
                f"unknown TLS host(s) {sorted(self._tls_hosts - set(_HOSTS))}; "
                f"hosts are {sorted(_HOSTS)}"
            )
        self._host = host
        self._runners: dict[str, web.AppRunner] = {}
        self._bound: dict[str, int] = {}

    async def start(self) -> None:
        if self._runners:
            raise RuntimeError("emulator already started")
        self._log.open_file()
        try:
            for name, register in _HOSTS.items():
                app = web.Application(middlewares=[record(name)], client_max_size=_MAX_BODY)
                app[CONTEXT] = self._context
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
        (…/ega-openid-connect-server/token), ``ega_data`` (…/v2), ``cram_registry``
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

    def file(self, path: str) -> EnaFile:
        """The catalog file at ``path``: ``vol1/…``, ``/vol1/…``, or any URL of it."""
        key = path
        _scheme, sep, rest = key.partition("://")
        if sep:
            key = rest.partition("/")[2]
        key = key.removeprefix(FTP_HOST).lstrip("/")
        found = self.catalog.file(key)
        if found is None:
            raise KeyError(path)
        return found

    def file_bytes(self, path: str) -> bytes:
        """The exact bytes served for ``path``; for small files."""
        found = self.file(path)
        return content_bytes(found.path, found.size)

    def file_md5(self, path: str) -> str:
        """MD5 hex of ``path``'s bytes, as the reports give it (cached)."""
        found = self.file(path)
        return md5_of(found.path, found.size)

    def file_url(self, path: str) -> str:
        """``path`` on the emulated file host, e.g. for a direct GET."""
        return f"{self.endpoints['ena_files']}/{self.file(path).path}"

    # MGnify.

    def mgnify_download(self, analysis: str, alias: str) -> MgnifyDownload:
        """A download of an MGnify analysis (MGYA…) by its alias."""
        found = self.catalog.mgnify_analysis(analysis)
        item = found.download(alias) if found is not None else None
        if item is None:
            raise KeyError(f"{analysis}/{alias}")
        return item

    def mgnify_bytes(self, analysis: str, alias: str) -> bytes:
        """The exact bytes served at ``analyses/{analysis}/file/{alias}``."""
        return content_bytes(
            download_key(analysis, alias), self.mgnify_download(analysis, alias).size
        )

    def mgnify_sha1(self, analysis: str, alias: str) -> str:
        """SHA1 hex of a download's bytes, listed or not (the listing omits un-back-filled ones)."""
        return sha1_of(download_key(analysis, alias), self.mgnify_download(analysis, alias).size)

    # EnteroBase.

    @property
    def today(self) -> datetime.date:
        """The emulator's calendar day; EnteroBase's ``reldate`` counts back from it."""
        return self._clock.today

    def set_today(self, today: datetime.date | None) -> None:
        """Move the emulator's clock (None: follow the real UTC date again)."""
        self._clock.set(today)

    def enterobase_records(self, database: str = "senterica") -> list[EnterobaseAssembly]:
        """The records the running EnteroBase holds, runtime releases included."""
        return list(self._context.enterobase.records(database))

    def enterobase_release(
        self,
        database: str = "senterica",
        count: int = 1,
        *,
        seed: int = 0,
        serotypes: Sequence[str] = ("Agona", "Typhimurium"),
        fasta_size: tuple[int, int] = (4096, 32768),
    ) -> tuple[EnterobaseAssembly, ...]:
        """Release ``count`` new records today, so that ``reldate=1`` finds just them."""
        return self._context.enterobase.release(
            database, count, today=self.today, seed=seed, serotypes=serotypes, fasta_size=fasta_size
        )

    def enterobase_fasta(self, database: str, barcode: str) -> bytes:
        """The FASTA served for an assembly barcode (``SAL_AA0001AA_AS``)."""
        record = self._context.enterobase.assembly(database, barcode)
        if record is None:
            raise KeyError(f"{database}/{barcode}")
        return fasta_bytes(barcode, record.fasta_size)


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
