"""The PostgreSQL state store against a real server: URLs, passwords, schema, pulls apart."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from mirror._exceptions import StateUrlError
from mirror._models import FileTask, TaskStatus
from mirror._state import Member, Store, open_store
from mirror._state._postgres import SCHEMA_VERSION, parse_url
from tests.conftest import mirror_cmd
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
    assert lines[0].startswith(
        f"mirror: error: --state (or MIRROR_STATE): cannot connect to the PostgreSQL state "
        f"store {url} (host 127.0.0.1, port {port}, database pulls): "
    )
    assert "Traceback" not in done.stderr


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
    pgpass.write_text(
        f"{where.host}:{where.port}:{where.database}:{where.user}:{postgres_server.password}\n"
    )
    pgpass.chmod(0o600)
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


def test_the_fixture_server_runs_as_postgres_not_root(postgres_server: PostgresServer) -> None:
    owner = postgres_server.psql("SELECT current_setting('data_directory')").strip()
    assert Path(owner).is_dir()
    if os.geteuid() == 0:
        assert Path(owner).owner() == "postgres"
