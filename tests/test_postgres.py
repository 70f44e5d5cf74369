"""The PostgreSQL state store against a real server: URLs, passwords, schema, pulls apart."""

from __future__ import annotations

import asyncio
import logging
import os
import pwd
import socket
from collections import Counter
from collections.abc import Awaitable, Iterator
from pathlib import Path

import pytest

import mirror
from mirror._exceptions import StateUrlError
from mirror._models import FileTask, TaskStatus
from mirror._state import Claim, Member, Store, open_store
from mirror._state._postgres import SCHEMA_VERSION, parse_url
from mirror.emulator import Emulator
from tests.conftest import (
    FAST_RETRY,
    ena_manifest,
    file_requests,
    md5_of_file,
    mirror_cmd,
    read_index,
)
from tests.postgres import PostgresServer

LEASE = 30.0


def task(path: str, size: int = 10) -> FileTask:
    return FileTask(
        source="ena",
        accession="ERR1",
        url=f"https://ftp.example.org/{path}",
        path=path,
        size=size,
        checksum="0" * 32,
    )


def member(n: int) -> Member:
    return Member(id=f"member-{n}", host="node", pid=1000 + n)


@pytest.fixture
def no_password(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No password anywhere asyncpg looks: no PGPASSWORD, an empty HOME (no ~/.pgpass)."""
    for name in ("PGPASSWORD", "PGPASSFILE", "PGSERVICEFILE", "PGUSER", "PGHOST"):
        monkeypatch.delenv(name, raising=False)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    return home


@pytest.fixture
def password_db(postgres_server: PostgresServer) -> Iterator[str]:
    """A database owned by the role that must give a password; its URL (no password)."""
    name = postgres_server.create_database(owner=postgres_server.password_role)
    try:
        yield postgres_server.url(name, user=postgres_server.password_role)
    finally:
        postgres_server.drop_database(name)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- URLs ------------------------------------------------------------------------------


def test_url_parts() -> None:
    where = parse_url("postgresql://mirror@db.example.org:6543/pulls")
    assert (where.host, where.port, where.database, where.user) == (
        "db.example.org",
        6543,
        "pulls",
        "mirror",
    )
    assert str(where) == "postgresql://mirror@db.example.org:6543/pulls"
    bare = parse_url("postgres://db.example.org/pulls")
    assert (bare.host, bare.port, bare.user) == ("db.example.org", None, None)
    assert str(bare) == "postgresql://db.example.org/pulls"


@pytest.mark.parametrize(
    ("url", "host", "shown"),
    [
        (
            "postgresql://mirror@/pulls?host=/run/postgresql",
            "/run/postgresql",
            "postgresql://mirror@/pulls?host=/run/postgresql",
        ),
        (
            "postgresql://mirror@%2Frun%2Fpostgresql:5433/pulls",
            "/run/postgresql",
            "postgresql://mirror@:5433/pulls?host=/run/postgresql",
        ),
        ("postgresql://[::1]:5433/pulls", "::1", "postgresql://[::1]:5433/pulls"),
    ],
)
def test_socket_and_ipv6_urls(url: str, host: str, shown: str) -> None:
    where = parse_url(url)
    assert where.host == host
    assert str(where) == shown


async def test_a_unix_socket_url_connects(
    postgres_server: PostgresServer, postgres_url: str, tmp_path: Path
) -> None:
    database = parse_url(postgres_url).database
    url = (
        f"postgresql://{postgres_server.superuser}@/{database}"
        f"?host={postgres_server.directory}&port={postgres_server.port}"
    )
    counts = await _use(url, tmp_path)
    assert counts[TaskStatus.PENDING] == (1, 10)


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://mirror:s3cr3t-pw@db.example.org/pulls",
        "postgresql://mirror:s3cr3t-pw@db.example.org:5432/pulls",
        "postgresql://:s3cr3t-pw@db.example.org/pulls",
        "postgresql://mirror@db.example.org/pulls?password=s3cr3t-pw",
    ],
)
def test_a_password_in_the_url_is_refused_without_repeating_it(url: str) -> None:
    with pytest.raises(StateUrlError) as caught:
        parse_url(url)
    message = str(caught.value)
    assert "PGPASSWORD or ~/.pgpass" in message
    assert "s3cr3t-pw" not in message
    assert "\n" not in message


def test_a_url_without_a_database_is_refused() -> None:
    with pytest.raises(StateUrlError, match="names no database"):
        parse_url("postgresql://db.example.org")


def test_a_malformed_port_is_refused_without_echoing_the_url() -> None:
    with pytest.raises(StateUrlError, match="malformed") as caught:
        parse_url("postgresql://db.example.org:5x/pulls")
    assert "5x" not in str(caught.value)


@pytest.mark.slow  # runs the mirror command in a child process, as a user would
def test_cli_refuses_a_password_in_the_url(tmp_path: Path) -> None:
    url = f"postgresql://mirror:s3cr3t-pw@127.0.0.1:{_closed_port()}/pulls"
    done = mirror_cmd("status", "--dest", str(tmp_path), "--state", url, timeout=60)
    assert done.returncode == 2, done.stderr
    assert "s3cr3t-pw" not in done.stderr + done.stdout
    assert done.stderr.strip().splitlines() == [
        "mirror: error: --state (or MIRROR_STATE): a password inside the PostgreSQL URL is "
        "refused (it would show in process lists and logs): give it in PGPASSWORD or ~/.pgpass"
    ]


@pytest.mark.slow  # runs the mirror command in a child process, as a user would
def test_cli_names_an_unreachable_server_in_one_line(tmp_path: Path) -> None:
    port = _closed_port()
    url = f"postgresql://mirror@127.0.0.1:{port}/pulls"
    done = mirror_cmd("status", "--dest", str(tmp_path), "--state", url, timeout=60)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines == [
        f"mirror: error: --state (or MIRROR_STATE): cannot connect to the PostgreSQL state "
        f"store {url} (host 127.0.0.1, port {port}, database pulls): connection refused (is "
        "PostgreSQL running, and listening on that address?)"
    ]
    assert "Traceback" not in done.stderr


async def test_an_unknown_host_is_named(tmp_path: Path) -> None:
    # .invalid never resolves (RFC 2606).
    with pytest.raises(StateUrlError) as caught:
        await open_store("postgresql://mirror@no-such-host.invalid/pulls", tmp_path)
    assert str(caught.value).startswith(
        "--state (or MIRROR_STATE): cannot connect to the PostgreSQL state store "
        "postgresql://mirror@no-such-host.invalid/pulls (host no-such-host.invalid, port "
        "5432, database pulls): unknown host ("
    )


@pytest.mark.slow  # a real PostgreSQL server and several processes
def test_cli_status_reads_a_pull_from_postgresql(postgres_url: str, tmp_path: Path) -> None:
    async def fill() -> None:
        store = await open_store(postgres_url, tmp_path)
        try:
            generation = await store.join(member(1), lease=LEASE)
            await store.plan([task("a", 5), task("b", 7)], generation)
            for claim in await store.claim(member(1), generation, 2, lease=LEASE):
                size = claim.task.size or 0
                await store.complete(
                    claim.task.key, claim.fence, md5="1" * 32, size=size, verified_by="md5"
                )
        finally:
            await store.aclose()

    asyncio.run(fill())
    done = mirror_cmd("status", "--dest", str(tmp_path), "--state", postgres_url, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    counts = {line.split()[0]: line.split()[1:] for line in done.stdout.splitlines() if line}
    assert counts["verified"] == ["2", "files", "12", "B"], done.stdout
    assert counts["pending"] == ["0", "files", "0", "B"], done.stdout


async def test_a_missing_database_is_one_line(
    postgres_server: PostgresServer, tmp_path: Path
) -> None:
    url = postgres_server.url("no_such_database")
    with pytest.raises(StateUrlError) as caught:
        await open_store(url, tmp_path)
    message = str(caught.value)
    assert f"cannot connect to the PostgreSQL state store {url}" in message
    assert 'database "no_such_database" does not exist' in message
    assert "\n" not in message


# -- passwords ---------------------------------------------------------------------------


async def _use(url: str, dest: Path) -> dict[TaskStatus, tuple[int, int]]:
    store = await open_store(url, dest)
    try:
        generation = await store.join(member(1), lease=LEASE)
        await store.plan([task("a")], generation)
        return await store.counts(generation)
    finally:
        await store.aclose()


async def test_pgpassword_logs_in(
    postgres_server: PostgresServer,
    password_db: str,
    no_password: Path,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("PGPASSWORD", postgres_server.password)
    counts = await _use(password_db, tmp_path)
    assert counts[TaskStatus.PENDING] == (1, 10)


async def test_pgpass_logs_in(
    postgres_server: PostgresServer, password_db: str, no_password: Path, tmp_path: Path
) -> None:
    where = parse_url(password_db)
    pgpass = no_password / ".pgpass"
    line = f"{where.host}:{where.port}:{where.database}:{where.user}:{postgres_server.password}\n"
    await asyncio.to_thread(pgpass.write_text, line)
    await asyncio.to_thread(pgpass.chmod, 0o600)
    counts = await _use(password_db, tmp_path)
    assert counts[TaskStatus.PENDING] == (1, 10)


async def test_a_refused_password_is_one_line_that_never_shows_it(
    postgres_server: PostgresServer,
    password_db: str,
    no_password: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
) -> None:
    wrong = postgres_server.password + "-wrong"
    monkeypatch.setenv("PGPASSWORD", wrong)
    caplog.set_level(logging.DEBUG)
    with pytest.raises(StateUrlError) as caught:
        await open_store(password_db, tmp_path)
    message = str(caught.value)
    assert 'password authentication failed for user "mirror_pw"' in message
    assert "PGPASSWORD or ~/.pgpass" in message
    assert "\n" not in message
    for secret in (wrong, postgres_server.password):
        assert secret not in message
        assert secret not in caplog.text


async def test_no_password_anywhere_says_where_to_put_one(
    password_db: str, no_password: Path, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    caplog.set_level(logging.DEBUG)
    with pytest.raises(StateUrlError) as caught:
        await open_store(password_db, tmp_path)
    message = str(caught.value)
    assert "PGPASSWORD or ~/.pgpass" in message
    assert "\n" not in message


async def test_the_password_reaches_no_log_line_when_it_works(
    postgres_server: PostgresServer,
    password_db: str,
    no_password: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("PGPASSWORD", postgres_server.password)
    caplog.set_level(logging.DEBUG)
    await _use(password_db, tmp_path)
    assert postgres_server.password not in caplog.text


# -- schema ------------------------------------------------------------------------------


def _database(url: str) -> str:
    return parse_url(url).database


async def test_concurrent_openers_create_the_schema_once(
    postgres_server: PostgresServer, postgres_url: str, tmp_path: Path
) -> None:
    # Eight members opening a new database at once: CREATE TABLE IF NOT EXISTS is not
    # safe against itself in PostgreSQL (both may try to create the same type).
    stores = await asyncio.gather(*(open_store(postgres_url, tmp_path) for _ in range(8)))
    try:
        generations = await asyncio.gather(
            *(store.join(member(n), lease=LEASE) for n, store in enumerate(stores))
        )
    finally:
        await asyncio.gather(*(store.aclose() for store in stores))
    assert generations == [1] * 8
    database = _database(postgres_url)
    assert postgres_server.psql("SELECT key, value FROM ebi_mirror_meta", database=database) == (
        f"schema|{SCHEMA_VERSION}\n"
    )
    assert postgres_server.psql("SELECT count(*) FROM ebi_mirror_pulls", database=database) == (
        "1\n"
    )


async def test_a_newer_schema_is_refused(
    postgres_server: PostgresServer, postgres_url: str, tmp_path: Path
) -> None:
    await (await open_store(postgres_url, tmp_path)).aclose()
    postgres_server.psql(
        f"UPDATE ebi_mirror_meta SET value='{SCHEMA_VERSION + 1}' WHERE key='schema'",
        database=_database(postgres_url),
    )
    with pytest.raises(StateUrlError) as caught:
        await open_store(postgres_url, tmp_path)
    assert str(caught.value) == (
        f"--state (or MIRROR_STATE): the state store {postgres_url} was written by a newer "
        f"ebi-mirror (schema {SCHEMA_VERSION + 1}, this one knows {SCHEMA_VERSION}): upgrade "
        "ebi-mirror on every machine taking part in the pull"
    )


async def test_members_need_no_right_to_create_tables_once_they_exist(
    postgres_server: PostgresServer,
    postgres_url: str,
    no_password: Path,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    # Whoever set the database up created the tables; the members' role may only use
    # them (no CREATE on the schema, owner of nothing).
    await (await open_store(postgres_url, tmp_path)).aclose()
    database = _database(postgres_url)
    role = postgres_server.password_role
    postgres_server.psql(
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role};"
        f" GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {role}",
        database=database,
    )
    monkeypatch.setenv("PGPASSWORD", postgres_server.password)
    counts = await _use(postgres_server.url(database, user=role), tmp_path / "other")
    assert counts[TaskStatus.PENDING] == (1, 10)


async def test_tables_are_prefixed(
    postgres_server: PostgresServer, postgres_url: str, tmp_path: Path
) -> None:
    await (await open_store(postgres_url, tmp_path)).aclose()
    tables = postgres_server.psql(
        "SELECT tablename FROM pg_tables WHERE schemaname='public'",
        database=_database(postgres_url),
    ).split()
    assert tables
    assert all(t.startswith("ebi_mirror_") for t in tables), tables


# -- pulls and claims ---------------------------------------------------------------------


async def test_two_pulls_in_one_database_stay_apart(postgres_url: str, tmp_path: Path) -> None:
    a = await open_store(postgres_url, tmp_path / "a")
    b = await open_store(postgres_url, tmp_path / "b")
    try:
        ga = await a.join(member(1), lease=LEASE)
        gb = await b.join(member(2), lease=LEASE)
        assert (ga, gb) == (1, 1)  # each pull starts its own first generation
        assert [p.task.path for p in await a.plan([task("x"), task("y")], ga)] == ["x", "y"]
        assert [p.task.path for p in await b.plan([task("x")], gb)] == ["x"]
        (claim_a,) = await a.claim(member(1), ga, 1, lease=LEASE)
        (claim_b,) = await b.claim(member(2), gb, 5, lease=LEASE)
        assert claim_a.task.path == claim_b.task.path == "x"
        assert await a.complete("x", claim_a.fence, md5="1" * 32, size=10, verified_by="md5")
        assert (await a.counts(ga))[TaskStatus.VERIFIED] == (1, 10)
        assert (await b.counts(gb))[TaskStatus.VERIFIED] == (0, 0)
        assert (await b.counts(None))[TaskStatus.RUNNING] == (1, 10)
        assert [m.id for m in await a.members(lease=LEASE)] == ["member-1"]
        assert [m.id for m in await b.members(lease=LEASE)] == ["member-2"]
        assert await a.once(ga, "label")
        assert await b.once(gb, "label")
        await a.record_problem(ga, "error", "only in a")
        assert await a.problems() == [("error", "only in a")]
        assert await b.problems() == []
        assert [f.path async for f in b.files(None)] == ["x"]
    finally:
        await a.aclose()
        await b.aclose()


async def test_a_claim_hands_out_exactly_n(postgres_url: str, tmp_path: Path) -> None:
    store = await open_store(postgres_url, tmp_path)
    try:
        generation = await store.join(member(1), lease=LEASE)
        await store.plan([task(f"f{i:04}") for i in range(500)], generation)
        claims = await store.claim(member(1), generation, 3, lease=LEASE)
        assert [c.task.path for c in claims] == ["f0000", "f0001", "f0002"]
        assert (await store.counts(generation))[TaskStatus.RUNNING] == (3, 30)
    finally:
        await store.aclose()


async def test_claimers_on_separate_connections_never_share_a_file(
    postgres_url: str, tmp_path: Path
) -> None:
    stores: list[Store] = [await open_store(postgres_url, tmp_path) for _ in range(3)]
    try:
        generation = await stores[0].join(member(0), lease=LEASE)
        for n, store in enumerate(stores[1:], 1):
            assert await store.join(member(n), lease=LEASE) == generation
        await stores[0].plan([task(f"f{i:04}") for i in range(600)], generation)

        async def drain(n: int) -> list[str]:
            got: list[str] = []
            while claims := await stores[n].claim(member(n), generation, 7, lease=LEASE):
                for c in claims:
                    assert await stores[n].complete(
                        c.task.key, c.fence, md5="1" * 32, size=10, verified_by="md5"
                    )
                got += [c.task.key for c in claims]
            return got

        taken = await asyncio.gather(*(drain(n) for n in range(3)))
    finally:
        await asyncio.gather(*(store.aclose() for store in stores))
    every = [key for keys in taken for key in keys]
    assert sorted(every) == [f"f{i:04}" for i in range(600)]  # each file exactly once
    assert all(keys for keys in taken), [len(k) for k in taken]


async def test_an_expired_lease_moves_and_the_old_holder_is_fenced(
    postgres_url: str, tmp_path: Path
) -> None:
    first = await open_store(postgres_url, tmp_path)
    second = await open_store(postgres_url, tmp_path)
    try:
        generation = await first.join(member(1), lease=LEASE)
        await second.join(member(2), lease=LEASE)
        await first.plan([task("x")], generation)
        # A lease of 0 s has expired by the next statement, on the server's clock.
        (old,) = await first.claim(member(1), generation, 1, lease=0)
        (new,) = await second.claim(member(2), generation, 1, lease=LEASE)
        assert new.task.key == old.task.key == "x"
        assert new.fence > old.fence
        assert not await first.complete("x", old.fence, md5="2" * 32, size=10, verified_by="md5")
        assert not await first.fail("x", old.fence, "stale holder")
        assert "x" not in (await first.heartbeat(member(1), lease=LEASE, sees=2)).held
        assert (await second.heartbeat(member(2), lease=LEASE, sees=2)).held == {"x"}
        assert await second.complete("x", new.fence, md5="1" * 32, size=10, verified_by="md5")
        (row,) = [f async for f in first.files(generation)]
        assert (row.status, row.md5, row.holder) == (TaskStatus.VERIFIED, "1" * 32, None)
    finally:
        await first.aclose()
        await second.aclose()


def test_the_fixture_server_listens_on_loopback_as_postgres(
    postgres_server: PostgresServer,
) -> None:
    assert postgres_server.psql("SHOW listen_addresses").strip() == "127.0.0.1"
    data = Path(postgres_server.psql("SHOW data_directory").strip())
    assert data.parent == postgres_server.directory
    postmaster = int((data / "postmaster.pid").read_text().split()[0])
    status = Path(f"/proc/{postmaster}/status").read_text()
    uid = int(next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1])
    # PostgreSQL refuses to run as root: the fixture runs it as postgres then.
    assert uid == (pwd.getpwnam("postgres").pw_uid if os.geteuid() == 0 else os.geteuid())


async def test_completions_sent_together_each_get_their_own_answer(
    postgres_url: str, tmp_path: Path
) -> None:
    # Completions arriving together go to the server in one statement: each still lands
    # or not on its own fence, and two for one file (a stale holder and the new one)
    # are not merged.
    first = await open_store(postgres_url, tmp_path)
    second = await open_store(postgres_url, tmp_path)
    try:
        generation = await first.join(member(1), lease=LEASE)
        await second.join(member(2), lease=LEASE)
        await first.plan([task(f"f{i:02}") for i in range(40)], generation)
        stale = await first.claim(member(1), generation, 10, lease=0)
        fresh = await second.claim(member(2), generation, 10, lease=LEASE)
        assert [c.task.key for c in fresh] == [c.task.key for c in stale]
        mine = await first.claim(member(1), generation, 20, lease=LEASE)

        def finish(store: Store, claims: list[Claim], md5: str) -> list[Awaitable[bool]]:
            return [
                store.complete(c.task.key, c.fence, md5=md5, size=10, verified_by="md5")
                for c in claims
            ]

        results = await asyncio.gather(
            *finish(first, stale, "0" * 32),
            # Through the same store, so that both completions of a file meet in one batch.
            *finish(first, fresh, "1" * 32),
            *finish(first, mine, "2" * 32),
            first.complete("f39", None, md5="3" * 32, size=10, verified_by="md5"),
        )
        assert results == [False] * 10 + [True] * 10 + [True] * 20 + [True]
        md5s = {f.path: f.md5 async for f in first.files(generation)}
        assert md5s == {
            **{f"f{i:02}": "1" * 32 for i in range(10)},
            **{f"f{i:02}": "2" * 32 for i in range(10, 30)},
            **{f"f{i:02}": None for i in range(30, 39)},
            "f39": "3" * 32,
        }
    finally:
        await first.aclose()
        await second.aclose()


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [
        ("ega/D1/", 2),
        ("ega/D1", 4),
        ("ega/D1_", 1),
        ("ega/D1%", 0),
        ("ega/\U0010ffff", 1),
        ("", 6),
    ],
)
async def test_tally_counts_exactly_the_keys_under_a_prefix(
    postgres_url: str, tmp_path: Path, prefix: str, expected: int
) -> None:
    store = await open_store(postgres_url, tmp_path)
    try:
        generation = await store.join(member(1), lease=LEASE)
        keys = ["ega/D1/a", "ega/D1/b", "ega/D10/c", "ega/D1_x", "ega/\U0010ffff/z", "ega0"]
        await store.plan([task(k) for k in keys], generation)
        tally = await store.tally(generation, prefix)
        assert sum(tally.values()) == expected
        assert tally[TaskStatus.PENDING] == expected
    finally:
        await store.aclose()


async def test_a_member_leaving_during_its_heartbeat_does_not_deadlock(
    postgres_url: str, tmp_path: Path
) -> None:
    import asyncpg

    first = await open_store(postgres_url, tmp_path)
    second = await open_store(postgres_url, tmp_path)
    blocker = await asyncpg.connect(postgres_url)
    try:
        generation = await first.join(member(1), lease=LEASE)
        await first.plan([task("a"), task("b")], generation)
        await first.claim(member(1), generation, 2, lease=LEASE)

        async def waiting_on_locks(n: int) -> None:
            while True:
                found = await blocker.fetchval(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE application_name='ebi-mirror' AND wait_event_type='Lock'"
                )
                if found >= n:
                    return
                await asyncio.sleep(0.01)

        # Another transaction holds the member's files: leave() queues for them first,
        # then a heartbeat of the same member (on another connection) queues behind it.
        async with blocker.transaction():
            await blocker.execute("SELECT 1 FROM ebi_mirror_files FOR UPDATE")
            leaving = asyncio.create_task(first.leave(member(1)))
            await asyncio.wait_for(waiting_on_locks(1), 30)
            beating = asyncio.create_task(second.heartbeat(member(1), lease=LEASE, sees=1))
            await asyncio.wait_for(waiting_on_locks(2), 30)
        await asyncio.wait_for(asyncio.gather(leaving, beating), 30)
        assert (await first.counts(generation))[TaskStatus.PENDING] == (2, 20)
    finally:
        await blocker.close()
        await first.aclose()
        await second.aclose()


# -- the engine on PostgreSQL -------------------------------------------------------------


@pytest.mark.slow  # two whole runs at once sharing a pull through a real PostgreSQL server
async def test_two_runs_share_one_pull_through_postgresql(
    emulator: Emulator, postgres_url: str, tmp_path: Path
) -> None:
    dest = tmp_path / "data"
    doc = ena_manifest(emulator.endpoints, dest, ["PRJEB40001", "ERR120000001"], workers=4)
    # A short lease: a heartbeat every 0.75 s, so that the member that joins second is
    # admitted (once the first has applied the new count) without seconds of waiting.
    first, second = await asyncio.gather(
        mirror.run(doc, state=postgres_url, retry=FAST_RETRY, lease=3.0),
        mirror.run(doc, state=postgres_url, retry=FAST_RETRY, lease=3.0),
    )
    assert (first.exit_code, second.exit_code) == (0, 0)
    rows = read_index(dest)
    assert rows
    assert first.verified == second.verified == len(rows)
    served = Counter(e.path for e in file_requests(emulator.log) if e.status in (200, 206))
    for row in rows:
        local = dest / row["path"]
        assert md5_of_file(local) == row["md5"]
    # Each file went out once, whichever of the two fetched it.
    assert sorted(served.values()) == [1] * len(rows)

    before = len(file_requests(emulator.log))
    again = await mirror.run(doc, state=postgres_url, retry=FAST_RETRY, lease=3.0)
    assert (again.exit_code, again.verified) == (0, len(rows))
    assert len(file_requests(emulator.log)) == before
