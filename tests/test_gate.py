"""HostGate: the rate bound holds in every sliding second, and throttling slows down."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

import pytest

from mirror._config import HostLimit
from mirror._http import WINDOW, HostGate, Http, host_key
from mirror._manifest import load_manifest

from .clock import VirtualClock


async def test_never_more_than_rate_in_any_window() -> None:
    clock = VirtualClock()
    gate = HostGate(HostLimit(rate=40, connections=64), clock=clock)
    starts: list[float] = []

    async def one() -> None:
        async with gate.slot():
            starts.append(clock.monotonic())

    await asyncio.gather(*(one() for _ in range(100)))
    starts.sort()
    assert len(starts) == 100
    # Every run of 41 consecutive starts spans more than one second.
    for i in range(len(starts) - 40):
        assert starts[i + 40] - starts[i] >= 1.0
    # Evenly spaced within the window, never in bursts ...
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert min(gaps) >= WINDOW / 40 - 1e-9
    # ... and no slower than that.
    assert starts[-1] - starts[0] == pytest.approx(99 * WINDOW / 40)


async def test_connection_cap() -> None:
    gate = HostGate(HostLimit(connections=3))
    inside = peak = 0
    release = asyncio.Event()
    three_in = asyncio.Event()

    async def one() -> None:
        nonlocal inside, peak
        async with gate.slot():
            inside += 1
            peak = max(peak, inside)
            if inside == 3:
                three_in.set()
            await release.wait()
            inside -= 1

    tasks = [asyncio.create_task(one()) for _ in range(10)]
    await three_in.wait()
    # Give the other seven every chance to get in (they must not).
    for _ in range(20):
        await asyncio.sleep(0)
    assert peak == 3
    release.set()
    await asyncio.gather(*tasks)


async def test_throttling_halves_the_rate_and_pauses() -> None:
    clock = VirtualClock()
    gate = HostGate(HostLimit(rate=20), clock=clock)
    async with gate.slot():
        pass
    gate.throttled(retry_after=30.0)
    assert gate.rate == 10
    before = clock.monotonic()
    async with gate.slot():
        after = clock.monotonic()
    assert after - before == 30.0  # the host-wide pause, to the instant


async def test_unlimited_host_gets_a_rate_after_a_429() -> None:
    gate = HostGate(HostLimit())
    for _ in range(10):
        async with gate.slot():
            pass
    assert gate.rate is None
    gate.throttled(retry_after=None)
    assert gate.rate == 5
    gate.throttled(retry_after=None)
    assert gate.rate == 5  # the same burst's answers cut once, not once each
    assert WINDOW > 1.0


async def test_a_host_below_one_request_a_second_is_never_sped_up_by_a_429() -> None:
    gate = HostGate(HostLimit(rate=0.5))
    async with gate.slot():
        pass
    gate.throttled(retry_after=None)
    assert gate.rate is not None
    assert gate.rate < 0.5
    assert gate.rate > 0


def test_cuts_never_raise_the_pace_and_recovery_stops_at_the_configured_rate() -> None:
    async def main() -> None:
        for configured in (0.2, 0.5, 1.0, 1.5, 3.0, 50.0):
            clock = VirtualClock()
            gate = HostGate(HostLimit(rate=configured), clock=clock)
            seen = [configured]
            for _ in range(6):
                gate._last_cut = float("-inf")  # every answer a separate window
                gate.throttled(retry_after=None)
                assert gate.rate is not None
                assert gate.rate <= seen[-1]
                seen.append(gate.rate)
            for _ in range(40):
                clock.advance(2.0)
                gate._recover(clock.monotonic())
                assert gate.rate is not None
                assert gate.rate <= configured
            assert gate.rate == configured

    asyncio.run(main())


def test_bracketed_ipv6_hosts_key_their_gate_as_urls_spell_them() -> None:
    assert host_key("http://[::1]:8080/vol1/x") == "[::1]:8080"
    assert host_key("https://[2001:db8::1]/x") == "[2001:db8::1]"
    assert host_key("http://127.0.0.1:8080/x") == "127.0.0.1:8080"
    assert host_key("https://FTP.sra.ebi.ac.uk/x") == "ftp.sra.ebi.ac.uk"


async def test_ipv6_host_limits_from_the_manifest_reach_the_gate(tmp_path: Path) -> None:
    manifest = load_manifest(
        {
            "version": 1,
            "dest": str(tmp_path),
            "hosts": {
                "[::1]:8080": {"rate": 2, "connections": 3},
                "[::1]": {"rate": 4, "connections": 5},
            },
            "sources": [{"ena": {"accessions": ["PRJEB1"]}}],
        }
    )
    async with Http(manifest.host_limit) as http:
        assert http.gate("http://[::1]:8080/vol1/a").limit == HostLimit(rate=2, connections=3)
        assert http.gate("http://[::1]:9090/vol1/a").limit == HostLimit(rate=4, connections=5)
