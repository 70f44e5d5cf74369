"""Hung, dead and misbehaving file hosts: timeouts, the per-host breaker, final errors.

Each test points the ENA ``ena_files`` endpoint at a small misbehaving server on
loopback written here (or at a closed port) while the emulator plays the Portal, and
runs the ``mirror`` command line (its ``main``, in this process). Timeouts are real
time: a hung server is only noticed by waiting for it. The manifests set them short
(fractions of a second), and the paused host's probes go out sooner, so each test
takes about a second; the same code paths run with the defaults.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

import mirror
from mirror import HttpTuning, RetryPolicy, Tuning
from mirror._config import HostLimit, Timeouts
from mirror._exceptions import HostDown, NotConnected, RedirectLoop
from mirror._http import MAX_REDIRECTS, Breaker, Http
from mirror._manifest import load_manifest
from mirror.emulator import Catalog, Emulator

from .clock import VirtualClock
from .conftest import ena_manifest, read_index
from .inproc import Background, mirror_main, tune_runs
from .tls import make_ca

#: Short enough for a test, long enough that a loaded machine does not trip them.
SHORT = {"connect": 1, "read": 0.5, "host_down": 2}
#: For the runs that wait out a dead host: tenths of a second to notice it and to give up
#: on it, and the paused host's first probes a tenth of a second apart (a second by
#: default), so the whole outage plays out in about a second of real time.
BRIEF = {"connect": 1, "read": 0.3, "host_down": 0.6}
PROBE_SOON = Tuning(http=HttpTuning(probe_first=0.1))

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class BadHost:
    """An asyncio server on 127.0.0.1 that runs ``handler`` for each connection."""

    def __init__(self, handler: Handler, ssl_context: ssl.SSLContext | None = None) -> None:
        self.handler = handler
        self.ssl = ssl_context
        self.connections = 0
        self.requests = 0
        self._writers: list[asyncio.StreamWriter] = []
        self._server: asyncio.Server | None = None
        self.port = 0
        self.headers: list[str] = []

    async def __aenter__(self) -> BadHost:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.close()
        with contextlib.suppress(Exception):
            await self._server.wait_closed()

    @property
    def base(self) -> str:
        return f"{'https' if self.ssl else 'http'}://127.0.0.1:{self.port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # TLS started here, not by the server, so that connections whose handshake
        # fails are counted too.
        self.connections += 1
        self._writers.append(writer)
        with contextlib.suppress(Exception):
            if self.ssl is not None:
                await writer.start_tls(self.ssl)
            await self.handler(reader, writer)

    async def head(self, reader: asyncio.StreamReader) -> str:
        """Read one request head; its target path (header lines in ``self.headers``)."""
        line = await reader.readline()
        self.headers = []
        while (header := await reader.readline()) not in (b"\r\n", b"\n", b""):
            self.headers.append(header.decode("latin-1").strip().lower())
        self.requests += 1
        return line.split()[1].decode() if len(line.split()) > 1 else ""


async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.read()  # until the client gives up and closes


def closed_port() -> int:
    """A loopback port nothing listens on: connections to it are refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_manifest(tmp_path: Path, endpoints: dict[str, str], accession: str, **top: Any) -> Path:
    doc = ena_manifest(endpoints, tmp_path / "data", [accession])
    doc.update(top)
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


@contextlib.asynccontextmanager
async def portal(runs: int) -> AsyncIterator[tuple[Emulator, str]]:
    catalog = Catalog.generate(runs_per_study=runs, files_per_run=2, file_size=64)
    async with Emulator(catalog) as emu:
        yield emu, catalog.generated_studies[0].study


def timed(*args: str) -> tuple[int, str, str, float]:
    """The command line run in this process: exit code, stdout, stderr, wall time."""
    started = time.monotonic()
    done = mirror_main(*args)
    return done.returncode, done.stdout, done.stderr, time.monotonic() - started


def test_hung_host_fails_its_files_together_in_one_line(
    background: Background, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A host that accepts and never answers, 40 files: paused after a few requests,
    probed, then given up on; one line names it, every file is failed with the reason,
    and a re-run (host back) fetches them all."""
    emu, study = background.enter(lambda: portal(20))
    bad = background.enter(lambda: BadHost(never_answer))
    tune_runs(monkeypatch, PROBE_SOON)
    endpoints = {**emu.endpoints, "ena_files": bad.base}
    manifest = write_manifest(tmp_path, endpoints, study, timeouts=BRIEF)
    code, _, err, took = timed("run", str(manifest))
    assert code == 1, err
    host = f"127.0.0.1:{bad.port}"
    lines = [line for line in err.splitlines() if host in line]
    assert len(lines) == 1, err
    assert lines[0].startswith(f"error: {host}: no answer for ")
    assert lines[0].endswith("; 40 files not downloaded; re-run to retry them")
    assert "failed:" not in err
    assert "Traceback" not in err
    # 8 workers' first requests, then one probe at a time: not 40 × 8 attempts.
    assert bad.connections <= 16, bad.connections
    assert took < 30
    rows = read_index(tmp_path / "data")
    assert len(rows) == 40
    assert {r["status"] for r in rows} == {"failed"}

    _, out, _, _ = timed("status", str(manifest))
    reasons = [line for line in out.splitlines() if "\tfailed\t" in line]
    assert len(reasons) == 40, out
    assert all(f"{host}: no answer for" in line for line in reasons)

    # The host answers again: a re-run retries exactly those files.
    manifest = write_manifest(tmp_path, emu.endpoints, study)
    code, _, err, _ = timed("run", str(manifest))
    assert code == 0, err
    rows = read_index(tmp_path / "data")
    assert len(rows) == 40
    assert {r["status"] for r in rows} == {"verified"}


def test_refusing_host_200_files_fail_in_seconds(
    background: Background, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A host that refuses connections, 200 files: one line, exit 1, in seconds.

    The short timeouts come from the command line here (``--timeout``), not the manifest.
    """
    port = closed_port()
    emu, study = background.enter(lambda: portal(100))
    tune_runs(monkeypatch, PROBE_SOON)
    endpoints = {**emu.endpoints, "ena_files": f"http://127.0.0.1:{port}"}
    manifest = write_manifest(tmp_path, endpoints, study)
    flags = [f"--timeout={name}={value}" for name, value in BRIEF.items()]
    code, _, err, took = timed("run", str(manifest), *flags)
    assert code == 1, err
    lines = [line for line in err.splitlines() if f"127.0.0.1:{port}" in line]
    assert lines == [
        f"error: {lines[0][7:].split(';')[0]}; 200 files not downloaded; re-run to retry them"
    ], err
    assert lines[0].startswith(f"error: 127.0.0.1:{port}: connection refused for ")
    assert took < 20
    rows = read_index(tmp_path / "data")
    assert len(rows) == 200
    assert {r["status"] for r in rows} == {"failed"}


async def test_stalled_body_is_noticed_after_the_read_timeout(tmp_path: Path) -> None:
    """A body that stops mid-way: the reason says it stalled, after the read timeout
    (0.5 s here), and every attempt costs that long, not minutes. Real time: only
    waiting shows that a body stalled."""
    body = b"x" * 64

    async def stall(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await bad.head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 64\r\n\r\n" + body[:10])
        await writer.drain()
        await reader.read()

    async with portal(1) as (emu, study), BadHost(stall) as bad:
        endpoints = {**emu.endpoints, "ena_files": bad.base}
        doc = ena_manifest(endpoints, tmp_path / "data", [study])
        doc["timeouts"] = SHORT
        started = time.monotonic()
        reasons: list[str] = []
        async with mirror.Mirror(doc, retry=RetryPolicy(attempts=2, base=0.01)) as m:
            async for event in m.events():
                if isinstance(event, mirror.FileFailed) and event.final:
                    reasons.append(event.reason)
        took = time.monotonic() - started
    assert m.summary.failed == 2
    assert len(reasons) == 2
    assert all("body stalled: no bytes for 0.5 s (read timeout)" in r for r in reasons), reasons
    assert took < 10


def test_host_whose_every_body_stalls_is_given_up_on(
    background: Background, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Answers that begin and then stall, 40 files: once no body has arrived whole for
    ``host_down``, the remaining files fail together in one line, instead of each
    waiting out the read timeout on every one of its attempts."""

    async def stall(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await bad.head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 64\r\n\r\n" + b"x" * 10)
        await writer.drain()
        await reader.read()

    emu, study = background.enter(lambda: portal(20))
    bad = background.enter(lambda: BadHost(stall))
    tune_runs(monkeypatch, PROBE_SOON)
    endpoints = {**emu.endpoints, "ena_files": bad.base}
    manifest = write_manifest(tmp_path, endpoints, study, timeouts=BRIEF)
    code, _, err, took = timed("run", str(manifest))
    assert code == 1, err
    host = f"127.0.0.1:{bad.port}"
    lines = [line for line in err.splitlines() if host in line]
    assert len(lines) == 1, err
    assert lines[0].startswith(f"error: {host}: every answer stalled mid-body for ")
    assert lines[0].endswith("; 40 files not downloaded; re-run to retry them")
    assert took < 30
    assert bad.requests < 40


async def test_final_reason_of_a_changed_remote_file_does_not_say_starting_again(
    tmp_path: Path,
) -> None:
    """The last attempt's reason is what ``mirror status`` shows: it must not promise a
    next attempt. First attempt: the body stalls after 10 bytes (kept in ``.part``);
    second: a resume answered with another file's range."""

    async def changed(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await bad.head(reader):
            if any(h.startswith("range:") for h in bad.headers):
                writer.write(
                    b"HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 0-63/64\r\n"
                    b"Content-Length: 64\r\n\r\n" + b"y" * 64
                )
                await writer.drain()
                continue
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 64\r\n\r\n" + b"x" * 10)
            await writer.drain()
            await reader.read()

    async with portal(1) as (emu, study), BadHost(changed) as bad:
        doc = ena_manifest({**emu.endpoints, "ena_files": bad.base}, tmp_path / "data", [study])
        doc["timeouts"] = SHORT
        doc["workers"] = 1
        summary = await mirror.run(doc, retry=RetryPolicy(attempts=2, base=0.01))
    assert summary.failed == 2
    rows = read_index(tmp_path / "data")
    reasons = [r["reason"] for r in rows]
    assert all("no longer matches the partial download" in r for r in reasons), reasons
    assert not any(r.endswith("starting again") for r in reasons), reasons


def test_redirect_loop_ends_after_a_few_hops(background: Background, tmp_path: Path) -> None:
    """A server that redirects forever: one attempt of MAX_REDIRECTS hops, a reason
    that says "redirect loop", not 8 attempts ending in ``0, message=''``."""

    async def loop(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            path = await bad.head(reader)
            if not path:
                return
            writer.write(
                f"HTTP/1.1 302 Found\r\nLocation: {path}x\r\nContent-Length: 0\r\n\r\n".encode()
            )
            await writer.drain()

    emu, study = background.enter(lambda: portal(1))
    bad = background.enter(lambda: BadHost(loop))
    endpoints = {**emu.endpoints, "ena_files": bad.base}
    manifest = write_manifest(tmp_path, endpoints, study, timeouts=SHORT, workers=1)
    code, _, err, _ = timed("run", str(manifest))
    assert code == 1, err
    failed = [line for line in err.splitlines() if line.startswith("failed:")]
    assert len(failed) == 2, err
    assert all(
        "redirect loop: still redirected after 10 hops (the last from " in line for line in failed
    )
    assert not any(line.rstrip().endswith("starting again") for line in failed)
    # Two files, each one attempt of at most 1 + MAX_REDIRECTS requests (not 8 attempts).
    assert 2 * MAX_REDIRECTS <= bad.requests <= 2 * (1 + MAX_REDIRECTS)


def test_untrusted_certificate_fails_at_once_naming_host_and_ssl_cert_file(
    background: Background, tmp_path: Path
) -> None:
    """A file host whose certificate does not verify, 20 files: one handshake, no
    retries, and one line that names the host and says how to trust a private CA.
    (The test's CA is one no trust store holds, wherever the command runs.)"""
    tls = make_ca(tmp_path / "ca")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tls.cert, tls.key)

    emu, study = background.enter(lambda: portal(10))
    bad = background.enter(lambda: BadHost(never_answer, context))
    endpoints = {**emu.endpoints, "ena_files": bad.base}
    manifest = write_manifest(tmp_path, endpoints, study, workers=1)
    code, _, err, took = timed("run", str(manifest))
    assert code == 1, err
    host = f"127.0.0.1:{bad.port}"
    lines = [line for line in err.splitlines() if host in line]
    assert len(lines) == 1, err
    assert lines[0].startswith(f"error: {host}: TLS certificate did not verify (")
    assert f"if {host} uses a private CA, set SSL_CERT_FILE to a PEM file" in lines[0]
    assert lines[0].endswith("; 20 files not downloaded; re-run to retry them")
    assert bad.connections == 1  # nothing retried, no other file tried
    assert took < 15
    rows = read_index(tmp_path / "data")
    assert {r["status"] for r in rows} == {"failed"}
    assert all("SSL_CERT_FILE" in r["reason"] for r in rows)


# --- the breaker and the timeouts, without a command line --------------------------------


async def test_paused_host_sends_one_probe_at_a_time() -> None:
    """While a host is paused, requests wait for the probe instead of each trying.

    Real time: the server never answers, so each request ends at the read timeout.
    """
    timeouts = Timeouts(connect=1, read=0.3, host_down=1.5)
    async with BadHost(never_answer) as bad, Http(lambda h: HostLimit(), timeouts=timeouts) as http:
        url = f"{bad.base}/f"
        breaker = http.breaker(url)
        results = await asyncio.gather(*(_get(http, url) for _ in range(3)), return_exceptions=True)
        assert all("no answer for 0.3 s (read timeout)" in str(r) for r in results), results
        assert breaker.paused
        assert breaker.down is None
        assert bad.connections == 3
        started = time.monotonic()
        results = await asyncio.gather(
            *(http.retrying("f", lambda: _get(http, url)) for _ in range(20)),
            return_exceptions=True,
        )
        assert all(isinstance(r, HostDown) for r in results), results
        assert str(results[0]).startswith(f"127.0.0.1:{bad.port}: no answer for ")
        assert time.monotonic() - started < 5
        # 20 callers, yet only the probes went out: 1 s then 2 s apart, 0.3 s each.
        assert bad.connections <= 3 + 3, bad.connections
        # Down for the rest of the run: no connection attempt at all now.
        with pytest.raises(HostDown):
            await _get(http, url)
        assert bad.connections <= 6


async def test_refused_connections_pause_the_host() -> None:
    url = f"http://127.0.0.1:{closed_port()}/f"
    async with Http(lambda h: HostLimit(), timeouts=Timeouts(host_down=60)) as http:
        for _ in range(3):
            with pytest.raises(NotConnected, match=r"127\.0\.0\.1:\d+/f: connection refused$"):
                await _get(http, url)
        assert http.breaker(url).paused


async def test_a_refusing_host_is_probed_ever_less_often_and_given_up_on_after_host_down() -> None:
    """The breaker's timing, on a virtual clock: three refusals pause the host; probes
    then go out 1, 2, 4, 8 and 15 s apart (15 at most), and the first failure
    ``host_down`` seconds after the first refusal gives up on the host."""
    clock = VirtualClock()
    url = f"http://127.0.0.1:{closed_port()}/f"
    no_wait = RetryPolicy(attempts=100, base=0)
    limits = lambda h: HostLimit()  # noqa: E731
    async with Http(limits, retry=no_wait, timeouts=Timeouts(host_down=90), clock=clock) as http:
        began = clock.monotonic()
        tries: list[float] = []

        async def attempt() -> None:
            try:
                await _get(http, url)
            finally:
                tries.append(clock.monotonic() - began)  # refused at once: when it went

        with pytest.raises(HostDown) as down:
            await http.retrying("f", attempt)
    assert tries == [0, 0, 0, 1, 3, 7, 15, 30, 45, 60, 75, 90, 90]
    assert str(down.value) == (
        f"127.0.0.1:{url.split(':')[2].split('/')[0]}: connection refused for 90 s; "
        "not tried again this run"
    )


async def _get(http: Http, url: str) -> None:
    async with http.request("GET", url):
        pass


async def test_an_answer_closes_the_breaker() -> None:
    breaker = Breaker("h", down_after=60)
    error = NotConnected("refused", url="http://h/", why="connection refused")
    now = asyncio.get_running_loop().time()
    for _ in range(3):
        breaker.failed(error, now, probe=False)
    assert breaker.paused
    breaker.answered(probe=False)
    assert not breaker.paused
    assert await breaker.enter() is False


def test_timeouts_from_the_manifest(tmp_path: Path) -> None:
    doc = {
        "dest": str(tmp_path),
        "timeouts": {"connect": 5, "read": 20},
        "sources": [{"ena": {"accessions": ["ERR164407"]}}],
    }
    manifest = load_manifest(doc)
    assert manifest.timeouts == Timeouts(connect=5, read=20, host_down=90)
    assert load_manifest({**doc, "timeouts": None}).timeouts == Timeouts()


def test_timeouts_must_be_positive_numbers(tmp_path: Path) -> None:
    from mirror import ManifestError

    doc = {
        "dest": str(tmp_path),
        "timeouts": {"read": 0},
        "sources": [{"ena": {"accessions": ["ERR164407"]}}],
    }
    with pytest.raises(ManifestError, match=r"timeouts\.read"):
        load_manifest(doc)
    with pytest.raises(ManifestError, match="unknown key"):
        load_manifest({**doc, "timeouts": {"total": 5}})


def test_timeout_option_names_the_bad_value(tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path, {}, "ERR164407")
    code, _, err, _ = timed("plan", str(manifest), "--timeout", "read=soon")
    assert code == 2
    assert err.strip() == (
        "mirror: error: <command line>: --timeout 'read=soon': expected NAME=SECONDS with NAME "
        "one of connect, read, host_down and SECONDS a number greater than 0"
    )


def test_redirect_loop_and_bad_certificates_are_final() -> None:
    assert not RedirectLoop("x").retryable
    assert not HostDown("x", host="h", outage="h: down").retryable
