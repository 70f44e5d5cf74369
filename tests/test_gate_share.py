"""Host limits shared by the members of a pull: HostGate.share, Http.share and Slots."""

from __future__ import annotations

import asyncio
import bisect
import hashlib
import itertools
import math
from collections.abc import Callable
from pathlib import Path

import pytest

from mirror._config import HostLimit
from mirror._http import TURN, WINDOW, HostGate, Http, Slots
from mirror._manifest import load_manifest
from mirror.emulator import Catalog, Emulator, EnaOptions, md5_of

from .clock import VirtualClock

# --------------------------------------------------------------------------- Slots


async def _until(condition: Callable[[], bool]) -> None:
    """Let the other tasks run until ``condition`` holds (no clock involved)."""
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never held")


async def test_slots_shrunk_while_held_let_no_one_in_until_enough_are_given_back() -> None:
    slots = Slots(4)
    for _ in range(4):
        await slots.acquire()
    slots.resize(2)
    assert (slots.size, slots.held) == (2, 4)  # nobody loses a slot
    entered = asyncio.Event()

    async def newcomer() -> None:
        async with slots:
            entered.set()

    task = asyncio.create_task(newcomer())
    await _until(lambda: slots.waiting == 1)
    slots.release()  # 3 held
    slots.release()  # 2 held: still not under the new size
    for _ in range(20):
        await asyncio.sleep(0)
    assert not entered.is_set()
    slots.release()  # 1 held: room for one
    await asyncio.wait_for(task, 5)
    assert entered.is_set()
    assert slots.held == 1


async def test_slots_grown_while_waited_for_let_the_waiters_in_at_once() -> None:
    slots = Slots(1)
    await slots.acquire()
    inside = 0
    go = asyncio.Event()

    async def one() -> None:
        nonlocal inside
        async with slots:
            inside += 1
            await go.wait()

    tasks = [asyncio.create_task(one()) for _ in range(3)]
    await _until(lambda: slots.waiting == 3)
    slots.resize(3)  # two more fit beside the holder
    await _until(lambda: inside == 2)
    assert (slots.held, slots.waiting) == (3, 1)
    slots.release()
    await _until(lambda: inside == 3)
    go.set()
    await asyncio.gather(*tasks)
    assert slots.held == 0


async def test_a_cancelled_waiter_takes_no_slot_and_keeps_no_one_waiting() -> None:
    slots = Slots(1)
    await slots.acquire()
    first = asyncio.create_task(slots.acquire())
    second = asyncio.create_task(slots.acquire())
    await _until(lambda: slots.waiting == 2)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    assert slots.waiting == 1
    slots.release()
    await asyncio.wait_for(second, 5)
    assert slots.held == 1


async def test_a_waiter_cancelled_just_after_its_grant_passes_the_slot_on() -> None:
    slots = Slots(1)
    await slots.acquire()
    first = asyncio.create_task(slots.acquire())
    second = asyncio.create_task(slots.acquire())
    await _until(lambda: slots.waiting == 2)
    slots.release()  # granted to the first, which has not run yet ...
    first.cancel()  # ... and is cancelled before it does
    with pytest.raises(asyncio.CancelledError):
        await first
    await asyncio.wait_for(second, 5)
    assert (slots.held, slots.waiting) == (1, 0)


# --------------------------------------------------------------------------- the window


def _gate(limit: HostLimit, *, wall: float = 1.8e9) -> tuple[HostGate, VirtualClock]:
    """A gate on a virtual clock at 0, whose wall clock then reads ``wall``."""
    clock = VirtualClock(0.0, wall=wall)
    return HostGate(limit, clock=clock), clock


def _drive(gate: HostGate, clock: VirtualClock, until: float) -> list[float]:
    """Start requests as fast as the gate allows until ``until``, the clock jumping
    straight to each allowed instant; the start times. (The gate's own decisions, without
    the tasks and locks of ``slot()``: thousands of starts in a few milliseconds.)"""
    starts: list[float] = []
    while True:
        now = clock.monotonic()
        wait = gate._wait(now, clock.time())
        if wait > 0:
            clock.advance(max(wait, 1e-9))
            continue
        if now >= until:
            return starts
        gate._started(now, clock.time())
        starts.append(now)


def _most_in_a_second(starts: list[float], span: float = 1.0) -> int:
    """Most starts in any half-open window ``[t, t + span)``."""
    return max(bisect.bisect_left(starts, t + span) - i for i, t in enumerate(starts))


@pytest.mark.parametrize(
    ("rate", "members"),
    [(30, 3), (50, 3), (50, 7), (20, 6), (8, 3), (50, 1), (2.5, 2), (1, 1)],
)
def test_each_member_stays_within_its_fractional_share_in_every_second(
    rate: float, members: int
) -> None:
    gate, clock = _gate(HostLimit(rate=rate, connections=64))
    gate.share(members)
    starts = _drive(gate, clock, until=20.0)
    share = rate / members
    # No window rounds a fractional share up: 50/3 allows 16 a second, never 17 ...
    assert _most_in_a_second(starts) <= share
    # ... so N members at rate/N never exceed the rate together ...
    assert members * _most_in_a_second(starts) <= rate
    # ... and sharing does not starve: each member keeps the most that fits, whole
    # requests in every window (a fractional part cannot be used without going over).
    usable = math.floor(share) / WINDOW if share >= 1 else share / WINDOW
    assert len(starts) / 20.0 >= 0.95 * usable


def test_a_share_below_one_request_a_second_spaces_the_members_requests() -> None:
    gate, clock = _gate(HostLimit(rate=1, connections=1))
    gate.share(3)
    starts = _drive(gate, clock, until=30.0)
    assert min(b - a for a, b in itertools.pairwise(starts)) >= 3 * WINDOW - 1e-9
    assert len(starts) >= 9


def _pull(rate: float, members: int, *, ranked: bool, skew: float = 0.0) -> list[float]:
    """Every member's starts over a minute, on one true clock; the wall clocks of the
    odd ranks are ``skew`` seconds ahead of the others' (machines' clocks disagree)."""
    starts: list[float] = []
    for rank in range(members):
        gate, clock = _gate(
            HostLimit(rate=rate, connections=1), wall=1.8e9 + 0.37 + (rank % 2) * skew
        )
        gate.share(members, rank if ranked else None)
        starts += _drive(gate, clock, until=60.0)
    return sorted(starts)


@pytest.mark.parametrize(
    ("rate", "members"), [(1, 3), (1, 2), (2.5, 3), (0.5, 2), (3, 5), (1, 8), (0.2, 3)]
)
@pytest.mark.parametrize("skew", [0.0, 0.04, -0.1])
def test_members_below_one_request_a_second_take_turns(
    rate: float, members: int, skew: float
) -> None:
    starts = _pull(rate, members, ranked=True, skew=skew)
    if rate >= 1:
        assert _most_in_a_second(starts) <= rate
    else:
        assert min(b - a for a, b in itertools.pairwise(starts)) >= 1 / rate
    # One request per turn of the pull, whoever's it is: most of the rate still used.
    per_turn = TURN / (math.floor(rate) if rate >= 1 else rate)
    assert len(starts) >= 0.95 * 60.0 / per_turn


def test_unranked_members_below_one_request_a_second_can_meet_in_one_second() -> None:
    # What turns are for: counting alone keeps each member within its share, but three
    # members at a third of a request a second each may all start in the same second.
    starts = _pull(1, 3, ranked=False)
    assert _most_in_a_second(starts) == 3


def test_turns_only_when_the_share_is_below_one_request_a_second() -> None:
    gate = HostGate(HostLimit(rate=1, connections=1))
    gate.share(3, 2)
    assert gate.takes_turns
    gate.share(1, 0)  # alone: its own spacing is enough
    assert not gate.takes_turns
    gate = HostGate(HostLimit(rate=30, connections=8))
    gate.share(3, 1)
    assert not gate.takes_turns
    gate = HostGate(HostLimit(rate=1, connections=1, scope="member"))
    gate.share(3, 1)
    assert not gate.takes_turns
    with pytest.raises(ValueError, match="rank must be from 0 to 2, got 3"):
        HostGate(HostLimit(rate=1)).share(3, 3)


def test_the_last_seconds_starts_count_against_a_lowered_share() -> None:
    gate, clock = _gate(HostLimit(rate=50, connections=64))
    before = _drive(gate, clock, until=1.0)
    assert len(before) == 48  # 50/s, spaced by WINDOW/50
    gate.share(2)
    after = _drive(gate, clock, until=4.0)
    starts = before + after
    # Every window that holds a start made after the change holds at most 25 starts,
    # those made before it included: no 25 more within the same second.
    for t in after:
        assert sum(1 for s in starts if t - 1.0 < s <= t) <= 25
    assert after[0] >= before[-25] + WINDOW - 1e-9


def test_a_raised_share_applies_at_once() -> None:
    gate, clock = _gate(HostLimit(rate=40, connections=64))
    gate.share(4)
    slow = _drive(gate, clock, until=2.0)
    gate.share(1)
    fast = _drive(gate, clock, until=4.0)
    assert len(slow) <= 20
    assert len(fast) >= 70


async def test_a_request_waiting_its_turn_is_woken_when_its_share_grows() -> None:
    gate, clock = _gate(HostLimit(rate=4, connections=8))
    gate.share(8)  # half a request a second: the next start waits 2.1 s
    async with gate.slot():
        pass
    began = clock.monotonic()

    async def second() -> float:
        async with gate.slot():
            return clock.monotonic()

    task = asyncio.create_task(second())
    await _until(gate._pace_lock.locked)
    gate.share(1)  # four a second: its turn is WINDOW/4 after the first start
    started = await asyncio.wait_for(task, 5)
    assert started - began == pytest.approx(WINDOW / 4)


# --------------------------------------------------------------------------- limits


def test_share_splits_pull_limits_and_leaves_member_limits_alone() -> None:
    pull = HostGate(HostLimit(rate=30, connections=8))
    member = HostGate(HostLimit(rate=30, connections=8, scope="member"))
    for gate in (pull, member):
        gate.share(3)
    assert (pull.allowance, pull.rate, pull.connections, pull.members) == (10, 10, 2, 3)
    assert (member.allowance, member.rate, member.connections, member.members) == (30, 30, 8, 1)
    pull.share(1)
    assert (pull.allowance, pull.rate, pull.connections) == (30, 30, 8)


def test_with_more_members_than_connections_each_member_keeps_one() -> None:
    gate = HostGate(HostLimit(rate=1, connections=1))
    gate.share(5)
    assert gate.connections == 1
    assert gate.rate == pytest.approx(0.2)
    gate = HostGate(HostLimit(connections=8))
    gate.share(3)
    assert (gate.connections, gate.rate, gate.allowance) == (2, None, None)


def test_share_rejects_no_members() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        HostGate(HostLimit(rate=5)).share(0)


async def test_open_requests_keep_their_connections_when_the_share_shrinks() -> None:
    gate = HostGate(HostLimit(connections=6))
    release = asyncio.Event()
    inside = peak_after = 0
    shrunk = False

    async def one() -> None:
        nonlocal inside, peak_after
        async with gate.slot():
            inside += 1
            if shrunk:
                peak_after = max(peak_after, inside)
            await release.wait()
            inside -= 1

    tasks = [asyncio.create_task(one()) for _ in range(6)]
    await _until(lambda: inside == 6)
    gate.share(3)  # two each now; the six open ones stay open
    shrunk = True
    late = [asyncio.create_task(one()) for _ in range(4)]
    for _ in range(20):
        await asyncio.sleep(0)
    assert inside == 6
    release.set()
    await asyncio.wait_for(asyncio.gather(*tasks, *late), 5)
    assert peak_after <= 2


def test_throttling_works_relative_to_the_share() -> None:
    async def main() -> None:
        gate, clock = _gate(HostLimit(rate=30, connections=8))
        gate.share(3)
        gate.throttled(retry_after=None)
        assert gate.rate == 5
        gate.share(3)  # the same number again changes nothing
        assert gate.rate == 5
        gate.share(2)  # the cut keeps its proportion: half of 15
        assert gate.rate == 7.5
        gate.share(3)
        assert gate.rate == 5
        # Recovery climbs back to the share, not to the configured rate.
        for _ in range(20):
            clock.advance(2.0)
            gate._recover(clock.monotonic())
        assert gate.rate == 10
        # The floor is the pull's: a third of a request a second each.
        for _ in range(20):
            gate._last_cut = float("-inf")
            gate.throttled(retry_after=None)
        assert gate.rate == pytest.approx(gate.floor)
        assert gate.floor == pytest.approx(1 / 3)

    asyncio.run(main())


async def test_http_shares_existing_and_later_gates_and_skips_member_hosts() -> None:
    limits = {
        "a.example": HostLimit(rate=30, connections=6),
        "b.example": HostLimit(rate=30, connections=6, scope="member"),
        "c.example": HostLimit(rate=12, connections=4),
        "slow.example": HostLimit(rate=1, connections=1),
    }
    async with Http(lambda key: limits[key]) as http:
        a = http.gate("https://a.example/x")
        b = http.gate("https://b.example/x")
        http.share(3)
        c = http.gate("https://c.example/x")  # made after: starts shared
        assert (a.rate, a.connections) == (10, 2)
        assert (b.rate, b.connections) == (30, 6)
        assert (c.rate, c.connections) == (4, 1)
        assert http.members == 3
        http.share(2)
        assert (a.rate, a.connections, c.rate, c.connections) == (15, 3, 6, 2)
        http.share(1)
        assert (a.rate, a.connections, b.rate, c.rate) == (30, 6, 30, 12)
        with pytest.raises(ValueError, match="at least 1"):
            http.share(0)
        slow = http.gate("https://slow.example/x")
        http.share(3, rank=1)
        assert (a.rate, slow.rate, slow.takes_turns, b.takes_turns) == (10, 1 / 3, True, False)
        assert slow._rank == 1


# --------------------------------------------------------------------------- three members


async def _three_members(emu: Emulator, scope: str, per_member: int) -> list[float]:
    """Three Http sessions, each a member fetching its own files at once; arrival times."""
    base = emu.endpoints["ena_files"]
    host = base.split("//", 1)[1]
    manifest = load_manifest(
        {
            "version": 1,
            "dest": "/nonexistent",
            "hosts": {host: {"rate": 30, "connections": 6, "scope": scope}},
            "sources": [{"ena": {"accessions": ["PRJEB1"]}}],
        }
    )
    files = list(itertools.islice(emu.catalog.iter_files(), 3 * per_member))
    assert len(files) == 3 * per_member

    async def member(mine: list[str]) -> None:
        async with Http(manifest.host_limit) as http:
            http.share(3)

            async def fetch(path: str) -> None:
                async with http.request("GET", f"{base}/{path}") as response:
                    body = b"".join([chunk async for chunk in response.chunks()])
                assert hashlib.md5(body).hexdigest() == md5_of(path, len(body))

            await asyncio.gather(*(fetch(path) for path in mine))

    paths = [f.path for f in files]
    emu.clear_log()
    await asyncio.gather(*(member(paths[i::3]) for i in range(3)))
    await emu.wait_idle()
    served = [e for e in emu.log if e.host == "ftp"]
    assert sorted(e.path.lstrip("/") for e in served) == sorted(paths)
    assert all(e.status == 200 for e in served)
    return sorted(e.t for e in served)


@pytest.mark.slow  # measures request arrivals at the emulator in real seconds
async def test_three_members_together_stay_within_the_hosts_rate() -> None:
    catalog = Catalog.generate(runs_per_study=150, files_per_run=1, file_size=512)
    async with Emulator(catalog, ena=EnaOptions(portal_rate_limit=None)) as emu:
        # Two seconds of requests at the host's rate: 60 starts, each member's spaced a
        # tenth of a window apart.
        arrivals = await _three_members(emu, "pull", per_member=20)
    assert _most_in_a_second(arrivals, 0.9) <= 30
    # Sharing does not starve: the three together keep close to the host's rate.
    aggregate = (len(arrivals) - 1) / (arrivals[-1] - arrivals[0])
    assert 24 <= aggregate <= 30.5, aggregate


@pytest.mark.slow  # measures request arrivals at the emulator in real seconds
async def test_three_members_with_scope_member_each_get_the_full_rate() -> None:
    catalog = Catalog.generate(runs_per_study=150, files_per_run=1, file_size=512)
    async with Emulator(catalog, ena=EnaOptions(portal_rate_limit=None)) as emu:
        arrivals = await _three_members(emu, "member", per_member=30)
    # Each member alone keeps 30 a second: about 90 together.
    assert _most_in_a_second(arrivals, 0.9) > 45
    aggregate = (len(arrivals) - 1) / (arrivals[-1] - arrivals[0])
    assert aggregate >= 60, aggregate


def test_scope_reaches_the_gate_from_the_manifest(tmp_path: Path) -> None:
    manifest = load_manifest(
        {
            "version": 1,
            "dest": str(tmp_path),
            "hosts": {
                "www.ebi.ac.uk": {"scope": "member"},
                "ftp.sra.ebi.ac.uk": {"connections": 16, "scope": "pull"},
            },
            "sources": [{"ena": {"accessions": ["PRJEB1"]}}],
        }
    )
    # Scope alone keeps the published limits.
    assert manifest.host_limit("www.ebi.ac.uk") == HostLimit(rate=50, connections=8, scope="member")
    assert manifest.host_limit("ftp.sra.ebi.ac.uk").scope == "pull"
    assert manifest.host_limit("example.org").scope == "pull"
